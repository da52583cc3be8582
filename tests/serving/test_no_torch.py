"""An ONNX champion whose CAM is linear is served and explained without importing torch at all: the
service's memory is the model's, not the framework's."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SCRIPT = """
import sys, time
from pathlib import Path
from fastapi.testclient import TestClient
from pneumonia_zoo.config import Settings
from pneumonia_zoo.serving import create_app
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.tracking.store import Store
from tests.package.helpers import make_package

package = Path(sys.argv[1]) / "package"
make_package(package, size=64)
settings = Settings(tracking_uri=f"sqlite:///{Path(sys.argv[1]) / 'mlflow.db'}", reload_interval_s=0)
register_package(Store(settings), package, "no-torch", alias="champion")
TORCH = ("torch.", "torchvision", "pytorch_grad_cam")
for name in [m for m in sys.modules if m == "torch" or m.startswith(TORCH)]:
    del sys.modules[name]  # making the package needed torch; serving it must not
import builtins
real_import = builtins.__import__
def refuse(name, *args, **kwargs):
    if name == "torch" or name.startswith(TORCH):
        raise ImportError(f"the service imported {name}")
    return real_import(name, *args, **kwargs)
builtins.__import__ = refuse
image = Path(sys.argv[2]).read_bytes()
with TestClient(create_app(settings)) as client:
    while client.get("/readyz").json().get("status") == "starting":
        time.sleep(0.1)
    assert client.get("/readyz").status_code == 200, client.get("/readyz").text
    predicted = client.post("/api/v1/predict", files={"file": ("x.jpeg", image)})
    explained = client.post("/api/v1/explain", files={"file": ("x.jpeg", image)})
    print(predicted.status_code, explained.status_code, explained.headers["content-type"])
"""


def test_an_onnx_champion_is_served_and_explained_without_torch(tmp_path: Path, originals: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(originals / "person56_virus_112.jpeg")],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-3:] == ["200", "200", "image/png"], result.stdout + result.stderr[-2000:]
