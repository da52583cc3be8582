"""/docs (Swagger UI) and /redoc (ReDoc) that work without internet.

FastAPI's own pages load their JavaScript and CSS from a CDN (and ReDoc its fonts from Google), so
they are blank on an offline machine. These pages load the same libraries from the installed
fastapi-offline package, served here under /static-docs; nothing they reference leaves the host.
"""

import base64
import hashlib
import re
from functools import cache
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from pneumonia_zoo.errors import NotFound

ASSETS_PREFIX = "/static-docs"
OPENAPI_URL = "/openapi.json"  # FastAPI's default; the pages and their script hash depend on it
_ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
# The package's version in every asset URL: a new pin is a new URL, so a long cache life is safe.
_ASSETS_VERSION = version("fastapi-offline")
# validatorUrl null: otherwise Swagger UI may send the document to validator.swagger.io.
SWAGGER_PARAMETERS = {"validatorUrl": None}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)

router = APIRouter(include_in_schema=False)


def asset_url(name: str) -> str:
    return f"{ASSETS_PREFIX}/{name}?v={_ASSETS_VERSION}"


def _asset_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def swagger_html(title: str) -> str:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{title} - Swagger UI",
        swagger_js_url=asset_url("swagger-ui-bundle.js"),
        swagger_css_url=asset_url("swagger-ui.css"),
        swagger_favicon_url=asset_url("favicon.png"),
        oauth2_redirect_url=None,  # the API has no OAuth2 flow, so no redirect page to serve
        swagger_ui_parameters=SWAGGER_PARAMETERS,
    ).body
    return bytes(page).decode()


def redoc_html(title: str) -> str:
    page = get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{title} - ReDoc",
        redoc_js_url=asset_url("redoc.standalone.js"),
        redoc_favicon_url=asset_url("favicon.png"),
        with_google_fonts=False,  # system fonts instead of a request to Google
    ).body
    return bytes(page).decode()


def inline_script_hashes(html: str) -> list[str]:
    """CSP source expressions ('sha256-...') allowing exactly the inline scripts of `html`."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    ]


@cache
def swagger_script_hashes() -> tuple[str, ...]:
    """The start-up script does not depend on the title, so one rendering gives the page's hash."""
    return tuple(inline_script_hashes(swagger_html("")))


@router.get("/docs", response_class=HTMLResponse)
async def swagger_page(request: Request) -> HTMLResponse:
    return HTMLResponse(swagger_html(request.app.title))


@router.get("/redoc", response_class=HTMLResponse)
async def redoc_page(request: Request) -> HTMLResponse:
    return HTMLResponse(redoc_html(request.app.title))


@router.get(f"{ASSETS_PREFIX}/{{name}}")
async def docs_asset(name: str) -> FileResponse:
    # A fixed list, not a static mount of the folder: nothing else in the package is served.
    if name not in _ASSET_TYPES:
        raise NotFound(f"there is no documentation asset called '{name[:80]}'")
    return FileResponse(
        _asset_dir() / name,
        media_type=_ASSET_TYPES[name],
        headers={"Cache-Control": "public, max-age=604800, immutable"},
    )
