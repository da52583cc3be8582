"""The optional API key, security headers, CORS, error bodies without internals, uploads never logged."""

import copy
import dataclasses
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from pneumonia_zoo.serving.security import CONTENT_SECURITY_POLICY
from tests.serving.conftest import make_client

KEY = "k3y-for-tests"
ADMIN = "admin-for-tests"
ORIGIN = "https://viewer.example.org"


@pytest.fixture(scope="module")
def locked(registered_store: str) -> Iterator[TestClient]:
    """API key, admin token and one CORS origin set; 500s come back as responses."""
    yield from make_client(
        registered_store, raise_server_exceptions=False, api_key=KEY, admin_token=ADMIN, cors_origins=[ORIGIN]
    )


def upload(content: bytes, name: str = "x.jpeg") -> dict:
    return {"files": {"file": (name, content, "image/jpeg")}}


# -- the API key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}, {"Authorization": KEY}])
def test_api_refuses_a_missing_or_wrong_key(locked, xray_bytes, headers):
    for response in (
        locked.post("/api/v1/predict", headers=headers, **upload(xray_bytes)),
        locked.post("/api/v1/explain", headers=headers, **upload(xray_bytes)),
        locked.get("/api/v1/models", headers=headers),
        locked.post("/api/v1/admin/reload", headers=headers | {"Authorization": f"Bearer {ADMIN}"}),
    ):
        assert response.status_code == 401, response.text
        assert response.json() == {"detail": "a valid X-API-Key header (or HTTP Basic password) is required"}


def test_api_answers_with_the_key(locked, xray_bytes):
    headers = {"X-API-Key": KEY}
    assert locked.post("/api/v1/predict", headers=headers, **upload(xray_bytes)).status_code == 200
    assert locked.get("/api/v1/models", headers=headers).status_code == 200
    # The admin route needs its own bearer token as well.
    assert locked.post("/api/v1/admin/reload", headers=headers).status_code == 401
    reload = locked.post("/api/v1/admin/reload", headers=headers | {"Authorization": f"Bearer {ADMIN}"})
    assert reload.status_code == 200 and reload.json()["changed"] is False


def test_probes_and_static_files_stay_open_pages_need_the_key(locked):
    for path in ("/healthz", "/readyz", "/static/app.js"):
        assert locked.get(path).status_code == 200, path
    for path in ("/metrics", "/", "/models"):  # tests/serving/test_access.py: every route
        assert locked.get(path).status_code == 401, path
        assert locked.get(path, auth=("anyone", KEY)).status_code == 200, path


def test_the_key_is_off_by_default(client, xray_bytes):
    assert client.post("/api/v1/predict", **upload(xray_bytes)).status_code == 200


def test_openapi_documents_the_key(locked):
    schema = locked.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "401" in schema["paths"]["/api/v1/predict"]["post"]["responses"]


# -- headers, CSP and CORS -------------------------------------------------------------------------------


def check_headers(response, policy: str = CONTENT_SECURITY_POLICY) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Content-Security-Policy"] == policy


def test_security_headers_on_every_kind_of_response(client, xray_bytes):
    for response in (
        client.get("/"),
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/static/style.css"),
        client.get("/api/v1/nothing"),
        client.post("/api/v1/predict", **upload(b"not an image")),
        client.post("/api/v1/predict", **upload(xray_bytes)),
        client.post("/predict", **upload(xray_bytes)),
    ):
        check_headers(response)
    policy = CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in policy and "img-src 'self' data: blob:" in policy
    assert "unsafe-inline" not in policy


