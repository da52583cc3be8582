"""What the registry holds, described for the API and the models page (the store answers; this shapes)."""

from mlflow.entities.model_registry import ModelVersion

from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving.schemas import ModelVersionInfo
from pneumonia_zoo.tracking.store import VERSION_METRIC_TAGS, Store


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(version: ModelVersion, settings: Settings, aliases: list[str]) -> ModelVersionInfo:
    tags = version.tags
    metrics = {key: value for key in VERSION_METRIC_TAGS if (value := _float(tags.get(key))) is not None}
    evaluations = {
        key: value
        for key, raw in tags.items()
        if key.startswith("eval_") and (value := _float(raw)) is not None
    }
    image_size = _float(tags.get("image_size"))
    base = settings.mlflow_ui_url.rstrip("/")
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        architecture=tags.get("architecture", "unknown"),
        image_size=int(image_size) if image_size is not None else None,
        threshold=_float(tags.get("threshold")),
        champion=settings.champion_alias in aliases,
        aliases=aliases,
        onnx=tags.get("onnx", "").lower() in ("true", "1", "yes"),
        kind=tags.get("kind", "single"),
        pretrained={"true": True, "false": False}.get(tags.get("pretrained", "").lower()),
        metrics=metrics,
        mlflow_url=f"{base}/#/models/{version.name}/versions/{version.version}",
        card_url=f"/api/v1/models/{version.version}/card",
        evaluations=evaluations,
    )


def all_versions(store: Store) -> list[ModelVersionInfo]:
    """Every version, newest first (blocking: call in a thread)."""
    return catalog(store)[0]


def catalog(store: Store) -> tuple[list[ModelVersionInfo], list[ModelVersionInfo]]:
    """(every version newest first, the newest version of each architecture): one registry read."""
    versions = store.versions()
    aliases = store.aliases_by_version()
    infos = {str(v.version): describe(v, store.settings, aliases.get(str(v.version), [])) for v in versions}
    latest = [infos[str(v.version)] for v in store.latest_per_architecture(versions)]
    return [infos[str(v.version)] for v in reversed(versions)], latest
