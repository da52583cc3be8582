"""An answered request has its record, even when the service is SIGKILLed under load.

As `make serve` runs it (`pneumonia-zoo register-starter`, then `pneumonia-zoo serve`) with
PNEUMONIA_ZOO_AUDIT_URL=sqlite:///<file>: 200 requests at concurrency 8, the whole process group killed
with SIGKILL once 60 answers have come back, the service started again on the same files, and every
request_id that was answered looked up.
"""

import os
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR
from tests.conftest import PROJECT_ROOT
from tests.servers import BIN, free_port, running

pytestmark = pytest.mark.slow

REQUESTS, CONCURRENCY, KILL_AFTER = 200, 8, 60


def serve(environment: dict[str, str], log: Path, port: int):  # type: ignore[no-untyped-def]
    command = [str(BIN / "pneumonia-zoo"), "serve", "--port", str(port)]
    return running(
        command, f"http://127.0.0.1:{port}/readyz", log, timeout=180, env=environment, cwd=PROJECT_ROOT
    )


def test_sigkill_under_load_loses_no_answered_record(tmp_path: Path) -> None:
    environment = os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PNEUMONIA_ZOO_AUDIT_URL": f"sqlite:///{tmp_path / 'audit.db'}",
    }
    registered = subprocess.run(
        [str(BIN / "pneumonia-zoo"), "register-starter"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert registered.returncode == 0, registered.stderr[-2000:]
    images = [p.read_bytes() for p in sorted(SAMPLE_IMAGES_DIR.glob("*.jpeg"))]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()

    with serve(environment, tmp_path / "first.log", port) as process:

        def one(index: int) -> None:
            if killed.is_set():
                return
            try:
                response = httpx.post(
                    f"{url}/api/v1/predict",
                    files={"file": ("x.jpeg", images[index % len(images)], "image/jpeg")},
                    timeout=60,
                )
            except httpx.HTTPError:
                return  # the server is gone: this request was never answered
            if response.status_code != 200:
                return
            with lock:
                answered.append(response.json()["request_id"])
                if len(answered) == KILL_AFTER and not killed.is_set():
                    killed.set()
                    os.killpg(process.pid, signal.SIGKILL)

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(one, range(REQUESTS)))
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL

    assert killed.is_set() and len(answered) >= KILL_AFTER
    lookup = free_port()
    missing = []
    with serve(environment, tmp_path / "again.log", lookup):  # the same files, a new process
        for rid in answered:
            found = httpx.get(f"http://127.0.0.1:{lookup}/api/v1/predictions/{rid}", timeout=30)
            if found.status_code != 200:
                missing.append((rid, found.status_code))
    assert missing == [], f"{len(missing)} of {len(answered)} answered requests have no record"
