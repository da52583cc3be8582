"""A registered model is portable: `mlflow models serve --env-manager uv` builds it an environment from
its own requirements (no `pneumonia-zoo` from an index, no repository on the path) and serves the
README's request body.

How: the model carries the package's Python code (`code_paths`: pneumonia_zoo/ without its assets,
~1 MB) and pins the few distributions the pyfunc imports, at the versions installed when it was
logged (`pneumonia_zoo.tracking.publish.model_requirements`). ONNX versions need no torch; a version
without ONNX adds torch and torchvision.

The environment comes from PyPI through uv (a few hundred MB, cached in uv's cache and in the MLflow
env root below: a second run reuses both). MLflow's `virtualenv` manager needs pyenv to provide the
recorded Python; uv finds this machine's 3.11 itself.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.deploy.dockerfile_model import ROOT
from tests.servers import free_port, running

pytestmark = pytest.mark.slow

SAMPLE = ROOT / "pneumonia_zoo" / "assets" / "sample_images" / "person38_virus_84.jpeg"
ENV_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pneumonia-zoo" / "mlflow-envs"


@pytest.fixture
def registered(tmp_path: Path) -> Iterator[str]:
    """The starter package published (as training publishes) and made champion in a fresh sqlite store."""
    import mlflow

    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.tracking.publish import publish
    from tests.conftest import mlflow_globals, store_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = store_for(uri)
    with mlflow_globals(uri):
        store.activate()
        package = tmp_path / "package"
        shutil.copytree(STARTER_DIR, package, ignore=shutil.ignore_patterns("MODEL_CARD.md"))
        with mlflow.start_run():
            version = publish(store, package)
        store.set_alias(version)
        requirements = mlflow.pyfunc.get_model_dependencies(f"models:/{store.model_name}/{version}")
        assert "pneumonia-zoo" not in Path(requirements).read_text(), "no index has pneumonia-zoo"
        yield uri


def test_served_by_mlflow_in_its_own_uv_environment(tmp_path: Path, registered: str) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "uv").exists() and shutil.which("uv") is None:
        pytest.skip("uv not installed (requirements-test.txt has it)")
    ENV_ROOT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    workdir = tmp_path / "elsewhere"  # not the repository: nothing of it on sys.path
    workdir.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("PNEUMONIA_ZOO_", "UV_"))
    } | {
        "MLFLOW_TRACKING_URI": registered,
        "MLFLOW_ENV_ROOT": str(ENV_ROOT),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    command = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/pneumonia-classifier@champion",
        "--env-manager",
        "uv",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = tmp_path / "serve.log"
    # First run: uv resolves and installs the environment (about 1-3 min); later runs reuse it.
    with running(command, f"http://127.0.0.1:{port}/ping", log, timeout=600, env=env, cwd=workdir):
        # The README's request body: the `image` column, base64 in dataframe_split.
        body = {
            "dataframe_split": {
                "columns": ["image"],
                "data": [[base64.b64encode(SAMPLE.read_bytes()).decode()]],
            }
        }
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=120)
        assert response.status_code == 200, response.text + log.read_text()[-3000:]
        (row,) = response.json()["predictions"]
        assert row["label"] in ("NORMAL", "PNEUMONIA")
        assert abs(row["NORMAL"] + row["PNEUMONIA"] - 1) < 1e-5, row
    served = log.read_text()
    # The environment MLflow made: it holds the pinned distributions and no pneumonia-zoo distribution.
    envs = [p for p in ENV_ROOT.glob("*/bin/python") if p.exists()]
    assert envs, served[-3000:]
    listing = subprocess.run(
        [str(bin_dir / "uv"), "pip", "list", "--format", "json", "--python", str(envs[0])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = {item["name"].lower() for item in json.loads(listing.stdout or "[]")}
    assert "onnxruntime" in names and "pneumonia-zoo" not in names, listing.stdout[:2000] + listing.stderr
