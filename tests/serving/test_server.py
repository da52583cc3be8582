"""Against a real uvicorn process on 127.0.0.1: the acceptance checks and the hot swap."""

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.train import train
from tests.conftest import store_for, tiny_train_args
from tests.serving.conftest import noise_png, uvicorn_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(registered_store, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("uvicorn") / "uvicorn.log"
    with uvicorn_app(registered_store, log, max_upload_bytes="1000000", reload_interval_s="0") as url:
        yield url


def test_acceptance_predict_an_original(server, originals):
    assert httpx.get(f"{server}/healthz").status_code == 200
    image = (originals / "IM-0061-0001.jpeg").read_bytes()
    upload = ("IM-0061-0001.jpeg", image, "image/jpeg")
    response = httpx.post(f"{server}/api/v1/predict", files={"file": upload})
    assert response.status_code == 200
    assert sum(response.json()["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_text_file_gets_a_json_4xx(server):
    response = httpx.post(f"{server}/api/v1/predict", files={"file": ("notes.txt", b"hello\n", "text/plain")})
    assert 400 <= response.status_code < 500
    assert response.json()["detail"] == "'notes.txt': the file is not a JPEG, PNG or DICOM image"


def test_oversized_upload_over_a_real_socket(server):
    upload = ("big.png", noise_png(700, 700), "image/png")  # ~1.5 MB, over the server's 1 MB limit
    response = httpx.post(f"{server}/api/v1/predict", files={"file": upload})
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]


def test_concurrent_requests_all_answer(server, originals):
    image = (originals / "person56_virus_112.jpeg").read_bytes()
    results: list[int] = []

    def fire() -> None:
        for _ in range(4):
            results.append(
                httpx.post(
                    f"{server}/api/v1/predict", files={"file": ("x.jpeg", image)}, timeout=60
                ).status_code
            )

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 24
    metrics = httpx.get(f"{server}/metrics").text
    assert "pneumonia_zoo_inference_batch_size_sum" in metrics


def test_hot_swap_under_load(tmp_path, monkeypatch, fixture_data, originals):
    """A new champion is promoted while requests run: none fails, answers move to version 2 for good."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = store_for(uri)
    train(TrainConfig.build(**tiny_train_args(fixture_data)), store, quiet=True)
    store.promote()
    image = (originals / "person56_virus_112.jpeg").read_bytes()
    with uvicorn_app(uri, tmp_path / "uvicorn.log", reload_interval_s="1") as url:
        answers: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def fire() -> None:
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    response = http.post("/api/v1/predict", files={"file": ("x.jpeg", image)})
                    version = response.json()["model"]["version"] if response.status_code == 200 else None
                    answers.append((response.status_code, version))

        worker = threading.Thread(target=fire)
        worker.start()
        try:
            train(TrainConfig.build(**tiny_train_args(fixture_data, seed=7)), store, quiet=True)
            store.set_alias("2")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sum(v == "2" for _, v in answers) < 10:
                time.sleep(0.2)
        finally:
            stop.set()
            worker.join()
        assert httpx.get(f"{url}/readyz").json()["model"]["version"] == "2"

    assert answers and all(status == 200 for status, _ in answers), set(answers)
    versions = [version for _, version in answers]
    assert versions[0] == "1" and versions[-1] == "2"
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}  # no mixing back
