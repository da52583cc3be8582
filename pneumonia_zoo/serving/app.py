"""The app factory: wires settings, the model holder, the inference service and the routes."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from pneumonia_zoo import __version__
from pneumonia_zoo.config import Settings, get_settings
from pneumonia_zoo.errors import ZooError
from pneumonia_zoo.resources import STATIC_DIR, TEMPLATES_DIR
from pneumonia_zoo.serving import docs
from pneumonia_zoo.serving.access import AccessMiddleware
from pneumonia_zoo.serving.admission import Budget
from pneumonia_zoo.serving.errors import http_error
from pneumonia_zoo.serving.holder import ModelHolder
from pneumonia_zoo.serving.inference import InferenceService
from pneumonia_zoo.serving.live import LiveLoop
from pneumonia_zoo.serving.logs import REQUEST_ID_HEADER, RequestIdMiddleware, configure_logging
from pneumonia_zoo.serving.metrics import MetricsMiddleware, ServiceMetrics
from pneumonia_zoo.serving.routes import api, health, html, monitor_page
from pneumonia_zoo.serving.routes import live as live_routes
from pneumonia_zoo.serving.security import API_KEY_HEADER, SecurityHeadersMiddleware, security_headers
from pneumonia_zoo.tracking.store import Store

log = logging.getLogger(__name__)

NOTICE = "Research tool — not a diagnostic device."
_HTML_PREFIXES = ("/predict", "/compare", "/models", "/samples/", "/monitor")
CLIENT_CLOSED = 499  # nginx's "client closed request": recorded in the access line, never sent
_MACHINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi")

DESCRIPTION = f"""
Classifies chest X-rays as NORMAL or PNEUMONIA with the champion model of the MLflow registry.

**{NOTICE}** Errors are `{{"detail": "..."}}` with a 4xx status that says what is wrong.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Everything comes from `settings` (the environment's by default), the registry included."""
    settings = settings or get_settings()
    configure_logging(settings)
    metrics = ServiceMetrics()
    store = Store(settings)
    holder = ModelHolder(settings, store, on_swap=lambda model: metrics.set_model(model.describe()))
    live = LiveLoop(settings, store, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A fresh service per lifespan (its executor cannot restart), so one app object can be started
        # again (test clients; schemathesis ends the lifespan after every test). The holder and its
        # loaded model carry over.
        service = app.state.service = InferenceService(
            settings, holder, on_batch=metrics.observe_batch, on_prediction=metrics.observe_prediction
        )
        _watch(metrics, service)
        await service.start()
        # The audit schema (before the holder opens the registry), its writer, the shadow challenger.
        await anyio.to_thread.run_sync(live.start)
        holder.start()  # in the background: /healthz answers while the champion downloads
        yield
        await anyio.to_thread.run_sync(holder.stop)
        await service.stop()
        await anyio.to_thread.run_sync(live.stop)  # after the last answer: every record is committed

    app = FastAPI(
        title="Pneumonia Zoo",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs.py serves /docs and /redoc with local assets instead of a CDN's
        redoc_url=None,
    )
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.globals |= {"notice": NOTICE, "app_version": __version__}
    app.state.settings, app.state.holder, app.state.metrics, app.state.store = (
        settings,
        holder,
        metrics,
        store,
    )
    app.state.templates = templates
    app.state.live = live

    # Innermost first. The key is checked inside CORS (a preflight carries no credentials) and outside
    # every route; the metrics count refused requests too.
    app.add_middleware(AccessMiddleware, settings=settings)
    if settings.cors_origins:  # closed by default: browsers then refuse cross-site calls
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=[API_KEY_HEADER, "Authorization"],
            expose_headers=["X-Predicted-Label", "X-Model-Version", REQUEST_ID_HEADER],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)  # outside CORS: preflights get the headers too
    app.add_middleware(RequestIdMiddleware)  # outermost: every response (and log line) has its id
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount(
        "/sample-images",
        StaticFiles(directory=settings.sample_images_dir, check_dir=False),
        name="sample-images",
    )
    app.include_router(health.router)
    app.include_router(api.router)
    app.include_router(live_routes.router)
    app.include_router(monitor_page.router)
    app.include_router(html.router)
    app.include_router(docs.router)
    _add_error_handlers(app, templates, settings)
    return app


def _watch(metrics: ServiceMetrics, service: InferenceService) -> None:
    """The gauges read the service's queue and budgets whenever Prometheus scrapes."""
    metrics.watch_queue(lambda: service.batcher.depth)
    for budget in service.budgets:
        _watch_budget(metrics, budget)


def _watch_budget(metrics: ServiceMetrics, budget: Budget) -> None:
    metrics.watch_budget(budget.name, lambda: budget.in_use, lambda: budget.waiting)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(_MACHINE_PATHS):
        return False
    return path == "/" or path.startswith(_HTML_PREFIXES) or "text/html" in request.headers.get("accept", "")


def _add_error_handlers(app: FastAPI, templates: Jinja2Templates, settings: Settings) -> None:
    def render(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
        if _wants_html(request):
            return templates.TemplateResponse(
                request,
                "error.html",
                {"status_code": status, "detail": detail},
                status_code=status,
                headers=headers,
            )
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return render(request, 422, f"invalid request: {problems}")

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # Not an error of the service's: nobody is left to answer, so one line at INFO and no traceback.
        log.info("the client disconnected before its request was read")
        return Response(status_code=CLIENT_CLOSED)  # never sent; the access line records it

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        # Logged with its traceback for the operator; the client gets one sentence, never the trace.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render(
            request,
            500,
            "internal error: the service could not handle this request",
            security_headers(request.url.path),
        )

    @app.exception_handler(ZooError)
    async def domain_error(request: Request, exc: ZooError) -> Response:
        # The one place a domain error becomes a status: the table in serving/errors.py decides.
        answer = http_error(exc, settings.timeout_status)
        if answer is None:  # a ZooError the table does not know: the unexpected-error handler's 500
            raise exc
        return render(request, answer.status, answer.detail, answer.headers or None)
