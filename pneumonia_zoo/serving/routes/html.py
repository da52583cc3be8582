"""The HTML pages. Plain forms and links: everything works without JavaScript."""

import base64
from functools import cache
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.images import IMAGE_SUFFIXES
from pneumonia_zoo.errors import InvalidInput, NotFound, ZooError
from pneumonia_zoo.package.prediction import UNCERTAIN_MARGIN
from pneumonia_zoo.serving.catalog import catalog
from pneumonia_zoo.serving.deps import BodyDep, HolderDep, ServiceDep, SettingsDep, StoreDep, TemplatesDep
from pneumonia_zoo.serving.explain import (
    DISPLAY_SIZE,
    display_copy,
    explained_by,
    heatmap_unavailable,
    legend_png,
    to_bytes,
)
from pneumonia_zoo.serving.holder import LoadedModel
from pneumonia_zoo.serving.inference import InferenceService
from pneumonia_zoo.serving.recording import PAGE, get_recorder
from pneumonia_zoo.serving.schemas import ModelVersionInfo
from pneumonia_zoo.serving.uploads import UploadedFile, UploadForm
from pneumonia_zoo.tracking.records import evaluations_by_context
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.tracking.uris import normalize_version

router = APIRouter(include_in_schema=False)

LEGEND_URL = "/heatmap-legend.png"
# Kermany et al.'s official test split; a version tested on fewer images used a `--limit` subsample.
OFFICIAL_TEST_IMAGES = 624


def list_samples(directory: Path) -> list[dict[str, str]]:
    if not directory.is_dir():
        return []
    return [
        # Kermany's file names carry the ground truth: person*_virus_* / *_bacteria_* are pneumonia.
        {"name": path.name, "label": "PNEUMONIA" if path.name.startswith("person") else "NORMAL"}
        for path in sorted(directory.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]


def _data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def _sample_upload(settings: Settings, name: str) -> UploadedFile:
    if name not in {sample["name"] for sample in list_samples(settings.sample_images_dir)}:
        raise NotFound(f"there is no sample image called '{name[:80]}'")
    return UploadedFile("file", name, bytearray((settings.sample_images_dir / name).read_bytes()))


def _chosen_file(form: UploadForm) -> UploadedFile:
    uploads = form.files_named("file")
    if not uploads or (not uploads[0].filename and not uploads[0].data):
        raise InvalidInput("choose an image file first (JPEG, PNG or DICOM)")
    return uploads[0]


async def _catalog(store: Store) -> tuple[list, list]:
    try:
        return await anyio.to_thread.run_sync(catalog, store)
    except Exception:
        return [], []  # pages still render; the models page says the registry is unreadable


def _truth(settings: Settings, name: str | None) -> str | None:
    """The ground truth of a sample image (its file name says it), None for an upload."""
    for sample in list_samples(settings.sample_images_dir):
        if sample["name"] == name:
            return sample["label"]
    return None


def _operating_points(model: LoadedModel | None) -> list:
    """The model's named points, its default first (the forms preselect the first)."""
    if model is None:
        return []
    config = model.classifier.config
    return sorted(config.operating_points.values(), key=lambda p: p.name != config.default_operating_point)


def tested_on(info: ModelVersionInfo) -> dict:
    """How many test images a version's test_* metrics come from, and whether that is the official split."""
    images = info.metrics.get("test_images")
    if images is None:
        return {"images": None, "subsample": False}
    return {"images": int(images), "subsample": int(images) < OFFICIAL_TEST_IMAGES}


def evaluation_rows(info: ModelVersionInfo) -> list[dict]:
    """The version's logged evaluations, one row per context."""
    return [
        {"context": context, "metrics": metrics}
        for context, metrics in evaluations_by_context(info.evaluations).items()
    ]


async def _result_page(
    request: Request,
    service: InferenceService,
    templates: Jinja2Templates,
    upload: UploadedFile,
    version: str | None,
    operating_point: str | None,
    truth: str | None,
) -> HTMLResponse:
    version = normalize_version(version) if version else None  # once: the page shows what was served
    model = await service.model(version)
    service.check_operating_point(model, operating_point)
    outcome = await service.classify(model, [upload], DISPLAY_SIZE)  # a display-sized copy for the page
    images = outcome.images
    prediction = outcome.prediction(0, upload.filename, operating_point)
    await get_recorder(request).record(
        request, model, outcome, [upload], [prediction], version is not None, PAGE
    )
    no_heatmap = heatmap_unavailable(model.classifier)  # the page says why, and shows the prediction
    label_index = outcome.label_index(0, operating_point)
    overlay = None if no_heatmap else await service.explain(model, images[0], label_index)
    image_jpeg, overlay_jpeg = await anyio.to_thread.run_sync(
        lambda: (
            to_bytes(display_copy(images[0].image), "JPEG"),
            None if overlay is None else to_bytes(overlay, "JPEG"),
        )
    )
    return templates.TemplateResponse(
        request,
        "result.html",
        {
            "prediction": prediction,
            "filename": upload.filename,
            "image_uri": _data_uri(image_jpeg, "image/jpeg"),
            "heatmap_uri": None if overlay_jpeg is None else _data_uri(overlay_jpeg, "image/jpeg"),
            "no_heatmap": no_heatmap,
            "champion": model is service.holder.current,
            "operating_points": _operating_points(model),
            "truth": truth,
            "correct": None if truth is None else truth == prediction["label"],
            "explained_by": explained_by(model.classifier),
            "version": version,
            "sample": upload.filename if truth is not None else None,
            "uncertain_margin": UNCERTAIN_MARGIN,
            "legend_url": LEGEND_URL,
            "site": _site(model),
        },
    )


def _site(model: LoadedModel) -> dict | None:
    """The site an adapted version was adapted to (and its parent), for the result page."""
    info = model.classifier.config.info
    return {"name": info.site, "parent": info.parent_version} if info.adapted and info.site else None


async def _compare_page(
    request: Request,
    service: InferenceService,
    templates: Jinja2Templates,
    store: Store,
    upload: UploadedFile,
) -> HTMLResponse:
    rows, images = [], None
    for info in (await _catalog(store))[1]:
        try:
            model = await service.model(info.version)
            outcome = await service.classify(model, [upload], DISPLAY_SIZE)
            images = outcome.images
            no_heatmap = heatmap_unavailable(model.classifier)
            heatmap_uri = None
            if not no_heatmap:
                overlay = await service.explain(model, images[0], outcome.label_index(0))
                heatmap = await anyio.to_thread.run_sync(to_bytes, overlay, "JPEG")
                heatmap_uri = _data_uri(heatmap, "image/jpeg")
            rows.append(
                {
                    "info": info,
                    "prediction": outcome.prediction(0),
                    "error": None,
                    "heatmap_uri": heatmap_uri,
                    "no_heatmap": no_heatmap,
                    "explained_by": explained_by(model.classifier),
                }
            )
        except ZooError as exc:  # this version cannot answer (not loadable, image refused): its row says why
            failed = {
                "prediction": None,
                "error": str(exc),
                "heatmap_uri": None,
                "no_heatmap": None,
                "explained_by": None,
            }
            rows.append({"info": info} | failed)
    if images is None:  # no version could answer: the page still shows the image (or why it cannot)
        images = await service.decode([upload], DISPLAY_SIZE)
    image_jpeg = await anyio.to_thread.run_sync(lambda: to_bytes(display_copy(images[0].image), "JPEG"))
    return templates.TemplateResponse(
        request,
        "compare.html",
        {
            "rows": rows,
            "filename": upload.filename,
            "image_uri": _data_uri(image_jpeg, "image/jpeg"),
            "legend_url": LEGEND_URL,
            "uncertain_margin": UNCERTAIN_MARGIN,
        },
    )


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request, templates: TemplatesDep, settings: SettingsDep, holder: HolderDep
) -> HTMLResponse:
    current = holder.current
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "samples": list_samples(settings.sample_images_dir),
            "model": current.describe() if current else None,
            "status": holder.status,
            "reason": holder.reason,
            "max_upload_mb": settings.max_upload_bytes / 2**20,
            "operating_points": _operating_points(current),
        },
    )


