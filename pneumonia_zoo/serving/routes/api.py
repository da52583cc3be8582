"""The JSON API under /api/v1."""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response

from pneumonia_zoo.errors import InvalidInput, NotFound, PackageRejected, RegistryUnavailable, Unavailable
from pneumonia_zoo.serving.catalog import all_versions
from pneumonia_zoo.serving.deps import BodyDep, HolderDep, ServiceDep, SettingsDep, StoreDep, require_admin
from pneumonia_zoo.serving.explain import DISPLAY_SIZE, explained_by, to_bytes
from pneumonia_zoo.serving.recording import EXPLAIN, RecorderDep
from pneumonia_zoo.serving.schemas import ErrorResponse, ModelRef, ModelsResponse, Prediction, ReloadResult
from pneumonia_zoo.serving.security import require_api_key
from pneumonia_zoo.serving.uploads import UploadedFile, UploadForm
from pneumonia_zoo.tracking.uris import normalize_version

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
_FILE = {"type": "string", "format": "binary", "description": "One JPEG, PNG or DICOM chest X-ray"}
_FILES = {
    "type": "array",
    "items": {"type": "string", "format": "binary"},
    "description": "Several images (a batch); the answer is then a list",
}


def _upload_body(properties: dict) -> dict:
    schema = {"type": "object", "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


_PREDICT_BODY = _upload_body({"file": _FILE, "files": _FILES})
_EXPLAIN_BODY = _upload_body({"file": _FILE})  # one image: /explain refuses a batch
_ERRORS: dict[int | str, dict[str, Any]] = {
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
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "Grad-CAM overlay for the predicted label"}
}
Version = Annotated[
    str | None, Query(description="Registry version to run instead of the champion", examples=["2"])
]
OperatingPoint = Annotated[
    str | None,
    Query(
        description="A named operating point of the model (default: its own, `balanced`)",
        examples=["sensitivity_95"],
        max_length=64,
    ),
]


def _single_or_batch(form: UploadForm) -> tuple[list[UploadedFile], bool]:
    single, batch = form.files_named("file"), form.files_named("files")
    if single and batch:
        raise InvalidInput("send either 'file' (one image) or 'files' (a batch), not both")
    if len(single) > 1:
        raise InvalidInput("field 'file' takes one image: use 'files' for a batch")
    return single or batch, bool(batch)


@router.post(
    "/predict",
    response_model=Prediction | list[Prediction],
    openapi_extra=_PREDICT_BODY,
    responses=_ERRORS,
    summary="Classify one X-ray (field `file`) or a batch (field `files`: answers a list)",
)
async def predict(
    request: Request,
    body: BodyDep,
    service: ServiceDep,
    settings: SettingsDep,
    recorder: RecorderDep,
    version: Version = None,
    operating_point: OperatingPoint = None,
) -> dict | list[dict]:
    model = await service.model(version)  # kept for the whole request, even if the champion changes
    service.check_operating_point(model, operating_point)
    async with service.receive(body, settings.max_batch_files) as form:
        uploads, is_batch = _single_or_batch(form)
        outcome = await service.classify(model, uploads)
        predictions = [
            outcome.prediction(row, upload.filename, operating_point) for row, upload in enumerate(uploads)
        ]
        # Committed before the answer leaves (the uploads still count against their budget meanwhile).
        await recorder.record(request, model, outcome, uploads, predictions, pinned=version is not None)
    return predictions if is_batch else predictions[0]


@router.post(
    "/explain",
    openapi_extra=_EXPLAIN_BODY,
    response_class=Response,
    responses=_PNG | _ERRORS,
    summary="Grad-CAM heatmap of one X-ray (field `file`), as a PNG",
)
async def explain(
    request: Request,
    body: BodyDep,
    service: ServiceDep,
    recorder: RecorderDep,
    version: Version = None,
    operating_point: OperatingPoint = None,
) -> Response:
    model = await service.model(version)
    service.check_operating_point(model, operating_point)
    async with service.receive(body, max_files=1) as form:
        if form.files_named("files"):
            raise InvalidInput("/explain takes one image in the field 'file'")
        uploads = form.files_named("file")
        outcome = await service.classify(model, uploads, DISPLAY_SIZE)  # display-sized copy
        answered = [outcome.prediction(0, None, operating_point)]
        await recorder.record(request, model, outcome, uploads, answered, version is not None, EXPLAIN)
    label_index = outcome.label_index(0, operating_point)
    overlay = await service.explain(model, outcome.images[0], label_index)
    png = await anyio.to_thread.run_sync(to_bytes, overlay)
    return Response(
        png,
        media_type="image/png",
        headers={
            "X-Predicted-Label": model.classifier.config.class_names[label_index],
            "X-Model-Version": model.version,
            "X-Explained-By": explained_by(model.classifier),
            "X-Out-Of-Population": str(bool(outcome.scores.ood_flags[0])).lower(),
            "X-Prediction-Request-ID": answered[0]["request_id"],  # the record's id (feedback, lookup)
        },
    )


@router.get(
    "/models",
    response_model=ModelsResponse,
    responses={503: {"model": ErrorResponse}},
    summary="Every registered version, its metrics, and which is champion",
)
async def models(settings: SettingsDep, holder: HolderDep, store: StoreDep) -> ModelsResponse:
    try:
        versions = await anyio.to_thread.run_sync(all_versions, store)
    except Exception as exc:
        raise RegistryUnavailable(f"the model registry could not be read ({type(exc).__name__})") from None
    current = holder.current
    return ModelsResponse(
        name=settings.registered_model_name,
        champion_alias=settings.champion_alias,
        serving=ModelRef(**current.describe()) if current else None,
        versions=versions,
    )


@router.get(
    "/models/{version}/card",
    response_class=Response,  # errors stay JSON; only a card is Markdown
    responses={
        200: {"content": {"text/markdown": {}}, "description": "The version's model card"},
        404: {"model": ErrorResponse, "description": "No such version"},
        422: {"model": ErrorResponse, "description": "Not a version number"},
        503: {"model": ErrorResponse},
    },
    summary="The model card of a registered version, as Markdown",
)
async def model_card(version: str, store: StoreDep) -> Response:
    version = normalize_version(version)

    def read() -> str:
        from pneumonia_zoo.tracking.cards import stored_card, version_card

        return stored_card(store, version) or version_card(store, version)

    try:
        text = await anyio.to_thread.run_sync(read)
    except NotFound:
        raise NotFound(f"version {version} of '{store.model_name}' is not in the registry") from None
    except PackageRejected as exc:  # registered, but its files are missing or altered: not the client's
        raise PackageRejected(f"version {version} could not be loaded: {exc}") from None
    except Exception as exc:
        raise Unavailable(f"the model card could not be read ({type(exc).__name__})") from None
    return Response(text, media_type="text/markdown; charset=utf-8")


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
