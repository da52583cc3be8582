"""What the registry holds, described for the API and the models page."""

from mlflow.entities.model_registry import ModelVersion

from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving.schemas import ModelVersionInfo
from pneumonia_zoo.tracking.registry import VERSION_METRIC_TAGS, list_versions
from pneumonia_zoo.tracking.store import connect


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def describe(version: ModelVersion, settings: Settings, aliases: list[str] | None = None) -> ModelVersionInfo:
    tags = version.tags
    aliases = list(version.aliases) if aliases is None else aliases
    metrics = {key: value for key in VERSION_METRIC_TAGS if (value := _float(tags.get(key))) is not None}
    image_size = _float(tags.get("image_size"))
    threshold = _float(tags.get("threshold"))
    base = settings.mlflow_ui_url.rstrip("/")
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        architecture=tags.get("architecture", "unknown"),
        image_size=int(image_size) if image_size is not None else None,
        threshold=threshold,
        champion=settings.champion_alias in aliases,
        aliases=aliases,
        onnx=tags.get("onnx", "").lower() in ("true", "1", "yes"),
        pretrained={"true": True, "false": False}.get(tags.get("pretrained", "").lower()),
        metrics=metrics,
        mlflow_url=f"{base}/#/models/{version.name}/versions/{version.version}",
    )


def all_versions(settings: Settings) -> list[ModelVersionInfo]:
    """Every version, newest first (blocking: call in a thread)."""
    versions = list_versions(settings.registered_model_name)
    if not versions:
        return []
    # search_model_versions leaves `aliases` empty on some stores: the registered model has them all.
    by_version: dict[str, list[str]] = {}
    for alias, number in connect().get_registered_model(settings.registered_model_name).aliases.items():
        by_version.setdefault(str(number), []).append(alias)
    return [describe(version, settings, sorted(by_version.get(str(version.version), [])))
            for version in reversed(versions)]


def latest_per_architecture(versions: list[ModelVersionInfo]) -> list[ModelVersionInfo]:
    latest: dict[str, ModelVersionInfo] = {}
    for info in versions:
        if info.architecture not in latest or int(info.version) > int(latest[info.architecture].version):
            latest[info.architecture] = info
    return sorted(latest.values(), key=lambda info: info.architecture)
