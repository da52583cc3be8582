"""`serve` (the champion's pages and API) and `ui` (the MLflow UI on the same store)."""

import os
import sys
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve the champion: HTML pages and the JSON API (the app `uvicorn fastapiapp:app` serves)."""
    from pneumonia_zoo.serving.process import tune_serving_process
    from pneumonia_zoo.serving.server import run_server

    tune_serving_process()  # allocator arenas and BLAS threads, before any server thread starts
    run_server(host, port)


def ui(port: Annotated[int, typer.Option(help="Port for the MLflow UI.")] = 5000) -> None:
    """Open the MLflow UI on the same store (MLFLOW_TRACKING_URI)."""
    from pneumonia_zoo.tracking.store import local_artifact_root

    uri = settings().tracking_uri
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if root := local_artifact_root(uri):
        command += ["--default-artifact-root", root.as_uri()]
    # MLflow 3's UI also starts job consumers (seven processes) for GenAI jobs this project never runs.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    output.show(output.render_ui(port, uri))
    os.execv(sys.executable, command)
