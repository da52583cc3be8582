"""The predict workflow: a package folder or a registered version -> one prediction record per file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR, STARTER_DIR
from pneumonia_zoo.workflows.predict import predict_files

IMAGES = sorted(SAMPLE_IMAGES_DIR.glob("*.jpeg"))[:2]


def test_a_package_folder_with_onnx_predicts_without_mlflow_or_torch() -> None:
    code = f"""
import sys
from pathlib import Path
from pneumonia_zoo.config import Settings
from pneumonia_zoo.workflows.predict import predict_files
records = predict_files(Settings(), [Path({str(IMAGES[0])!r})], {str(STARTER_DIR)!r})
print(records[0]["model"]["runtime"], "mlflow" in sys.modules, "torch" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert result.stdout.split() == ["onnx", "False", "False"], result.stderr


def test_one_record_per_file_in_order(registered_store: str) -> None:
    settings = Settings(tracking_uri=registered_store)
    records = predict_files(settings, IMAGES, None, runtime="torch", operating_point="specificity_95")
    assert [r["filename"] for r in records] == [str(path) for path in IMAGES]
    assert {r["model"]["name"] for r in records} == {"pneumonia-classifier"}  # the champion
    assert {r["model"]["version"] for r in records} == {"1"}
    assert {r["model"]["runtime"] for r in records} == {"torch"}
    assert {r["operating_point"]["name"] for r in records} == {"specificity_95"}
    by_uri = predict_files(settings, IMAGES, "models:/pneumonia-classifier/1", runtime="torch")
    assert [r["probabilities"] for r in by_uri] == [r["probabilities"] for r in records]


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match=f"^{broken}: "):
        predict_files(Settings(), [IMAGES[0], broken], str(STARTER_DIR))


@pytest.mark.parametrize("runtime", ["onnx", "torch"])
def test_a_registered_version_leaves_no_copy_behind(
    registered_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str
) -> None:
    """Each predict (and each load of a version) downloaded the package into a temporary folder nobody
    removed: 28-220 MB per call, 132 such folders (2.5 GB) filled this machine's /tmp in one day."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    records = predict_files(
        Settings(tracking_uri=registered_store), IMAGES, "models:/pneumonia-classifier/1", runtime=runtime
    )
    assert len(records) == len(IMAGES) and all(r["model"]["runtime"] == runtime for r in records)
    assert list(scratch.iterdir()) == []
