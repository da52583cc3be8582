"""The MLflow store named by the settings, and every question asked of its registry.

One `Store` is built from the injected `Settings` and held by whoever needs it (the training recipe,
the CLI, the service's model holder): registry questions have this one owner, and nothing here
reads global settings. MLflow's fluent logging API is global by design; `activate()` points it at
this store, and only code that logs runs calls it.
"""

import json
import os
import re
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.package.format import CONFIG_FILE
from pneumonia_zoo.tracking.uris import champion_uri, version_uri

if TYPE_CHECKING:
    from pneumonia_zoo.package.classifier import Classifier

# Tags every version carries, so the registry alone can rank and describe versions.
VERSION_METRIC_TAGS = (
    "val_auc",
    "val_loss",
    "val_sensitivity",
    "val_specificity",
    "val_ece",
    "test_auc",
    "test_accuracy",
    "test_sensitivity",
    "test_specificity",
    "test_ece",
    "test_flag_rate",
    "test_images",
    "robust_originals_agreement",
)
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
DESCRIPTION = "Chest X-ray classifier: NORMAL vs PNEUMONIA (research tool, not a diagnostic device)."


def sqlite_path(uri: str) -> Path | None:
    """The absolute database file of a `sqlite:///` store; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).expanduser().resolve()


def local_artifact_root(uri: str) -> Path | None:
    """For a sqlite file store, artifacts live in mlruns/ beside the database, whatever the current folder."""
    db_path = sqlite_path(uri)
    return db_path.parent / "mlruns" if db_path else None


@dataclass(frozen=True)
class ResolvedVersion:
    name: str
    version: str
    architecture: str
    tags: dict[str, str]
    aliases: tuple[str, ...]
    run_id: str | None

    @property
    def uri(self) -> str:
        return version_uri(self.name, self.version)


class Store:
    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.settings = settings
        self.uri = settings.tracking_uri

    @cached_property
    def client(self) -> MlflowClient:
        """Made on first use: a torchrun rank that never logs never opens (or migrates) the store."""
        if db_path := sqlite_path(self.uri):
            db_path.parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def model_name(self) -> str:
        return self.settings.registered_model_name

    @property
    def champion_uri(self) -> str:
        return champion_uri(self.model_name, self.settings.champion_alias)

    def describe(self) -> str:
        """The store for messages: a sqlite file's name, or a server's address without credentials."""
        if db_path := sqlite_path(self.uri):
            return db_path.name
        # Everything before the authority's last @ is user information, a raw @ in a password included.
        return re.sub(r"//[^/]*@", "//", self.uri, count=1)

    # -- runs -------------------------------------------------------------------------------------

    def activate(self, experiment: str | None = None) -> str:
        """Point MLflow's fluent API at this store and experiment (created if missing); returns its id.

        Only the tracking URI: a global registry URI would also redirect every MlflowClient made later
        without one (versions are registered through self.client, never the fluent API).
        """
        mlflow.set_tracking_uri(self.uri)
        name = experiment or self.settings.experiment_name
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            root = local_artifact_root(self.uri)
            location = f"{root.as_uri()}/{name}" if root else None
            experiment_id = self.client.create_experiment(name, artifact_location=location)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def get_run(self, run_id: str) -> Run:
        return self.client.get_run(run_id)

    # -- versions -----------------------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        """Every version of the registered model, oldest first (empty when none is registered)."""
        found = self.client.search_model_versions(f"name='{self.model_name}'")
        return sorted(found, key=lambda v: int(v.version))

    def aliases_by_version(self) -> dict[str, list[str]]:
        """search_model_versions leaves `aliases` empty on some stores: the registered model has them all."""
        try:
            aliases = self.client.get_registered_model(self.model_name).aliases
        except MlflowException:
            return {}
        by_version: dict[str, list[str]] = {}
        for alias, number in aliases.items():
            by_version.setdefault(str(number), []).append(alias)
        return {version: sorted(names) for version, names in by_version.items()}

    def champion_version(self) -> str | None:
        try:
            version = self.client.get_model_version_by_alias(self.model_name, self.settings.champion_alias)
        except MlflowException:  # no registered model, or no such alias
            return None
        return str(version.version)

    def latest_per_architecture(self, versions: list[ModelVersion] | None = None) -> list[ModelVersion]:
        latest: dict[str, ModelVersion] = {}
        for version in versions if versions is not None else self.versions():
            architecture = version.tags.get("architecture", "unknown")
            if architecture not in latest or int(version.version) > int(latest[architecture].version):
                latest[architecture] = version
        return sorted(latest.values(), key=lambda v: v.tags.get("architecture", ""))

    def resolve(self, model_uri: str) -> ResolvedVersion:
        """`models:/name@alias` or `models:/name/version` -> the registry version it names now."""
        match = _MODELS_URI.match(model_uri)
        if not match:
            raise UserError(f"'{model_uri[:80]}' is not a models:/NAME@ALIAS or models:/NAME/VERSION URI")
        name = match["name"]
        try:
            if match["alias"]:
                version = self.client.get_model_version_by_alias(name, match["alias"])
            else:
                version = self.client.get_model_version(name, match["version"])
        except MlflowException:
            hint = (
                ": train a model (pneumonia-zoo train) and promote it (pneumonia-zoo promote)"
                if match["alias"]
                else ""
            )
            raise UserError(f"{model_uri} does not exist in the registry ({self.describe()}){hint}") from None
        return ResolvedVersion(
            name=name,
            version=str(version.version),
            architecture=version.tags.get("architecture", "unknown"),
            tags=dict(version.tags),
            aliases=tuple(version.aliases),
            run_id=version.run_id,
        )

    def reachable(self) -> bool:
        try:
            self.client.search_registered_models(max_results=1)
        except Exception:
            return False
        return True

    # -- changes ------------------------------------------------------------------------------------

    def register(self, model_id: str, run_id: str, tags: dict[str, str]) -> str:
        """A new version from a logged model (`models:/m-<id>`); returns its number."""
        try:
            self.client.get_registered_model(self.model_name)
        except MlflowException:
            self.client.create_registered_model(self.model_name, description=DESCRIPTION)
        created = self.client.create_model_version(
            self.model_name, f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
        # What mlflow.register_model records too: the logged model's page links to its versions.
        self.client.set_logged_model_tags(
            model_id,
            {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": self.model_name, "version": created.version}])},
        )
        return str(created.version)

    def set_alias(self, version: str, alias: str | None = None) -> None:
        self.client.set_registered_model_alias(
            self.model_name, alias or self.settings.champion_alias, version
        )

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)

    def promote(self, metric: str = "val_auc", alias: str | None = None) -> ModelVersion:
        """Point `alias` at the version with the best validation metric (ties: lower val_loss, newer).

        Test metrics are never used: choosing on test would make them optimistic.
        """
        if not metric.startswith("val_"):
            raise UserError(f"promotion must use a validation metric (val_*), not '{metric}'")
        candidates = [v for v in self.versions() if metric in v.tags]
        if not candidates:
            raise UserError(
                f"no version of '{self.model_name}' has a '{metric}' tag to rank by: train a model first"
            )
        best = max(
            candidates,
            key=lambda v: (
                _tag_float(v, metric, float("-inf")),
                -_tag_float(v, "val_loss", float("inf")),
                int(v.version),
            ),
        )
        self.set_alias(str(best.version), alias)
        return best

    # -- artifacts ----------------------------------------------------------------------------------

    def download_package(
        self, version: str, destination: Path | None = None, name: str | None = None
    ) -> Path:
        """Download a version's artifacts; returns the model package folder inside them.

        The version's artifact location is asked of this store's client: MLflow's `models:/` download
        would resolve the name through the global registry URI, whatever store this is.
        """
        destination = destination or Path(tempfile.mkdtemp(prefix="pneumonia-zoo-model-"))
        name = name or self.model_name
        missing = UserError(
            f"models:/{name}/{version} has no {CONFIG_FILE}: its artifacts are missing "
            "or it is not a pneumonia-zoo model package"
        )
        location = self.client.get_model_version_download_uri(name, version)
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=str(destination), tracking_uri=self.uri
                )
            )
        except (MlflowException, FileNotFoundError) as exc:
            if isinstance(exc, FileNotFoundError) or "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                raise missing from None
            raise
        found = sorted(local.glob(f"data/*/{CONFIG_FILE}"))
        if not found:
            raise missing
        return found[0].parent

    def load(
        self, model_uri: str, runtime: str = "auto", destination: Path | None = None
    ) -> tuple[ResolvedVersion, "Classifier"]:
        """Resolve a models:/ URI and load its verified package: (ResolvedVersion, Classifier)."""
        from pneumonia_zoo.package.classifier import load_classifier

        resolved = self.resolve(model_uri)
        directory = self.download_package(resolved.version, destination, resolved.name)
        return resolved, load_classifier(directory, runtime, self.settings.onnx_threads)


def _tag_float(version: ModelVersion, key: str, default: float) -> float:
    try:
        return float(version.tags[key])
    except (KeyError, ValueError):
        return default
