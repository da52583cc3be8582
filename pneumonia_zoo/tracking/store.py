"""Connecting to the MLflow store named by MLFLOW_TRACKING_URI."""

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from pneumonia_zoo.config import get_settings


def tracking_uri() -> str:
    return get_settings().tracking_uri


def sqlite_path(uri: str) -> Path | None:
    """The absolute database file of a `sqlite:///` store; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).expanduser().resolve()


def local_artifact_root(uri: str) -> Path | None:
    """For a sqlite file store, artifacts live beside the database, whatever the current folder."""
    db_path = sqlite_path(uri)
    return db_path.parent / "mlruns" if db_path else None


def connect() -> MlflowClient:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if db_path := sqlite_path(uri):
        db_path.parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(uri)


def ensure_experiment(name: str | None = None) -> str:
    """The experiment's id, created (with a local artifact root for sqlite stores) if missing."""
    client = connect()
    name = name or get_settings().experiment_name
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        root = local_artifact_root(tracking_uri())
        location = f"{root.as_uri()}/{name}" if root else None
        experiment_id = client.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id
