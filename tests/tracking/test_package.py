import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.tracking.package import (
    CONFIG_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    PackageConfig,
    PackageError,
    load_package,
    save_package,
)
from pneumonia_zoo.zoo import create_model


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    network = create_model("small_cnn")
    directory = tmp_path_factory.mktemp("package")
    save_package(
        network, PackageConfig("small_cnn", Preprocessing(48), threshold=0.37), directory, with_onnx=True
    )
    return directory


def images(originals: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(originals.iterdir())]


def test_round_trip_keeps_config_and_outputs(package_dir: Path, originals: Path) -> None:
    package = load_package(package_dir)
    assert package.config.threshold == 0.37 and package.config.preprocessing.image_size == 48
    probs = package.predict_proba(images(originals))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1)
    again = load_package(package_dir).predict_proba(images(originals))
    assert np.allclose(probs, again, atol=1e-6)


def test_onnx_export_matches_pytorch(package_dir: Path, originals: Path) -> None:
    package = load_package(package_dir)
    batch = package.batch(images(originals)).numpy()
    session = onnxruntime.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"x": batch})[0])
    assert np.allclose(logits.softmax(1).numpy(), package.predict_proba(images(originals)), atol=1e-4)


def test_package_holds_no_pickles(package_dir: Path) -> None:
    assert sorted(p.name for p in package_dir.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE])
    json.loads((package_dir / CONFIG_FILE).read_text())


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, ONNX_FILE])
def test_tampered_or_missing_files_are_refused(package_dir: Path, tmp_path: Path, victim: str) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in package_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    data = bytearray((copy / victim).read_bytes())
    data[-10] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(PackageError, match=f"{victim} does not match"):
        load_package(copy)
    (copy / victim).unlink()
    with pytest.raises(PackageError, match=f"{victim} is missing"):
        load_package(copy)


def test_a_folder_that_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not a pneumonia-zoo model package"):
        load_package(tmp_path)
