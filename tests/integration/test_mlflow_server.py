"""The same train -> register -> promote -> load flow against a real `mlflow server` process."""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.train import train
from tests.conftest import registry_client, store_for, tiny_train_args
from tests.servers import mlflow_server


def test_train_and_serve_from_a_tracking_server(
    tmp_path: Path, fixture_data: Path, originals: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "mlflow-server.log") as url:
        store = store_for(url)
        outcome = train(TrainConfig.build(**tiny_train_args(fixture_data, onnx=True)), store, quiet=True)
        assert outcome.status == "FINISHED" and outcome.version == "1"
        assert str(store.promote().version) == "1"
        resolved, classifier = store.load(
            "models:/pneumonia-classifier@champion", destination=tmp_path / "champion"
        )
        assert resolved.version == "1" and classifier.runtime == "onnx"
        scores = classifier.predict([read_image(p, min_side=32) for p in sorted(originals.iterdir())])
        assert np.allclose(scores.probabilities.sum(1), 1, atol=1e-5)
        assert "model_card.md" in {a.path for a in registry_client(store).list_artifacts(outcome.run_id)}
        run = MlflowClient(url).get_run(outcome.run_id)
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied through the server
    # Artifacts were written by the server, into its own artifact store, not beside the client.
    assert list((tmp_path / "artifacts").rglob("weights.safetensors"))
