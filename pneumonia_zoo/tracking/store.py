"""Connecting to the MLflow store named by MLFLOW_TRACKING_URI."""

import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.tracking import MlflowClient

from pneumonia_zoo.config import get_settings


def tracking_uri() -> str:
    return get_settings().tracking_uri


def _local_artifact_root(uri: str) -> str | None:
    """For a sqlite file store, keep artifacts beside the database, whatever the current folder."""
    if not uri.startswith("sqlite:///"):
        return None
    db_path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (db_path.parent / "mlruns").as_uri()


def connect() -> MlflowClient:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(uri)


def ensure_experiment(name: str | None = None) -> str:
    """The experiment's id, created (with a local artifact root for sqlite stores) if missing."""
    client = connect()
    name = name or get_settings().experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        root = _local_artifact_root(tracking_uri())
        experiment_id = client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def is_local_path(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")
