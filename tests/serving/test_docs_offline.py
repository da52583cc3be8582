"""/docs and /redoc work without internet: they name no other host, and the app serves all they load."""

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest

DOC_PAGES = ("/docs", "/redoc")
# Every way the two pages name a resource: tags' src/href, ReDoc's spec-url, Swagger UI's `url:`.
_REFERENCES = re.compile(r"""(?:\bsrc|\bhref|\bspec-url)\s*=\s*["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")
_EXPECTED_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


def references(html: str) -> list[str]:
    return [first or second for first, second in _REFERENCES.findall(html)]


@pytest.mark.parametrize("path", DOC_PAGES)
def test_doc_pages_reference_no_external_host(client, path):
    page = client.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # No absolute or protocol-relative URL anywhere in the page, not only in the tags found below.
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text, re.IGNORECASE), page.text
    found = references(page.text)
    assert found, "the page should load its library"
    for url in found:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url


@pytest.mark.parametrize("path", DOC_PAGES)
def test_every_asset_the_doc_pages_reference_is_served(client, path):
    found = references(client.get(path).text)
    kinds = {urlsplit(url).path.rsplit(".", 1)[-1] for url in found}
    assert {"js", "json"} <= kinds  # the library and the OpenAPI document at least
    for url in found:
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = "." + urlsplit(url).path.rsplit(".", 1)[-1]
        assert response.headers["content-type"].startswith(_EXPECTED_TYPES[suffix]), url
        assert len(response.content) > 1000, url  # the real bundle, not an empty stub


def _script(client, page: str) -> bytes:
    url = next(u for u in references(client.get(page).text) if urlsplit(u).path.endswith(".js"))
    return client.get(url).content


def test_swagger_ui_and_redoc_are_the_real_libraries(client):
    assert b"SwaggerUIBundle" in _script(client, "/docs")
    redoc = _script(client, "/redoc")
    assert b"Redoc" in redoc and len(redoc) > 500_000


def test_only_the_listed_assets_are_served(client):
    assert client.get("/static-docs/core.py").status_code == 404
    assert client.get("/static-docs/..%2Fcore.py").status_code == 404


def _policy(response) -> dict[str, list[str]]:
    directives = (part.split() for part in response.headers["Content-Security-Policy"].split(";"))
    return {words[0]: words[1:] for words in directives if words}


@pytest.mark.parametrize("path", DOC_PAGES)
def test_doc_policies_allow_no_other_host(client, path):
    policy = _policy(client.get(path))
    for directive, sources in policy.items():
        for source in sources:
            assert source.startswith("'") or source in ("blob:", "data:"), f"{directive} {source}"
    assert policy["frame-ancestors"] == ["'none'"] and policy["default-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"] and "'unsafe-eval'" not in policy["script-src"]


def test_swagger_start_up_script_is_allowed_by_its_hash_alone(client):
    page = client.get("/docs")
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert _policy(page)["script-src"] == ["'self'", f"'sha256-{digest}'"]


def test_redoc_page_has_no_inline_script(client):
    page = client.get("/redoc")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert _policy(page)["script-src"] == ["'self'"]


def test_openapi_documents_only_the_field_explain_accepts(client, xray_bytes):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/explain"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(body["schema"]["properties"]) == {"file"}
    refused = client.post("/api/v1/explain", files={"files": ("x.jpeg", xray_bytes, "image/jpeg")})
    assert refused.status_code == 422 and "'file'" in refused.json()["detail"]
