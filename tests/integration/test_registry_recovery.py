"""The registry is down when the service starts: it comes up anyway, says why it is not ready, and
becomes ready by itself once the registry appears, without a restart and without flooding its log."""

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import copy_store
from tests.servers import free_port, mlflow_server
from tests.serving.conftest import uvicorn_process

pytestmark = pytest.mark.slow


def poll_readyz(url: str, until, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/readyz", timeout=10)
        if until(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.25)


def test_service_waits_for_an_unreachable_registry_and_recovers(
    registered_store: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here yet
    registry = f"http://127.0.0.1:{port}"
    # The session's store (a champion, its artifacts on local disk) becomes the registry server's backend.
    copy_store(registered_store, tmp_path / "registry.db")
    app_log = tmp_path / "uvicorn.log"

    with uvicorn_process(registry, app_log, wait_for="/healthz", reload_interval_s="1") as (url, process):
        down = poll_readyz(url, lambda r: r.json().get("status") != "starting", timeout=60)
        assert down.status_code == 503, down.text
        assert down.json()["status"] == "registry_unreachable"
        assert "registry could not be read" in down.json()["detail"]
        assert (
            str(port) not in down.text and "127.0.0.1" not in down.text
        )  # the registry's address stays private
        assert httpx.get(f"{url}/healthz").status_code == 200
        time.sleep(3)  # a few retries against the dead port

        backend = f"sqlite:///{tmp_path / 'registry.db'}"
        with mlflow_server(backend, tmp_path / "artifacts", tmp_path / "mlflow.log", port=port):
            ready = poll_readyz(url, lambda r: r.status_code == 200, timeout=90)
            assert ready.status_code == 200, ready.text
            assert ready.json()["model"]["version"] == "1" and ready.json()["last_error"] is None
        assert process.poll() is None

    log = app_log.read_text()
    assert "Traceback" not in log
    failures = [line for line in log.splitlines() if "model refresh failed" in line]
    assert 1 <= len(failures) <= 2, failures  # one line per distinct problem, not one per retry
