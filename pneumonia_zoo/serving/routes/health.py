"""Liveness, readiness and Prometheus metrics."""

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pneumonia_zoo.serving.deps import HolderDep
from pneumonia_zoo.serving.schemas import ErrorResponse, Health, ModelRef, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: a model is loaded and serving",
    responses={503: {"model": ErrorResponse, "description": "No model yet; `detail` says why"}},
)
async def readyz(holder: HolderDep) -> Readiness | JSONResponse:
    current = holder.current
    if current is None:
        return JSONResponse({"detail": holder.reason, "status": holder.status}, status_code=503)
    return Readiness(status="ready", model=ModelRef(**current.describe()), last_error=holder.last_error)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