@router.post("/predict", response_class=HTMLResponse)
async def predict_page(
    request: Request, body: BodyDep, service: ServiceDep, templates: TemplatesDep
) -> HTMLResponse:
    async with service.receive(body, max_files=1) as form:
        fields = form.fields
        return await _result_page(
            request,
            service,
            templates,
            _chosen_file(form),
            fields.get("version") or None,
            fields.get("operating_point") or None,
            None,
        )


@router.get("/samples/{name}", response_class=HTMLResponse)
async def sample_page(
    request: Request,
    name: str,
    service: ServiceDep,
    templates: TemplatesDep,
    settings: SettingsDep,
    version: str | None = None,
    operating_point: str | None = None,
) -> HTMLResponse:
    upload = _sample_upload(settings, name)
    return await _result_page(
        request, service, templates, upload, version, operating_point or None, _truth(settings, name)
    )


@router.post("/compare", response_class=HTMLResponse)
async def compare_page(
    request: Request, body: BodyDep, service: ServiceDep, templates: TemplatesDep, store: StoreDep
) -> HTMLResponse:
    async with service.receive(body, max_files=1) as form:
        return await _compare_page(request, service, templates, store, _chosen_file(form))


@router.get("/samples/{name}/compare", response_class=HTMLResponse)
async def sample_compare_page(
    request: Request,
    name: str,
    service: ServiceDep,
    templates: TemplatesDep,
    settings: SettingsDep,
    store: StoreDep,
) -> HTMLResponse:
    return await _compare_page(request, service, templates, store, _sample_upload(settings, name))


@router.get("/models", response_class=HTMLResponse)
async def models_page(
    request: Request, templates: TemplatesDep, settings: SettingsDep, holder: HolderDep, store: StoreDep
) -> HTMLResponse:
    try:
        (versions, latest), registry_error = await anyio.to_thread.run_sync(catalog, store), None
    except Exception as exc:
        versions, latest = [], []
        registry_error = f"the model registry could not be read ({type(exc).__name__})"
    current = holder.current
    return templates.TemplateResponse(
        request,
        "models.html",
        {
            "versions": versions,
            "scopes": {v.version: tested_on(v) for v in versions},
            "evaluations": {v.version: evaluation_rows(v) for v in versions},
            "official_test_images": OFFICIAL_TEST_IMAGES,
            "operating_points": _operating_points(current),
            "registry_error": registry_error,
            "model": current.describe() if current else None,
            "reason": holder.reason,
            "samples": list_samples(settings.sample_images_dir),
            "architectures": latest,
            "mlflow_ui_url": settings.mlflow_ui_url,
        },
    )


@cache
def _legend() -> bytes:
    return legend_png()


@router.get(LEGEND_URL)
async def heatmap_legend() -> Response:
    """The heatmap's colour scale as an image: the pages allow no inline styles to draw a gradient."""
    png = await anyio.to_thread.run_sync(_legend)
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})
