"""`pneumonia-zoo serve` as an orchestrator sees it: lifecycle lines in its log, a clean stop on SIGTERM."""

import os
import signal
from pathlib import Path

from tests.servers import BIN, free_port, running


def test_sigterm_ends_the_server_cleanly_and_says_so(registered_store: str, tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {"MLFLOW_TRACKING_URI": registered_store, "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0"}
    command = [str(BIN / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "serve.log"
    with running(command, f"http://127.0.0.1:{port}/readyz", log, timeout=120, env=env) as process:
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once shut down: -SIGTERM here; as a container's PID 1 (where a
        # signal without a handler does nothing) the process then exits 0 (tests/container).
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
    text = log.read_text()
    for line in ("Started server process", "Application startup complete", "Finished server process"):
        assert line in text, text
    assert "Traceback" not in text
