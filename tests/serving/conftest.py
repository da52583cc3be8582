"""Serving fixtures: an app on the session's registered store, and images of every kind."""

import io
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving import create_app
from tests.conftest import PROJECT_ROOT
from tests.servers import BIN, free_port, running

# Small limits so the limit tests need no large files; everything else fits under them.
TEST_LIMITS = {"max_upload_bytes": 3_000_000, "max_batch_files": 4, "max_image_pixels": 6_000_000}


def wait_ready(client: TestClient, timeout: float = 120) -> dict:
    """Poll /readyz until the model holder has finished its first attempt (ready or failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        if response.status_code == 200 or response.json().get("status") != "starting":
            return response.json()
        time.sleep(0.1)
    raise TimeoutError("/readyz never settled")


def make_client(uri: str, *, raise_server_exceptions: bool = True, **overrides) -> Iterator[TestClient]:
    """The app on the store at `uri`, given only through its settings (the environment is not touched).

    raise_server_exceptions=False: a 500 reaches the test as the response a client would get.
    """
    base = TEST_LIMITS | {"reload_interval_s": 0, "max_batch_wait_ms": 2, "tracking_uri": uri}
    settings = Settings(**(base | overrides))
    with TestClient(create_app(settings), raise_server_exceptions=raise_server_exceptions) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def client(registered_store: str) -> Iterator[TestClient]:
    """The app serving the session's champion (small_cnn with ONNX), admin token 'let-me-in'."""
    yield from make_client(registered_store, admin_token="let-me-in")


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def xray_bytes(originals: Path) -> bytes:
    return (originals / "person56_virus_112.jpeg").read_bytes()


@pytest.fixture(scope="session")
def xray(xray_bytes: bytes) -> Image.Image:
    return Image.open(io.BytesIO(xray_bytes)).convert("L")


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """Incompressible: a PNG about 3 * width * height bytes large."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"))


@contextmanager
def uvicorn_process(
    uri: str, log: Path, wait_for: str = "/readyz", **settings: str
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`uvicorn fastapiapp:app` as `make serve` runs it; yields its URL and process once `wait_for` is 200."""
    port = free_port()
    env = os.environ | {"MLFLOW_TRACKING_URI": uri}
    env |= {f"PNEUMONIA_ZOO_{key.upper()}": value for key, value in settings.items()}
    command = [str(BIN / "uvicorn"), "fastapiapp:app", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}{wait_for}", log, timeout=120, env=env, cwd=PROJECT_ROOT) as process:
        yield url, process


@contextmanager
def uvicorn_app(uri: str, log: Path, **settings: str) -> Iterator[str]:
    """As uvicorn_process, yielding only the URL."""
    with uvicorn_process(uri, log, **settings) as (url, _):
        yield url


@pytest.fixture(scope="session")
def starter_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store whose champion is the shipped starter model: a real trained network, for tests whose
    point is that predictions agree (a random tiny model answers about 0.5 to everything)."""
    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.workflows.starter import ensure_champion
    from tests.conftest import store_for

    uri = f"sqlite:///{tmp_path_factory.mktemp('starter-store') / 'mlflow.db'}"
    ensure_champion(store_for(uri), STARTER_DIR)
    return uri


@pytest.fixture(scope="module")
def starter_client(starter_store: str) -> Iterator[TestClient]:
    yield from make_client(starter_store, max_upload_bytes=20_000_000, max_image_pixels=50_000_000)
