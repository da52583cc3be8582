"""Where PyTorch is not installed (the default Docker image): a version with an ONNX export is served, and
one whose Grad-CAM needs PyTorch is explained without a heatmap, said on the page (501 from the API); a
version without ONNX is refused at load in one line (/readyz, the CLI), never with a traceback.

PyTorch is made unimportable the way a missing install is: `sys.modules[name] = None` makes `import
torch` raise ImportError and `importlib.util.find_spec("torch")` answer None.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

TORCH_MODULES = ("torch", "torchvision", "pytorch_grad_cam", "timm")

BLOCK_TORCH = f"""
import sys
for name in [m for m in sys.modules if m.split(".")[0] in {TORCH_MODULES!r}]:
    del sys.modules[name]  # making the packages needed torch; what follows must not
for name in {TORCH_MODULES!r}:
    sys.modules[name] = None
"""

SERVE = (
    """
import json, sys, time
from pathlib import Path
import onnx
from fastapi.testclient import TestClient
from pneumonia_zoo.config import Settings
from pneumonia_zoo.package.io import read_config, record_files
from pneumonia_zoo.serving import create_app
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.tracking.store import Store
from tests.package.helpers import make_package

root, image = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
# An ONNX export made before the `cam` output: its heatmap needs Grad-CAM on PyTorch, as VGG16's does.
no_cam = root / "no-cam"
make_package(no_cam, size=64)
model = onnx.load(no_cam / "model.onnx")
kept = [output for output in model.graph.output if output.name != "cam"]
del model.graph.output[:]
model.graph.output.extend(kept)
onnx.save(model, no_cam / "model.onnx")
record_files(no_cam, read_config(no_cam))
no_onnx = root / "no-onnx"
make_package(no_onnx, size=64, onnx=False)
with_cam = root / "with-cam"  # an ONNX export with its `cam` output: the heatmap needs no PyTorch
make_package(with_cam, size=64)
settings = Settings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", reload_interval_s=0)
store = Store(settings)
register_package(store, no_cam, "no-cam", alias="champion")  # version 1
"""
    + BLOCK_TORCH
    + """
import importlib.util
assert importlib.util.find_spec("torch") is None
files = {"file": ("x.jpeg", image, "image/jpeg")}
found = {}

def ready(client):
    while client.get("/readyz").json().get("status") == "starting":
        time.sleep(0.1)
    return client.get("/readyz")

with TestClient(create_app(settings)) as client:
    found["ready"] = ready(client).status_code
    found["predict"] = client.post("/api/v1/predict", files=files).status_code
    explained = client.post("/api/v1/explain", files=files)
    found["explain"] = [explained.status_code, explained.json().get("detail", "")]
    page = client.post("/predict", files=files)
    found["page"] = [page.status_code, page.text]
    compare = client.post("/compare", files=files)  # the newest version of each architecture: 1
    found["compare"] = [compare.status_code, compare.text]
register_package(store, no_onnx, "no-onnx")  # version 2, the same architecture
with TestClient(create_app(settings)) as client:
    ready(client)
    other = client.post("/api/v1/predict", params={"version": "2"}, files=files)
    found["version_2"] = [other.status_code, other.json().get("detail", "")]
    compare = client.post("/compare", files=files)  # now version 2
    found["compare_2"] = [compare.status_code, compare.text]
store.set_alias("2")  # a champion without ONNX: the next service refuses it at load
with TestClient(create_app(settings)) as client:
    answer = ready(client)
    found["refused"] = [answer.status_code, answer.json()]
register_package(store, with_cam, "with-cam", alias="champion")  # version 3
with TestClient(create_app(settings)) as client:
    ready(client)
    explained = client.post("/api/v1/explain", files=files)
    head = explained.content[:8].hex()
    found["explain_cam"] = [explained.status_code, explained.headers["content-type"], head]
found["torch_imported"] = sorted(
    name for name, module in sys.modules.items() if name.split(".")[0] in ("torch", "torchvision") and module
)
print("RESULT " + json.dumps(found))
"""
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, originals: Path) -> dict:
    root = tmp_path_factory.mktemp("without-torch")
    result = subprocess.run(
        [sys.executable, "-c", SERVE, str(root), str(originals / "person56_virus_112.jpeg")],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    found = json.loads(line.removeprefix("RESULT "))
    found["root"] = str(root)
    return found


def test_an_onnx_version_is_served_without_torch(served: dict) -> None:
    assert served["ready"] == 200 and served["predict"] == 200
    assert served["torch_imported"] == []


def test_a_heatmap_from_the_onnx_activations_needs_no_torch(served: dict) -> None:
    """A champion whose CAM is linear (the ONNX export's `cam` output) is explained with a PNG heatmap."""
    status, content_type, head = served["explain_cam"]
    assert (status, content_type, head) == (200, "image/png", b"\x89PNG\r\n\x1a\n".hex())
    assert served["torch_imported"] == []  # after all three services


def test_a_heatmap_that_needs_torch_is_a_clear_501(served: dict) -> None:
    status, detail = served["explain"]
    assert status == 501, detail
    assert "needs PyTorch" in detail and "--target full" in detail and "\n" not in detail


def test_the_page_shows_the_prediction_and_says_why_there_is_no_heatmap(served: dict) -> None:
    status, html = served["page"]
    assert status == 200, html[-2000:]
    assert 'data-testid="label"' in html and 'data-testid="no-heatmap"' in html
    assert "No heatmap: Grad-CAM of small_cnn needs PyTorch" in html
    assert "xray-heatmap" not in html and "heatmap-toggle" not in html


def test_the_comparison_says_why(served: dict) -> None:
    """Version 1 is compared without a heatmap; version 2 (no ONNX), once registered, says it cannot be
    loaded here."""
    status, html = served["compare"]
    assert status == 200, html[-2000:]
    assert html.count('data-testid="no-heatmap"') == 1 and "No heatmap: Grad-CAM of small_cnn" in html
    status, html = served["compare_2"]
    assert status == 200, html[-2000:]
    assert "it has no ONNX export, and this installation has no PyTorch" in html


def test_a_version_without_onnx_is_refused_in_one_line(served: dict) -> None:
    status, detail = served["version_2"]
    assert status == 503, detail
    assert "no ONNX export" in detail and "no PyTorch" in detail and "\n" not in detail
    status, body = served["refused"]
    assert status == 503 and body["status"] == "invalid_artifact", body
    reason = body["detail"]
    assert reason.startswith("version 2 (run ") and "was refused: it has no ONNX export" in reason, reason
    assert "docker build --target full" in reason and "\n" not in reason and "Traceback" not in reason


def test_the_cli_refuses_it_in_one_line(served: dict, originals: Path) -> None:
    command = BLOCK_TORCH + (
        "sys.argv[0] = 'pneumonia-zoo'\nfrom pneumonia_zoo.cli import main\nsys.exit(main())\n"
    )
    package = Path(served["root"]) / "no-onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "predict",
            str(originals / "IM-0061-0001.jpeg"),
            "--model",
            str(package),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "no ONNX export" in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
