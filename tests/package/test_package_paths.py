"""Issue 22: model.json comes from the registry, so the paths it names (recorded files, ensemble members)
must stay inside the package folder: absolute paths, `..` and links out of the folder are refused."""

import json
import shutil
from pathlib import Path

import pytest

from pneumonia_zoo.errors import PackageRejected
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import CONFIG_FILE, PackageConfig
from pneumonia_zoo.package.io import package_digest, sha256_file
from pneumonia_zoo.resources import STARTER_DIR


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file beside the package, not in it (what an attacker would point at)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not the package's")
    return secret


def starter_copy(tmp_path: Path) -> Path:
    directory = tmp_path / "package"
    shutil.copytree(STARTER_DIR, directory)
    return directory


def rewrite(directory: Path, change) -> None:
    values = json.loads((directory / CONFIG_FILE).read_text())
    change(values)
    (directory / CONFIG_FILE).write_text(json.dumps(values))


@pytest.mark.parametrize("escape", ["absolute", "dotdot", "nested-dotdot", "windows"])
def test_recorded_files_outside_the_package_are_refused(tmp_path: Path, outside: Path, escape: str) -> None:
    directory = starter_copy(tmp_path)
    name = {
        "absolute": str(outside),
        "dotdot": "../secret.txt",
        "nested-dotdot": "members/../../secret.txt",
        "windows": "..\\secret.txt",
    }[escape]
    # Its hash is right: only the path is wrong (a registry writer can write both).
    rewrite(directory, lambda values: values["files"].update({name: sha256_file(outside)}))
    with pytest.raises(PackageRejected, match="outside the package"):
        load_classifier(directory)


def test_a_link_out_of_the_package_is_refused(tmp_path: Path, outside: Path) -> None:
    directory = starter_copy(tmp_path)
    (directory / "notes.txt").symlink_to(outside)
    rewrite(directory, lambda values: values["files"].update({"notes.txt": sha256_file(outside)}))
    with pytest.raises(PackageRejected, match="outside the package"):
        load_classifier(directory)


@pytest.mark.parametrize("member", ["../starter", "/abs/starter", "members/../../starter"])
def test_ensemble_members_outside_the_package_are_refused(tmp_path: Path, member: str) -> None:
    """An ensemble whose member is another package on the disk, outside its own folder."""
    shutil.copytree(STARTER_DIR, tmp_path / "starter")
    ensemble = tmp_path / "ensemble"
    ensemble.mkdir()
    member_path = str(tmp_path / "starter") if member.startswith("/") else member
    config = {
        "format_version": 2,
        "architecture": "ensemble",
        "preprocessing": None,
        "members": [{"path": member_path, "architecture": "small_cnn"}],
        "files": {},
    }
    (ensemble / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PackageRejected, match="outside the package"):
        load_classifier(ensemble, runtime="onnx")


def test_paths_inside_the_package_still_load(tmp_path: Path) -> None:
    directory = starter_copy(tmp_path)
    config = PackageConfig.from_json((directory / CONFIG_FILE).read_text())
    assert all(not Path(name).is_absolute() for name in config.files)
    assert load_classifier(directory, runtime="onnx").config.architecture == config.architecture


def test_the_digest_is_the_sha256_of_model_json(tmp_path: Path) -> None:
    directory = starter_copy(tmp_path)
    assert package_digest(directory) == sha256_file(directory / CONFIG_FILE)
    rewrite(directory, lambda values: values["metrics"].update({"val_auc": 0.5}))
    assert package_digest(directory) != package_digest(STARTER_DIR)
