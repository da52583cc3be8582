"""Issue 22: the API key closes every route but the probes (pages through HTTP Basic, without cross-site
forgery), /metrics behind it, versions normalised once (one load), metric labels bounded."""

import os
import random
import re
import socket
import string
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR
from tests.conftest import PROJECT_ROOT
from tests.servers import BIN, free_port, running
from tests.serving.conftest import make_client

KEY = "access-k3y-for-tests"
# What stays open with a key set: the probes, static assets and the API's documentation. A route added
# later is not in this list, so it must answer 401 without the key or this test fails.
OPEN = {
    "/healthz",
    "/readyz",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/heatmap-legend.png",
    "/static/{path}",
    "/static-docs/{name}",
}
BASIC = ("any-user", KEY)
SAMPLE = sorted(path.name for path in SAMPLE_IMAGES_DIR.glob("*.jpeg"))[0]


@pytest.fixture(scope="module")
def locked(registered_store: str) -> Iterator[TestClient]:
    yield from make_client(registered_store, raise_server_exceptions=False, api_key=KEY)


def every_route(app) -> list[tuple[str, str]]:
    """(method, path template) of every route and mount the app has, included routers' too."""
    found = []
    for context in iter_route_contexts(app.routes):
        methods = getattr(context.original_route, "methods", None) or {"GET", "POST"}  # a mount: any
        found += [(method, context.path_format) for method in sorted(methods) if method != "HEAD"]
    return found


def concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


def upload(content: bytes) -> dict:
    return {"files": {"file": ("x.jpeg", content, "image/jpeg")}}


def test_every_route_but_the_probes_needs_the_key(locked: TestClient) -> None:
    routes = every_route(locked.app)
    templates = {template for _, template in routes}
    assert {"/predict", "/compare", "/samples/{name}", "/api/v1/predict", "/metrics", "/"} <= templates
    for method, template in routes:
        response = locked.request(method, concrete(template))
        if template in OPEN:
            assert response.status_code != 401, (method, template)
        else:
            assert response.status_code == 401, (method, template, response.status_code)
            assert response.headers["www-authenticate"].startswith("Basic "), template
            assert "X-API-Key" in response.json()["detail"]


def test_no_route_predicts_without_the_key(locked: TestClient, xray_bytes: bytes) -> None:
    for response in (
        locked.post("/predict", **upload(xray_bytes)),
        locked.post("/compare", **upload(xray_bytes)),
        locked.get(f"/samples/{SAMPLE}"),
        locked.get(f"/samples/{SAMPLE}/compare"),
        locked.post("/api/v1/predict", **upload(xray_bytes)),
        locked.post("/predict", auth=("user", "wrong"), **upload(xray_bytes)),
        locked.post("/predict", headers={"X-API-Key": "wrong"}, **upload(xray_bytes)),
    ):
        assert response.status_code == 401, response.request.url


def test_a_browser_is_asked_for_the_key_and_told_how(locked: TestClient) -> None:
    page = locked.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith('Basic realm="')
    assert "text/html" in page.headers["content-type"] and "access key as password" in page.text
    assert "<script" not in page.text and "style=" not in page.text  # the strict policy holds


def test_pages_work_with_http_basic(locked: TestClient, xray_bytes: bytes) -> None:
    assert locked.get("/", auth=BASIC).status_code == 200
    assert locked.get(f"/samples/{SAMPLE}", auth=BASIC).status_code == 200
    # A browser posting our own form: Sec-Fetch-Site same-origin, or an Origin that is this host.
    same_site = locked.post(
        "/predict", auth=BASIC, headers={"Sec-Fetch-Site": "same-origin"}, **upload(xray_bytes)
    )
    assert same_site.status_code == 200 and ("PNEUMONIA" in same_site.text or "NORMAL" in same_site.text)
    own_origin = locked.post(
        "/predict", auth=BASIC, headers={"Origin": "http://testserver"}, **upload(xray_bytes)
    )
    assert own_origin.status_code == 200
    assert locked.get("/api/v1/models", auth=BASIC).status_code == 200  # the pages' script may call the API


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
    ],
)
def test_a_cross_site_post_with_basic_credentials_is_refused(locked, xray_bytes, headers) -> None:
    """Browsers resend remembered Basic credentials with a form another site posts (CSRF)."""
    for path in ("/predict", "/compare", "/api/v1/predict"):
        response = locked.post(path, auth=BASIC, headers=headers, **upload(xray_bytes))
        assert response.status_code == 403, (path, headers, response.text)
        assert "cross-site" in response.json()["detail"]


