"""The HTML pages. Plain forms and links: everything works without JavaScript."""

import base64
import time
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from pneumonia_zoo.data.images import IMAGE_SUFFIXES
from pneumonia_zoo.serving.catalog import all_versions, latest_per_architecture
from pneumonia_zoo.serving.deps import HolderDep, ServiceDep, SettingsDep, TemplatesDep
from pneumonia_zoo.serving.errors import ServingError
from pneumonia_zoo.serving.explain import display_copy, to_bytes
from pneumonia_zoo.serving.inference import InferenceService
from pneumonia_zoo.serving.uploads import UploadedFile, read_upload_form

router = APIRouter(include_in_schema=False)


def list_samples(directory: Path) -> list[dict[str, str]]:
    if not directory.is_dir():
        return []
    return [
        # Kermany's file names carry the ground truth: person*_virus_* / *_bacteria_* are pneumonia.
        {"name": path.name, "label": "PNEUMONIA" if path.name.startswith("person") else "NORMAL"}
        for path in sorted(directory.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def _data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _sample_upload(settings, name: str) -> UploadedFile:
    if name not in {sample["name"] for sample in list_samples(settings.sample_images_dir)}:
        raise ServingError(404, f"there is no sample image called '{name[:80]}'")
    return UploadedFile("file", name, bytearray((settings.sample_images_dir / name).read_bytes()))


async def _form_upload(request: Request, settings) -> tuple[UploadedFile, str | None]:
    form = await read_upload_form(request, settings.max_upload_bytes, max_files=1)
    uploads = form.files_named("file")
    if not uploads or (not uploads[0].filename and not uploads[0].data):
        raise ServingError(422, "choose an image file first (JPEG or PNG)")
    return uploads[0], form.fields.get("version") or None


async def _versions(settings) -> list:
    try:
        return await anyio.to_thread.run_sync(all_versions, settings)
    except Exception:
        return []  # pages still render; the models page says the registry is unreadable


async def _result_page(request: Request, service: InferenceService, templates, upload: UploadedFile,
                       version: str | None) -> HTMLResponse:
    model = await service.model(version)
    started = time.perf_counter()
    images = await service.decode([upload])
    outcome = await service.predict(model, images, started)
    prediction = outcome.prediction(0, upload.filename)
    overlay = await service.explain(model, images[0], outcome.label_index(0))
    image_jpeg, overlay_jpeg = await anyio.to_thread.run_sync(
        lambda: (to_bytes(display_copy(images[0]), "JPEG"), to_bytes(overlay, "JPEG"))
    )
    return templates.TemplateResponse(request, "result.html", {
        "prediction": prediction, "filename": upload.filename,
        "image_uri": _data_uri(image_jpeg, "image/jpeg"),
        "heatmap_uri": _data_uri(overlay_jpeg, "image/jpeg"),
        "champion": model is service.holder.current,
    })


async def _compare_page(request: Request, service: InferenceService, templates, settings,
                        upload: UploadedFile) -> HTMLResponse:
    images = await service.decode([upload])
    rows = []
    for info in latest_per_architecture(await _versions(settings)):
        try:
            model = await service.model(info.version)
            outcome = await service.predict(model, images, time.perf_counter())
            rows.append({"info": info, "prediction": outcome.prediction(0), "error": None})
        except ServingError as exc:
            rows.append({"info": info, "prediction": None, "error": exc.detail})
    image_jpeg = await anyio.to_thread.run_sync(lambda: to_bytes(display_copy(images[0]), "JPEG"))
    return templates.TemplateResponse(request, "compare.html", {
        "rows": rows, "filename": upload.filename, "image_uri": _data_uri(image_jpeg, "image/jpeg"),
    })


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, templates: TemplatesDep, settings: SettingsDep, holder: HolderDep):
    current = holder.current
    return templates.TemplateResponse(request, "index.html", {
        "samples": list_samples(settings.sample_images_dir),
        "model": current.describe() if current else None,
        "status": holder.status, "reason": holder.reason,
        "max_upload_mb": settings.max_upload_bytes / 2**20,
    })


@router.post("/predict", response_class=HTMLResponse)
async def predict_page(request: Request, service: ServiceDep, templates: TemplatesDep, settings: SettingsDep):
    upload, version = await _form_upload(request, settings)
    return await _result_page(request, service, templates, upload, version)


@router.get("/samples/{name}", response_class=HTMLResponse)
async def sample_page(request: Request, name: str, service: ServiceDep, templates: TemplatesDep,
                      settings: SettingsDep, version: str | None = None):
    return await _result_page(request, service, templates, _sample_upload(settings, name), version)


@router.post("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, service: ServiceDep, templates: TemplatesDep, settings: SettingsDep):
    upload, _ = await _form_upload(request, settings)
    return await _compare_page(request, service, templates, settings, upload)


@router.get("/samples/{name}/compare", response_class=HTMLResponse)
async def sample_compare_page(request: Request, name: str, service: ServiceDep, templates: TemplatesDep,
                              settings: SettingsDep):
    return await _compare_page(request, service, templates, settings, _sample_upload(settings, name))


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, templates: TemplatesDep, settings: SettingsDep, holder: HolderDep):
    try:
        versions, registry_error = await anyio.to_thread.run_sync(all_versions, settings), None
    except Exception as exc:
        versions, registry_error = [], f"the model registry could not be read ({type(exc).__name__})"
    current = holder.current
    return templates.TemplateResponse(request, "models.html", {
        "versions": versions, "registry_error": registry_error,
        "model": current.describe() if current else None, "reason": holder.reason,
        "samples": list_samples(settings.sample_images_dir),
        "architectures": latest_per_architecture(versions),
        "mlflow_ui_url": settings.mlflow_ui_url,
    })
