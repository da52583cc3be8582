"""ONNX Runtime and PyTorch give the same answer through the service; the runtime can be forced."""

import numpy as np
import pytest

from pneumonia_zoo.data.images import read_image
from tests.conftest import store_for
from tests.serving.conftest import make_client


@pytest.fixture
def classifiers(registered_store, tmp_path):
    store = store_for(registered_store)
    return {
        runtime: store.load("models:/pneumonia-classifier/1", runtime, destination=tmp_path / runtime)[1]
        for runtime in ("onnx", "torch")
    }


def test_onnx_and_pytorch_agree(classifiers, fixture_data, originals):
    paths = sorted(fixture_data.glob("test/*/*.jpeg"))[:6] + sorted(originals.glob("*.jpeg"))
    images = [read_image(path, min_side=32) for path in paths]
    onnx, torch_ = (classifiers[r].predict(images) for r in ("onnx", "torch"))
    assert classifiers["onnx"].runtime == "onnx" and classifiers["torch"].runtime == "torch"
    assert onnx.probabilities.shape == (len(paths), 2)
    np.testing.assert_allclose(onnx.probabilities, torch_.probabilities, atol=1e-4)
    np.testing.assert_allclose(onnx.probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(onnx.ood_scores, torch_.ood_scores, rtol=1e-3)


def test_forced_pytorch_app_matches_onnx(registered_store, xray_bytes):
    answers = {}
    for runtime in ("torch", "onnx"):
        for client in make_client(registered_store, runtime=runtime):
            body = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)}).json()
            assert body["model"]["runtime"] == runtime
            answers[runtime] = body["probabilities"]
    assert answers["torch"]["PNEUMONIA"] == pytest.approx(answers["onnx"]["PNEUMONIA"], abs=1e-4)
