"""A champion whose artifact was altered after registration is refused, and /readyz says so."""

import re
import shutil

from mlflow.tracking import MlflowClient

from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.train import train
from tests.conftest import copy_store, store_for, tiny_train_args
from tests.serving.conftest import make_client


def test_tampered_champion_is_refused_and_the_old_one_keeps_serving(
    tmp_path, monkeypatch, fixture_data, xray_bytes
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = store_for(uri)
    train(TrainConfig.build(**tiny_train_args(fixture_data)), store, quiet=True)
    store.promote()
    (weights,) = tmp_path.glob("mlruns/**/weights.safetensors")
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")

    for client in make_client(uri, admin_token="t"):
        body = client.get("/readyz").json()
        assert body["status"] == "invalid_artifact" and "sha256" in body["detail"]
        assert client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)}).status_code == 503

        # A good version promoted later is picked up by the admin reload.
        train(TrainConfig.build(**tiny_train_args(fixture_data, seed=3)), store, quiet=True)
        store.set_alias("2")
        reload = client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer t"}).json()
        assert reload["changed"] is True and reload["model"]["version"] == "2"

        # Moving the alias back to the tampered version: refused, version 2 keeps serving.
        store.set_alias("1")
        reload = client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer t"}).json()
        assert reload["changed"] is False and "sha256" in reload["error"]
        ready = client.get("/readyz").json()
        assert ready["model"]["version"] == "2" and "sha256" in ready["last_error"]
        answer = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)}).json()
        assert answer["model"]["version"] == "2"


def test_version_with_missing_artifacts_is_refused_and_the_champion_keeps_serving(
    registered_store, tmp_path, xray_bytes
):
    """A copy of the session's store gains version 2, whose artifact files are then deleted."""
    uri = copy_store(registered_store, tmp_path / "mlflow.db")
    registry = MlflowClient(uri)
    one = registry.get_model_version("pneumonia-classifier", "1")
    artifacts = tmp_path / "version-2"
    source = registry.get_model_version_download_uri("pneumonia-classifier", "1").removeprefix("file://")
    shutil.copytree(source, artifacts)
    registry.create_model_version("pneumonia-classifier", artifacts.as_uri(), one.run_id, tags=one.tags)

    for client in make_client(uri, admin_token="t"):
        assert client.get("/readyz").json()["model"]["version"] == "1"
        shutil.rmtree(artifacts)  # the files of a registered version are gone
        MlflowClient(uri).set_registered_model_alias("pneumonia-classifier", "champion", "2")
        reload = client.post("/api/v1/admin/reload", headers={"Authorization": "Bearer t"}).json()
        assert reload["changed"] is False
        assert re.search(r"version 2 \(run \w+\) was refused", reload["error"])
        assert "artifacts are missing" in reload["error"]
        ready = client.get("/readyz").json()
        assert ready["model"]["version"] == "1" and "artifacts are missing" in ready["last_error"]
        answer = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "1"
        asked = client.post(
            "/api/v1/predict", params={"version": "2"}, files={"file": ("x.jpeg", xray_bytes)}
        )
        assert asked.status_code == 503 and "artifacts are missing" in asked.json()["detail"]


def test_a_registered_version_whose_files_are_gone_could_not_be_loaded_not_missing(
    registered_store, tmp_path, xray_bytes
):
    """Version 2 is in the registry but its artifacts were deleted: 503 "could not be loaded" on every
    route that names it, never the 404 of a version the registry does not hold."""
    uri = copy_store(registered_store, tmp_path / "mlflow.db")
    registry = MlflowClient(uri)
    one = registry.get_model_version("pneumonia-classifier", "1")
    artifacts = tmp_path / "version-2"
    source = registry.get_model_version_download_uri("pneumonia-classifier", "1").removeprefix("file://")
    shutil.copytree(source, artifacts)
    # Its own run, with no model card logged: the card must be rendered from the (missing) package.
    run = registry.create_run(registry.get_run(one.run_id).info.experiment_id)
    registry.create_model_version("pneumonia-classifier", artifacts.as_uri(), run.info.run_id, tags=one.tags)
    shutil.rmtree(artifacts)

    for client in make_client(uri):
        predict = client.post(
            "/api/v1/predict", params={"version": "2"}, files={"file": ("x.jpeg", xray_bytes)}
        )
        card = client.get("/api/v1/models/2/card")
        for response in (predict, card):
            assert response.status_code == 503, response.text
            detail = response.json()["detail"]
            assert detail.startswith("version 2 could not be loaded") and "artifacts are missing" in detail
        page = client.get("/samples/person56_virus_112.jpeg", params={"version": "2"})
        assert page.status_code == 503 and "could not be loaded" in page.text
        # A version the registry does not hold is still the client's 404.
        for missing in (
            client.post("/api/v1/predict", params={"version": "7"}, files={"file": ("x.jpeg", xray_bytes)}),
            client.get("/api/v1/models/7/card"),
        ):
            assert missing.status_code == 404
            assert missing.json() == {"detail": "version 7 of 'pneumonia-classifier' is not in the registry"}
