"""The MLflow Model Registry: versions of the classifier, the champion alias, downloads."""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pneumonia_zoo.config import get_settings
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.package import CONFIG_FILE, ModelPackage, load_package
from pneumonia_zoo.tracking.store import connect

# Tags every version carries, so the registry alone can rank and describe versions.
VERSION_METRIC_TAGS = (
    "val_auc",
    "val_loss",
    "val_sensitivity",
    "val_specificity",
    "test_auc",
    "test_accuracy",
    "test_sensitivity",
    "test_specificity",
)
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    version: str
    architecture: str
    tags: dict[str, str]
    aliases: tuple[str, ...]


def register_version(model_uri: str, tags: dict[str, str], name: str | None = None) -> ModelVersion:
    """Create a new version of the registered model from a logged model (`models:/m-<id>`)."""
    name = name or get_settings().registered_model_name
    client = connect()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Chest X-ray classifier: NORMAL vs PNEUMONIA.")
    # mlflow.register_model links the version to its logged model, which a tracking server requires.
    return mlflow.register_model(model_uri, name, tags=tags)


def list_versions(name: str | None = None) -> list[ModelVersion]:
    name = name or get_settings().registered_model_name
    versions = connect().search_model_versions(f"name='{name}'")
    return sorted(versions, key=lambda v: int(v.version))


def _tag_float(version: ModelVersion, key: str, default: float) -> float:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return default


def promote(name: str | None = None, alias: str | None = None, metric: str = "val_auc") -> ModelVersion:
    """Point `alias` at the version with the best validation metric (ties: lower val_loss).

    Test metrics are never used: choosing on test would make them optimistic.
    """
    if not metric.startswith("val_"):
        raise UserError(f"promotion must use a validation metric (val_*), not '{metric}'")
    settings = get_settings()
    name, alias = name or settings.registered_model_name, alias or settings.champion_alias
    candidates = [v for v in list_versions(name) if metric in v.tags]
    if not candidates:
        raise UserError(f"no version of '{name}' has a '{metric}' tag to rank by: train a model first")
    best = max(
        candidates,
        key=lambda v: (
            _tag_float(v, metric, float("-inf")),
            -_tag_float(v, "val_loss", float("inf")),
            int(v.version),
        ),
    )
    connect().set_registered_model_alias(name, alias, best.version)
    return best


def resolve(model_uri: str) -> ResolvedVersion:
    """`models:/name@alias` or `models:/name/version` -> the registry version it names now."""
    match = _MODELS_URI.match(model_uri)
    if not match:
        raise UserError(f"'{model_uri}' is not a models:/NAME@ALIAS or models:/NAME/VERSION URI")
    client = connect()
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
    except MlflowException:
        hint = (
            ": train a model (pneumonia-zoo train) and promote it (pneumonia-zoo promote)"
            if match["alias"]
            else ""
        )
        raise UserError(
            f"{model_uri} does not exist in the registry at {mlflow.get_tracking_uri()}{hint}"
        ) from None
    return ResolvedVersion(
        name=name,
        version=str(version.version),
        architecture=version.tags.get("architecture", "unknown"),
        tags=dict(version.tags),
        aliases=tuple(version.aliases),
    )


def download_package(name: str, version: str, destination: Path | None = None) -> Path:
    """Download a version's artifacts; returns the model package directory inside them."""
    destination = destination or Path(tempfile.mkdtemp(prefix="pneumonia-zoo-model-"))
    connect()
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=str(destination)
        )
    )
    found = sorted(local.glob(f"data/*/{CONFIG_FILE}"))
    if not found:
        raise UserError(
            f"models:/{name}/{version} has no {CONFIG_FILE}: its artifacts are missing "
            "or it is not a pneumonia-zoo model package"
        )
    return found[0].parent


def load_version(model_uri: str) -> tuple[ResolvedVersion, ModelPackage]:
    """Resolve a models:/ URI and load its verified package."""
    resolved = resolve(model_uri)
    return resolved, load_package(download_package(resolved.name, resolved.version))