def test_docs_get_their_own_policy(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    policy = docs.headers["Content-Security-Policy"]
    assert "https://" not in policy and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    assert "'sha256-" in policy and "frame-ancestors 'none'" in policy  # the one start-up script, by hash
    assert docs.headers["X-Frame-Options"] == "DENY"


def test_pages_need_no_inline_script_or_style(client, xray_bytes):
    """What the strict policy would block in a browser: inline <script>, <style> and style= attributes."""
    pages = [
        client.get("/"),
        client.get("/models"),
        client.post("/predict", **upload(xray_bytes)),
        client.post("/compare", **upload(xray_bytes)),
        client.get("/nowhere", headers={"accept": "text/html"}),
    ]
    for page in pages:
        html = page.text.lower()
        assert "style=" not in html and "<style" not in html
        assert html.count("<script") == html.count('<script src="/static/'), html
        for handler in ("onclick=", "onload=", "onerror=", "onsubmit=", "javascript:"):
            assert handler not in html


def test_cors_is_closed_by_default(client):
    response = client.options(
        "/api/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin" not in client.get("/api/v1/models", headers={"Origin": ORIGIN}).headers
    )


def test_cors_allows_only_the_configured_origins(locked):
    preflight = locked.options(
        "/api/v1/predict",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
    other = locked.options(
        "/api/v1/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    answer = locked.get("/api/v1/models", headers={"Origin": ORIGIN, "X-API-Key": KEY})
    assert answer.headers["access-control-allow-origin"] == ORIGIN


# -- error bodies and logs -----------------------------------------------------------------------------------


LEAKS = (
    "Traceback",
    "/work",
    ".py",
    "site-packages",
    'File "',
    "sqlite:",
    "mlflow.db",
    "/tmp",
    "file://",
    "mlflow-artifacts:",
    "http://127.0.0.1:5",
)


def assert_no_internals(text: str, *secrets: str) -> None:
    """Nothing about the code, the store (its URI, paths, server address) or a caller's headers."""
    for leak in (*LEAKS, *secrets):
        assert leak not in text, (leak, text[:500])


def _broken_forward(inputs) -> list:
    """A network that fails the way a bug would: the request must get a plain 500."""
    raise RuntimeError("boom in /work/main/pneumonia_zoo/secret_module.py line 12")


@pytest.fixture
def broken_model(locked) -> Iterator[None]:
    holder = locked.app.state.holder
    healthy = holder.current
    broken = copy.copy(healthy.classifier)
    broken.forward = _broken_forward  # the instance's own forward shadows the class's
    holder.current = dataclasses.replace(healthy, classifier=broken)
    yield
    holder.current = healthy


def test_a_500_says_nothing_about_the_internals(locked, xray_bytes, broken_model, caplog):
    with caplog.at_level(logging.ERROR):
        api = locked.post("/api/v1/predict", headers={"X-API-Key": KEY}, **upload(xray_bytes))
        page = locked.post("/predict", headers={"X-API-Key": KEY}, **upload(xray_bytes))
    assert api.status_code == 500
    assert api.json() == {"detail": "internal error: the service could not handle this request"}
    assert page.status_code == 500 and "text/html" in page.headers["content-type"]
    for response in (api, page):
        assert_no_internals(response.text)
        check_headers(response)
    assert "boom in" in caplog.text  # the operator's log keeps the cause


def test_4xx_bodies_say_nothing_about_the_internals(client, xray_bytes, registered_store):
    store_path = registered_store.removeprefix("sqlite:///")
    answers = [
        (client.post("/api/v1/predict", **upload(xray_bytes[:5000])), 422),  # truncated JPEG
        (client.post("/api/v1/predict", **upload(b"GIF89a" + b"\0" * 50)), 422),
        (client.post("/api/v1/predict", content=b"{}", headers={"content-type": "application/json"}), 415),
        (client.post("/api/v1/predict", params={"version": "42"}, **upload(xray_bytes)), 404),
        (client.post("/api/v1/predict", params={"version": "x"}, **upload(xray_bytes)), 422),
        (client.get("/samples/..%2F..%2Fpneumonia_zoo%2Fconfig.py"), 404),
        (client.get("/static/../pneumonia_zoo/config.py"), 404),
        (client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer wrong-secret-token"}), 401),
        (client.post("/api/v1/predict", headers={"X-API-Key": "some-key-value"}, **upload(b"")), 422),
        (client.get("/api/v1/models/7/card"), 404),
    ]
    for response, status in answers:
        assert response.status_code == status, (response.request.url, response.text)
        assert_no_internals(response.text, store_path, "wrong-secret-token", "some-key-value")
    ready = client.get("/readyz")  # a 200, but it reports the registry's state: no internals either
    assert ready.status_code == 200
    assert_no_internals(ready.text, store_path)


def test_uploads_are_never_logged(client, xray, caplog):
    """Neither the bytes nor the file name reach the log, at any level, whatever the outcome."""
    marker = "PATIENT-7f3a9c-SMITH"
    from tests.serving.conftest import encode

    with_text = encode(xray.resize((96, 96)), "PNG", pnginfo=_png_text(marker))
    with caplog.at_level(logging.DEBUG):
        good = client.post("/api/v1/predict", files={"file": (f"{marker}.png", with_text, "image/png")})
        bad = client.post("/api/v1/predict", files={"file": (f"{marker}.jpeg", marker.encode() * 10)})
        page = client.post("/predict", files={"file": (f"{marker}.png", with_text, "image/png")})
    assert good.status_code == 200 and bad.status_code == 422 and page.status_code == 200
    assert marker in bad.json()["detail"]  # the client is told which file; the log is not
    assert caplog.records, "nothing was captured: the check would pass vacuously"
    assert marker not in caplog.text
    assert marker not in "".join(str(record.args) for record in caplog.records)


def _png_text(text: str):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", text)
    return info
