"""The API key at the door: with PNEUMONIA_ZOO_API_KEY set, every route but the probes needs it.

One pure ASGI middleware decides for every request before routing, so a route added later is closed by
default (tests/serving/test_access.py enumerates the app's routes). The key comes as

- `X-API-Key: KEY` (scripts, the JSON API), or
- HTTP Basic with any user name and the key as password: what a browser can send. A 401 carries
  `WWW-Authenticate: Basic`, so the browser asks once and sends it with every later request.

Browsers also send remembered Basic credentials with a form another site posts to us (cross-site
request forgery), so a state-changing request authenticated by Basic must come from our own origin:
`Sec-Fetch-Site` same-origin (or none: typed by the user), else an `Origin` whose host is ours. A key sent
in `X-API-Key` cannot be forged so: another site's page cannot set that header without CORS allowing it.
Comparisons are constant-time (`secrets.compare_digest`).
"""

import base64
import binascii
import html
import json
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
CHALLENGE = 'Basic realm="pneumonia-zoo", charset="UTF-8"'  # a browser then asks for the key once
# Open with a key set: probes, static assets, and the API's documentation (it runs nothing by itself).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/heatmap-legend.png"})
OPEN_PREFIXES = ("/static/", "/static-docs/")
METRICS_PATH = "/metrics"
_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Pneumonia Zoo: {status}</title>'
    '<link rel="stylesheet" href="/static/style.css"></head><body><main><h1>{status}</h1><p>{detail}.</p>'
    "<p>Reload the page and sign in with any user name and the service's access key as password.</p>"
    "</main></body></html>"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})
MISSING_KEY = f"a valid {API_KEY_HEADER} header (or HTTP Basic password) is required"
CROSS_SITE = "a cross-site request with HTTP Basic credentials is refused: use the service's own pages"


def configured_key(settings: object) -> bytes | None:
    """The key as bytes, or None when access is open (unset or empty)."""
    key = getattr(settings, "api_key", None)
    value = key.get_secret_value() if key is not None else ""
    return value.encode() if value else None


def basic_password(authorization: str | None) -> str | None:
    """The password of an `Authorization: Basic` header (any user name), None for anything else."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    return password if colon else None


def _matches(presented: str | None, expected: bytes) -> bool:
    return presented is not None and secrets.compare_digest(presented.encode(), expected)


def authenticated_by(headers: Headers, expected: bytes) -> str | None:
    """'header' or 'basic' when the request carries the key that way; None when it does not."""
    if _matches(headers.get(API_KEY_HEADER), expected):
        return "header"
    if _matches(basic_password(headers.get("authorization")), expected):
        return "basic"
    return None


def same_origin(headers: Headers) -> bool:
    """Whether a browser says the request comes from our own pages; True for non-browser clients
    (they send neither header, and cannot be made to send someone else's credentials)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.lower() in SAME_ORIGIN_FETCH
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    # Origin "null" (sandboxed frames, some redirects) has no host and is refused like a foreign one.
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


def is_open(path: str, metrics_public: bool) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or (metrics_public and path == METRICS_PATH)


class AccessMiddleware:
    """Refuses (401, or 403 for a forged cross-site request) before any route runs."""

    def __init__(self, app: ASGIApp, settings: object) -> None:
        self.app = app
        self.expected = configured_key(settings)
        self.metrics_public = bool(getattr(settings, "metrics_public", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.expected is None or is_open(scope["path"], self.metrics_public):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        how = authenticated_by(headers, self.expected)
        page = "text/html" in headers.get("accept", "")
        if how is None:
            await _refuse(send, 401, MISSING_KEY, {"www-authenticate": CHALLENGE}, page)
            return
        if how == "basic" and scope["method"] not in SAFE_METHODS and not same_origin(headers):
            await _refuse(send, 403, CROSS_SITE, {}, page)
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str], page: bool) -> None:
    """`{"detail": ...}`, or a short page for a browser (shown when its login prompt is cancelled), without
    reading the body; the connection closes (an unread body cannot be reused)."""
    if page:
        body = _PAGE.format(status=status, detail=html.escape(detail)).encode()
        media_type = b"text/html; charset=utf-8"
    else:
        body = json.dumps({"detail": detail}).encode()
        media_type = b"application/json"
    raw = [
        (b"content-type", media_type),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ] + [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
