"""The MLflow store named by the settings, and every question asked of its registry.

One `Store` is built from the injected `Settings` and held by whoever needs it (the training recipe,
the CLI, the service's model holder): registry questions have this one owner, and nothing here
reads global settings. MLflow's fluent logging API is global by design; `activate()` points it at
this store, and only code that logs runs calls it.
"""

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import NotFound, PackageRejected, UserError
from pneumonia_zoo.package.format import CONFIG_FILE
from pneumonia_zoo.tracking import uris
from pneumonia_zoo.tracking.champion import CHAMPION_METRIC, lower_is_better
from pneumonia_zoo.tracking.records import (
    EVALUATED_MODEL_TAG,
    EVALUATED_VERSION_TAG,
    EvaluationRecord,
    RunRecord,
    VersionRecord,
)

if TYPE_CHECKING:
    from pneumonia_zoo.package.classifier import Classifier

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
class Ranking:
    split: str | None  # the validation split they share (None: not recorded)
    versions: list[VersionRecord]  # best first
    left_out: int  # versions with the metric that were validated on another split


class Store:
    def __init__(self, settings: Settings) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.settings = settings
        self.uri = settings.tracking_uri

    @cached_property
    def _client(self) -> MlflowClient:
        """Made on first use: a torchrun rank that never logs never opens (or migrates) the store."""
        if db_path := sqlite_path(self.uri):
            db_path.parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def model_name(self) -> str:
        return self.settings.registered_model_name

    @property
    def champion_alias(self) -> str:
        return self.settings.champion_alias

    @property
    def champion_uri(self) -> str:
        return uris.alias_uri(self.model_name, self.champion_alias)

    def version_uri(self, version: str) -> str:
        return uris.version_uri(self.model_name, version)

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
        without one (versions are registered through this store's client, never the fluent API).
        """
        mlflow.set_tracking_uri(self.uri)
        name = experiment or self.settings.experiment_name
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            root = local_artifact_root(self.uri)
            location = f"{root.as_uri()}/{name}" if root else None
            experiment_id = self._client.create_experiment(name, artifact_location=location)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def run(self, run_id: str) -> RunRecord:
        return RunRecord.from_mlflow(self._client.get_run(run_id))

    def find_run(self, run_id: str | None) -> RunRecord | None:
        """The run, or None when there is none or it was deleted (the version's tags still describe it)."""
        if not run_id:
            return None
        try:
            return self.run(run_id)
        except MlflowException:
            return None

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self._client.set_tag(run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact: str) -> None:
        self._client.log_text(run_id, text, artifact)

    def read_text_artifact(self, run_id: str, artifact: str) -> str | None:
        """A text artifact of a run, or None when it was never logged (or the store refuses it)."""
        with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-artifact-") as tmp:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=artifact, tracking_uri=self.uri, dst_path=tmp
                )
            except Exception:
                return None
            return Path(path).read_text()

    def evaluations(self, version: str) -> list[EvaluationRecord]:
        """Every `evaluate --log` run recorded against the version, oldest first."""
        experiments = [e.experiment_id for e in self._client.search_experiments()]
        if not experiments:
            return []
        query = (
            f"tags.{EVALUATED_VERSION_TAG} = '{version}' and tags.{EVALUATED_MODEL_TAG} = '{self.model_name}'"
        )
        runs = self._client.search_runs(experiments, query)
        records = [RunRecord.from_mlflow(run) for run in runs]
        return [EvaluationRecord.from_run(run) for run in sorted(records, key=lambda r: r.start_time)]

    # -- versions -----------------------------------------------------------------------------------

    def versions(self) -> list[VersionRecord]:
        """Every version of the registered model, oldest first (empty when none is registered)."""
        found = self._client.search_model_versions(f"name='{self.model_name}'")
        aliases = self._aliases_by_version()
        records = [VersionRecord.from_mlflow(v, aliases.get(str(v.version), [])) for v in found]
        return sorted(records, key=lambda r: int(r.version))

    def _aliases_by_version(self) -> dict[str, list[str]]:
        """search_model_versions leaves `aliases` empty on some stores: the registered model has them all."""
        try:
            aliases = self._client.get_registered_model(self.model_name).aliases
        except MlflowException:
            return {}
        by_version: dict[str, list[str]] = {}
        for alias, number in aliases.items():
            by_version.setdefault(str(number), []).append(alias)
        return {version: sorted(names) for version, names in by_version.items()}

    def champion_version(self) -> str | None:
        try:
            version = self._client.get_model_version_by_alias(self.model_name, self.champion_alias)
        except MlflowException:  # no registered model, or no such alias
            return None
        return str(version.version)

    @staticmethod
    def latest_per_architecture(versions: list[VersionRecord]) -> list[VersionRecord]:
        latest: dict[str, VersionRecord] = {}
        for version in versions:
            known = latest.get(version.architecture)
            if known is None or int(version.version) > int(known.version):
                latest[version.architecture] = version
        return sorted(latest.values(), key=lambda v: v.architecture)

    def resolve(self, model_uri: str) -> VersionRecord:
        """A registry URI (by alias or by version number, see uris.py) -> the version it names now."""
        parsed = uris.parse(model_uri)
        try:
            if parsed.alias:
                version = self._client.get_model_version_by_alias(parsed.name, parsed.alias)
            else:
                version = self._client.get_model_version(parsed.name, parsed.version or "")
        except MlflowException:
            hint = (
                ": train a model (pneumonia-zoo train) and promote it (pneumonia-zoo promote)"
                if parsed.alias
                else ""
            )
            raise NotFound(f"{model_uri} does not exist in the registry ({self.describe()}){hint}") from None
        aliases = self._aliases_by_version().get(str(version.version), [])
        return VersionRecord.from_mlflow(version, aliases)

    def reachable(self) -> bool:
        try:
            self._client.search_registered_models(max_results=1)
        except Exception:
            return False
        return True

    # -- changes ------------------------------------------------------------------------------------

    def register(self, model_id: str, run_id: str, tags: dict[str, str]) -> str:
        """A new version from a logged model (its MLflow 3 model id); returns its number."""
        try:
            self._client.get_registered_model(self.model_name)
        except MlflowException:
            self._client.create_registered_model(self.model_name, description=DESCRIPTION)
        created = self._client.create_model_version(
            self.model_name, uris.logged_model_uri(model_id), run_id=run_id, tags=tags, model_id=model_id
        )
        # What mlflow.register_model records too: the logged model's page links to its versions.
        self._client.set_logged_model_tags(
            model_id,
            {MLFLOW_MODEL_VERSIONS: json.dumps([{"name": self.model_name, "version": created.version}])},
        )
        return str(created.version)

    def set_alias(self, version: str, alias: str | None = None) -> None:
        self._client.set_registered_model_alias(self.model_name, alias or self.champion_alias, version)

    def remove_alias(self, alias: str) -> None:
        """Delete `alias` from the registered model (nothing happens when it is not set)."""
        with contextlib.suppress(MlflowException):
            self._client.delete_registered_model_alias(self.model_name, alias)

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_model_version_tag(self.model_name, version, key, value)

    def validation_split(self, version: VersionRecord) -> str | None:
        """The validation split behind the version's val_* metrics: its tag, or (versions registered before
        the tag) its run's parameters; None when neither says."""
        run = None if version.validation_split else self.find_run(version.run_id)  # the run only when needed
        return version.validation_split_given(run)

    def ranking(
        self, metric: str = CHAMPION_METRIC, eligible: Callable[[VersionRecord], bool] | None = None
    ) -> Ranking:
        """The versions `metric` can rank against each other: those `eligible` accepts (all by default)
        that were validated on the champion's validation split, or without a champion on the one split
        they all share. Scores on different validation images are not comparable, so versions on another
        split are left out (counted), and with no champion and several splits nothing is chosen."""
        if not metric.startswith("val_"):
            raise UserError(f"promotion must use a validation metric (val_*), not '{metric}'")
        candidates = [
            v for v in self.versions() if v.metric(metric) is not None and (eligible is None or eligible(v))
        ]
        if not candidates:
            raise UserError(
                f"no version of '{self.model_name}' has a '{metric}' tag to rank by: train a model first"
            )
        splits = {v.version: self.validation_split(v) for v in candidates}
        champion = self.champion_version()
        if champion is not None:  # the champion may lack the metric: its split still decides
            if champion in splits:
                split = splits[champion]
            else:
                split = self.validation_split(self.resolve(self.version_uri(champion)))
        elif len(set(splits.values())) == 1:
            split = next(iter(splits.values()))
        else:
            named = ", ".join(sorted({s or "unknown" for s in splits.values()}))
            raise UserError(
                f"the versions were validated on different splits ({named}): their {metric} values are "
                "not comparable; choose one with --version N (later promotions rank the versions "
                "validated on its split)"
            )
        ranked = [v for v in candidates if splits[v.version] == split]
        if not ranked:
            which = split or "not recorded, as for a site version"
            raise UserError(
                f"no version with a '{metric}' shares the validation split of the champion (version "
                f"{champion}: {which}); choose one with --version N"
            )
        return Ranking(
            split, sorted(ranked, key=lambda v: _rank(v, metric), reverse=True), len(candidates) - len(ranked)
        )

    def best_version(
        self, metric: str = CHAMPION_METRIC, eligible: Callable[[VersionRecord], bool] | None = None
    ) -> VersionRecord:
        """The best by the validation metric (ties: lower val_loss, then the newer one) among the versions
        `ranking` compares. The default is the champion rule (tracking/champion.py). Test metrics are
        never used: choosing on test would make them optimistic."""
        return self.ranking(metric, eligible).versions[0]

    def promote(self, metric: str = CHAMPION_METRIC, alias: str | None = None) -> VersionRecord:
        """Point `alias` (default: the champion's) at the best version by `metric`."""
        best = self.best_version(metric)
        self.set_alias(best.version, alias)
        return best

    # -- artifacts ----------------------------------------------------------------------------------

    def download_package(self, version: str, destination: Path, name: str | None = None) -> Path:
        """Download a version's artifacts into `destination`; returns the model package folder inside them.

        The caller owns `destination` and removes it (a classifier reads some files lazily, so only the
        caller knows when it is done): a default temporary folder here leaked one copy per load.

        The version's artifact location is asked of this store's client: MLflow's own registry-URI download
        would resolve the name through the global registry URI, whatever store this is.
        """
        name = name or self.model_name
        missing = PackageRejected(
            f"{uris.version_uri(name, version)} has no {CONFIG_FILE}: its artifacts are missing "
            "or it is not a pneumonia-zoo model package"
        )
        location = self._client.get_model_version_download_uri(name, version)
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
        self,
        model_uri: str,
        runtime: str = "auto",
        *,
        destination: Path,
        onnx_threads: int | None = None,
    ) -> tuple[VersionRecord, "Classifier"]:
        """Resolve a registry URI and load its verified package into `destination` (the caller's to remove):
        (VersionRecord, Classifier)."""
        from pneumonia_zoo.package.classifier import load_classifier

        record = self.resolve(model_uri)
        directory = self.download_package(record.version, destination, record.name)
        threads = onnx_threads or self.settings.onnx_threads
        return record, load_classifier(directory, runtime, threads)


def _rank(version: VersionRecord, metric: str) -> tuple[float, float, int]:
    """Higher is better: the metric (negated where lower is better), then a lower val_loss, then newer."""
    value = version.metric(metric)
    sign = -1.0 if lower_is_better(metric) else 1.0
    loss = version.metric("val_loss")
    return (
        sign * value if value is not None else float("-inf"),
        -(loss if loss is not None else float("inf")),
        int(version.version),
    )
