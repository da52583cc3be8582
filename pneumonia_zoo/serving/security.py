"""Security headers on every response, and the API key's part in the OpenAPI document.

The pages load only their own CSS and JS (no inline scripts or style attributes), so a strict policy
fits them. /docs and /redoc (docs.py) load Swagger UI / ReDoc from the app itself, never a CDN; each
gets a policy relaxed for exactly what its library needs, still not frameable.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumonia_zoo.serving.access import API_KEY_HEADER, MISSING_KEY, authenticated_by, configured_key
from pneumonia_zoo.serving.docs import swagger_script_hashes
from pneumonia_zoo.serving.errors import ServingError

__all__ = ["API_KEY_HEADER", "SecurityHeadersMiddleware", "require_api_key", "security_headers"]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_DOCS_COMMON = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# /docs: Swagger UI from /static-docs, started by one inline script allowed by its hash alone.
# data: images are the icons Swagger UI's CSS embeds.
DOCS_CONTENT_SECURITY_POLICY = (
    f"{_DOCS_COMMON}; script-src 'self' {' '.join(swagger_script_hashes())}; style-src 'self'; "
    "img-src 'self' data:"
)
# /redoc: no inline script, but ReDoc writes its styles into <style> elements at run time
# (styled-components) and runs its search in a worker made from a blob: URL.
REDOC_CONTENT_SECURITY_POLICY = (
    f"{_DOCS_COMMON}; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src blob:"
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def security_headers(path: str) -> dict[str, str]:
    if path == "/docs":
        policy = DOCS_CONTENT_SECURITY_POLICY
    elif path == "/redoc":
        policy = REDOC_CONTENT_SECURITY_POLICY
    else:
        policy = CONTENT_SECURITY_POLICY
    return _COMMON_HEADERS | {"Content-Security-Policy": policy}


class SecurityHeadersMiddleware:
    """Pure ASGI: sets the headers on every response, 4xx errors and static files included.

    Starlette sends 500s from its outermost layer, past every middleware: the app's 500 handler adds
    the same headers itself.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required when PNEUMONIA_ZOO_API_KEY is set"
)


def require_api_key(request: Request, _key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    """Off unless PNEUMONIA_ZOO_API_KEY is set. AccessMiddleware (access.py) already refused a request
    without the key; this dependency puts the key into the OpenAPI document, and checks it again."""
    expected = configured_key(request.app.state.settings)
    if expected is not None and authenticated_by(request.headers, expected) is None:
        raise ServingError(401, MISSING_KEY)
