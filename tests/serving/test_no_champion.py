"""A registry with no champion: the app starts, says why, and answers 503 with a clear detail."""

import pytest

from tests.serving.conftest import make_client


@pytest.fixture(scope="module")
def empty_client(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('empty-store') / 'mlflow.db'}"
    yield from make_client(uri)


def test_readyz_says_there_is_no_champion(empty_client):
    assert empty_client.get("/healthz").status_code == 200
    response = empty_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "no_champion"
    assert "models:/pneumonia-classifier@champion" in body["detail"] and "promote" in body["detail"]


def test_api_answers_503_json(empty_client, xray_bytes):
    response = empty_client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert "pneumonia-zoo train" in response.json()["detail"]
    assert empty_client.get("/api/v1/models").json()["versions"] == []


def test_pages_say_how_to_get_a_champion(empty_client, xray_bytes):
    home = empty_client.get("/")
    assert home.status_code == 200 and "No model is serving yet" in home.text and "promote" in home.text
    result = empty_client.post("/predict", files={"file": ("x.jpeg", xray_bytes, "image/jpeg")})
    assert result.status_code == 503 and "No model available" in result.text
    assert "Traceback" not in result.text
    sample = empty_client.get("/samples/person38_virus_84.jpeg")
    assert sample.status_code == 503 and "pneumonia-zoo train" in sample.text
    models = empty_client.get("/models")
    assert models.status_code == 200 and "No version is registered yet" in models.text