def test_a_key_header_is_not_forgeable_cross_site(locked, xray_bytes) -> None:
    """Another site's page cannot set X-API-Key without CORS allowing it: such a request is the caller's."""
    headers = {"X-API-Key": KEY, "Origin": "https://partner.example", "Sec-Fetch-Site": "cross-site"}
    assert locked.post("/api/v1/predict", headers=headers, **upload(xray_bytes)).status_code == 200


def test_metrics_need_the_key_unless_made_public(locked, registered_store) -> None:
    assert locked.get("/metrics").status_code == 401
    scraped = locked.get("/metrics", auth=BASIC)  # Prometheus: basic_auth with the key as password
    assert scraped.status_code == 200 and "pneumonia_zoo_http_requests_total" in scraped.text
    for client in make_client(registered_store, api_key=KEY, metrics_public=True):
        assert client.get("/metrics").status_code == 200
        assert client.get("/").status_code == 401  # only /metrics was opened


def test_everything_stays_open_without_a_key(client, xray_bytes) -> None:
    assert client.get("/metrics").status_code == 200
    assert (
        client.post(
            "/predict", headers={"Origin": "https://elsewhere.example"}, **upload(xray_bytes)
        ).status_code
        == 200
    )


# -- a live server: versions normalised once, bounded metric labels ---------------------------------------


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store whose champion is the starter (version 1), and a copy of it as version 2."""
    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.tracking.publish import register_package
    from pneumonia_zoo.workflows.starter import ensure_champion
    from tests.conftest import store_for

    uri = f"sqlite:///{tmp_path_factory.mktemp('two-versions') / 'mlflow.db'}"
    store = store_for(uri)
    ensure_champion(store, STARTER_DIR)
    assert register_package(store, STARTER_DIR, "copy") == "2"
    return uri


@pytest.fixture(scope="module")
def live(two_versions: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`pneumonia-zoo serve` (uvicorn on h11, which takes any token as a method) on the two versions."""
    log = tmp_path_factory.mktemp("live-access") / "server.log"
    port = free_port()
    command = [str(BIN / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = os.environ | {
        "MLFLOW_TRACKING_URI": two_versions,
        "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0",
        "PNEUMONIA_ZOO_AUDIT_URL": "off",
    }
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", log, timeout=120, env=env, cwd=PROJECT_ROOT):
        yield url, log


def loads(log: Path, version: str) -> int:
    return sum(f"loaded version {version} (" in line for line in log.read_text().splitlines())


def test_a_version_written_with_zeros_is_loaded_once(live, xray_bytes) -> None:
    url, log = live
    with httpx.Client(base_url=url, timeout=60) as http:
        for version in ("0002", "2", "02", "002"):
            answer = http.post("/api/v1/predict", params={"version": version}, **upload(xray_bytes))
            assert answer.status_code == 200 and answer.json()["model"]["version"] == "2", answer.text
        page = http.get(f"/samples/{SAMPLE}", params={"version": "0002"})
        assert page.status_code == 200
        form = http.post("/predict", data={"version": "000002"}, **upload(xray_bytes))
        assert form.status_code == 200
        for foreign in ("١", "٢", "²", "2\n", " 2", "+2"):
            refused = http.post("/api/v1/predict", params={"version": foreign}, **upload(xray_bytes))
            assert refused.status_code == 422, (foreign, refused.text)
        # Past Python's 4300-digit int() limit: no registry holds it (was a 500).
        huge = http.post("/api/v1/predict", params={"version": "1" * 5000}, **upload(xray_bytes))
        assert huge.status_code == 404, huge.text
    assert loads(log, "2") == 1, log.read_text()[-3000:]


def _raw_request(url: str, method: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"{method} /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while sock.recv(65536):
            pass


def test_random_methods_do_not_grow_the_metrics(live) -> None:
    url, _ = live
    before = len(httpx.get(f"{url}/metrics", timeout=10).content)
    generator = random.Random(22)
    for _ in range(300):
        _raw_request(url, "".join(generator.choices(string.ascii_uppercase, k=2048)))
    text = httpx.get(f"{url}/metrics", timeout=10).text
    print(f"/metrics: {before} bytes before, {len(text)} after 300 requests with random 2 KB methods")
    assert len(text.encode()) < 100_000
    methods = set(re.findall(r'method="([^"]*)"', text))
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    assert "other" in methods, "the requests were counted, under one label"
