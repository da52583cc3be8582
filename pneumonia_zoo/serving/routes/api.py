"""The JSON API under /api/v1."""

import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response

from pneumonia_zoo.serving.catalog import all_versions
from pneumonia_zoo.serving.deps import HolderDep, ServiceDep, SettingsDep, require_admin
from pneumonia_zoo.serving.errors import ServingError
from pneumonia_zoo.serving.explain import to_bytes
from pneumonia_zoo.serving.schemas import ErrorResponse, ModelRef, ModelsResponse, Prediction, ReloadResult
from pneumonia_zoo.serving.security import require_api_key
from pneumonia_zoo.serving.uploads import UploadedFile, read_upload_form

router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(require_api_key)],
    responses={
        401: {
            "model": ErrorResponse,
            "description": "Missing or wrong X-API-Key (only when PNEUMONIA_ZOO_API_KEY is set)",
        }
    },
)

# The body is parsed from the stream by uploads.py, so FastAPI cannot infer it: document it here.
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "One JPEG or PNG chest X-ray",
                        },
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Several images (a batch); the answer is then a list",
                        },
                    },
                }
            }
        },
    }
}
_ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed multipart body",
        404: "Unknown model version",
        413: "File over the size limit, image over the pixel limit, or too many files",
        415: "Not multipart/form-data",
        422: "Empty, non-image, corrupt or unsupported file",
        503: "No champion model loaded yet",
    }.items()
}
Version = Annotated[
    str | None, Query(description="Registry version to run instead of the champion", examples=["2"])
]


async def _single_or_batch(request: Request, settings) -> tuple[list[UploadedFile], bool]:
    form = await read_upload_form(request, settings.max_upload_bytes, settings.max_batch_files)
    single, batch = form.files_named("file"), form.files_named("files")
    if single and batch:
        raise ServingError(422, "send either 'file' (one image) or 'files' (a batch), not both")
    if len(single) > 1:
        raise ServingError(422, "field 'file' takes one image: use 'files' for a batch")
    return single or batch, bool(batch)


@router.post(
    "/predict",
    response_model=Prediction | list[Prediction],
    openapi_extra=_UPLOAD_BODY,
    responses=_ERRORS,
    summary="Classify one X-ray (field `file`) or a batch (field `files`: answers a list)",
)
async def predict(request: Request, service: ServiceDep, settings: SettingsDep, version: Version = None):
    model = await service.model(version)  # kept for the whole request, even if the champion changes
    uploads, is_batch = await _single_or_batch(request, settings)
    started = time.perf_counter()
    outcome = await service.predict(model, await service.decode(uploads), started)
    predictions = [outcome.prediction(row, upload.filename) for row, upload in enumerate(uploads)]
    return predictions if is_batch else predictions[0]


@router.post(
    "/explain",
    openapi_extra=_UPLOAD_BODY,
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "Grad-CAM overlay for the predicted label"}}
    | _ERRORS,
    summary="Grad-CAM heatmap of one X-ray (field `file`), as a PNG",
)
async def explain(request: Request, service: ServiceDep, settings: SettingsDep, version: Version = None):
    model = await service.model(version)
    form = await read_upload_form(request, settings.max_upload_bytes, max_files=1)
    images = await service.decode(form.files_named("file"))
    outcome = await service.predict(model, images, time.perf_counter())
    label_index = outcome.label_index(0)
    overlay = await service.explain(model, images[0], label_index)
    png = await anyio.to_thread.run_sync(to_bytes, overlay)
    return Response(
        png,
        media_type="image/png",
        headers={
            "X-Predicted-Label": model.class_names[label_index],
            "X-Model-Version": model.version,
        },
    )


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses={503: {"model": ErrorResponse}},
    summary="Every registered version, its metrics, and which is champion",
)
async def models(settings: SettingsDep, holder: HolderDep) -> ModelsResponse:
    try:
        versions = await anyio.to_thread.run_sync(all_versions, settings)
    except Exception as exc:
        raise ServingError(503, f"the model registry could not be read ({type(exc).__name__})") from None
    current = holder.current
    return ModelsResponse(
        name=settings.registered_model_name,
        champion_alias=settings.champion_alias,
        serving=ModelRef(**current.describe()) if current else None,
        versions=versions,
    )


@router.post(
    "/admin/reload",
    response_model=ReloadResult,
    dependencies=[Depends(require_admin)],
    responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}},
    summary="Re-read the champion alias now and swap in a new version",
)
async def reload(holder: HolderDep) -> ReloadResult:
    changed = await anyio.to_thread.run_sync(holder.refresh)
    current = holder.current
    return ReloadResult(
        changed=changed,
        model=ModelRef(**current.describe()) if current else None,
        error=None if changed else holder.last_error,
    )
