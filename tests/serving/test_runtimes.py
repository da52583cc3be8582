"""ONNX Runtime and PyTorch give the same answer; the runtime can be forced."""

import numpy as np
import pytest

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.serving.predictors import OnnxPredictor, TorchPredictor, build_predictor
from pneumonia_zoo.tracking.package import load_package
from pneumonia_zoo.tracking.registry import download_package
from tests.conftest import use_store
from tests.serving.conftest import make_client


@pytest.fixture
def package(registered_store, monkeypatch, tmp_path):
    use_store(monkeypatch, registered_store)
    return load_package(download_package("pneumonia-classifier", "1", tmp_path))


def test_onnx_and_pytorch_agree(package, fixture_data, originals):
    paths = sorted(fixture_data.glob("test/*/*.jpeg"))[:6] + sorted(originals.glob("*.jpeg"))
    batch = package.batch([read_image(path) for path in paths])
    onnx, torch_ = OnnxPredictor(package)(batch), TorchPredictor(package)(batch)
    assert onnx.shape == torch_.shape == (len(paths), 2)
    np.testing.assert_allclose(onnx, torch_, atol=1e-4)
    np.testing.assert_allclose(onnx.sum(axis=1), 1, atol=1e-5)
    # and both agree with the package's own reference implementation
    np.testing.assert_allclose(torch_, package.predict_proba([read_image(path) for path in paths]), atol=1e-5)


def test_runtime_choice(package):
    assert build_predictor(package, "auto").runtime == "onnx"
    assert build_predictor(package, "torch").runtime == "torch"
    assert build_predictor(package, "onnx").runtime == "onnx"


def test_forced_pytorch_app_matches_onnx(registered_store, xray_bytes):
    answers = {}
    for runtime in ("torch", "onnx"):
        for client in make_client(registered_store, runtime=runtime):
            body = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)}).json()
            assert body["model"]["runtime"] == runtime
            answers[runtime] = body["probabilities"]
    assert answers["torch"]["PNEUMONIA"] == pytest.approx(answers["onnx"]["PNEUMONIA"], abs=1e-4)
