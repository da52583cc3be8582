"""`docker build --target full`: the default service with PyTorch, run as production runs it (read-only
root, tmpfs /tmp, non-root). It serves the starter from ONNX as the default image does, and also a
version that only PyTorch can run (no ONNX export), which the default image refuses."""

import time
from pathlib import Path

import httpx

from tests.container.conftest import champion_without_onnx, container, docker

ROOT = Path(__file__).resolve().parents[2]
XRAY = ROOT / "pneumonia_zoo" / "assets" / "sample_images" / "person38_virus_84.jpeg"
APP_UID = "10001"


def predict(url: str) -> dict:
    with open(XRAY, "rb") as image:
        response = httpx.post(
            url + "/api/v1/predict", files={"file": (XRAY.name, image, "image/jpeg")}, timeout=120
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_full_image_serves_the_starter_with_torch_installed(full_image: str, report: dict) -> None:
    with container(full_image) as app:
        started = time.monotonic()
        app.wait_http("/readyz", 240)
        report["full_ready_seconds_empty_store"] = round(time.monotonic() - started, 1)
        assert predict(app.url)["model"]["runtime"] == "onnx"
        assert app.exec("id", "-u").stdout.strip() == APP_UID
        assert app.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
        probe = app.exec("python", "-c", "import torch, pytorch_grad_cam; print(torch.__version__)")
        assert probe.returncode == 0, probe.stderr
    size = int(docker("image", "inspect", "--format", "{{.Size}}", full_image).stdout.strip())
    report["full_image_gb"] = round(size / 1e9, 3)


def test_the_full_image_serves_a_version_without_onnx(full_image: str, tmp_path: Path) -> None:
    env, volumes = champion_without_onnx(tmp_path)
    with container(full_image, env=env, volumes=volumes) as app:
        ready = app.wait_http("/readyz", 240)
        assert ready.json()["model"]["runtime"] == "torch", ready.text
        body = predict(app.url)
        assert body["model"]["runtime"] == "torch" and body["label"] in ("NORMAL", "PNEUMONIA"), body
