"""The same train -> register -> promote -> load flow against a real `mlflow server` process."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pneumonia_zoo.tracking.experiment import train
from pneumonia_zoo.tracking.registry import load_version, promote
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import tiny_train_args, use_store
from tests.servers import mlflow_server


def test_train_and_serve_from_a_tracking_server(
    tmp_path: Path, fixture_data: Path, originals: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "mlflow-server.log") as url:
        use_store(monkeypatch, url)
        outcome = train(TrainConfig.build(**tiny_train_args(fixture_data, onnx=True)), quiet=True)
        assert outcome.status == "FINISHED" and outcome.version == "1"
        assert promote().version in (1, "1")
        resolved, package = load_version("models:/pneumonia-classifier@champion")
        assert resolved.version == "1" and package.onnx_path is not None
        from PIL import Image

        probs = package.predict_proba([Image.open(p) for p in sorted(originals.iterdir())])
        assert np.allclose(probs.sum(1), 1)
        run = MlflowClient(url).get_run(outcome.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied through the server
    # Artifacts were written by the server, into its own artifact store, not beside the client.
    assert list((tmp_path / "artifacts").rglob("weights.safetensors"))
