"""results/gpu_recipe.py with tiny settings on CPU: every network it is given trains into a fresh store
(ImageNet weights where they load offline, from scratch otherwise), runs and versions say where they
trained, and the store comes back packed as results/store is shipped."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, client_for, store_for

RECIPE = PROJECT_ROOT / "results" / "gpu_recipe.py"


def recipe(out: Path, data: Path, torch_home: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(RECIPE), "--data", str(data), "--out", str(out), *args]
    env = os.environ | {"TORCH_HOME": str(torch_home), "MLFLOW_TRACKING_URI": "sqlite:///nowhere/unused.db"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, cwd=out.parent)


@pytest.mark.slow
def test_tiny_recipe_on_cpu_trains_tags_and_packs(tmp_path: Path, train_only_data: Path) -> None:
    out = tmp_path / "gpu-run"
    result = recipe(
        out, train_only_data, tmp_path / "empty-torch-home",
        "--device", "cpu", "--autocast", "bf16", "--image-size", "64", "--limit", "16", "--epochs", "1",
        "--batch-size", "16", "--arch", "efficientnet_lite0", "--arch", "alexnet", "--workers", "1",
        "--arch-minutes", "alexnet=0.2", "--starter", "--", "--bootstrap", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    tarball = Path(result.stdout.strip().splitlines()[-1])

    # --starter: the best ONNX-exported network (Lite0 here: AlexNet is no candidate) comes home as the
    # shipped starter, in parts the device tool can carry (at most 16 MiB each).
    parts = sorted(out.glob("starter.tar.gz.part*"))
    assert parts and all(part.stat().st_size <= 15 * 2**20 for part in parts)
    home = tmp_path / "home"
    home.mkdir()
    (home / "starter.tar.gz").write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(home / "starter.tar.gz") as archive:
        archive.extractall(home, filter="data")
    starter = json.loads((home / "starter" / "model.json").read_text())
    assert starter["architecture"] == "efficientnet_lite0" and starter["info"]["weights_dtype"] == "float16"
    assert (home / "starter" / "model.onnx").is_file() and starter["reference"] is not None
    assert tarball == out / "gpu-store.tar.gz" and tarball.is_file()
    assert "no CUDA device" in result.stdout  # the machine is described before anything trains

    with tarfile.open(tarball) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path / "unpacked", filter="data")
    assert "gpu-store/mlflow.db" in names and "gpu-store/machine.txt" in names
    assert not [n for n in names if "/models/" in n or n.endswith(".safetensors")]  # no packages travel
    assert any(n.endswith("plots/val_reliability.png") for n in names)  # the runs' plots do

    unpacked = f"sqlite:///{tmp_path / 'unpacked' / 'gpu-store' / 'mlflow.db'}"
    store, client = store_for(unpacked), client_for(unpacked)
    runs = {run.data.tags["architecture"]: run for run in client.search_runs(["0", "1"])}
    assert set(runs) == {"efficientnet_lite0", "alexnet"}
    for arch, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["device"] == "cpu" and run.data.tags["recipe"] == "gpu_recipe"
        assert run.data.tags["autocast"] == "bf16" and run.data.params["autocast"] == "bf16"
        assert run.data.params["channels_last"] == "True" and run.data.params["image_size"] == "64"
        assert run.info.run_name == f"{arch}-64px-gpu-recipe"
        assert run.data.params["workers"] == "1"  # augmented in a worker process
    assert runs["alexnet"].data.params["max_minutes"] == "0.2"  # --arch-minutes
    assert runs["efficientnet_lite0"].data.params["max_minutes"] == "0.5"
    # Lite0's ImageNet weights are an installed package; AlexNet's are not cached in this TORCH_HOME.
    assert runs["efficientnet_lite0"].data.tags["pretrained"] == "True"
    assert runs["alexnet"].data.tags["pretrained"] == "False"
    assert len(store.versions()) == 2
    for version in client.search_model_versions():  # the raw tags: VersionRecord keeps only typed ones
        assert (
            version.tags["device"] == "cpu"
            and version.tags["device_name"]
            and version.tags["autocast"] == "bf16"
        )
        assert version.tags["recipe"] == "gpu_recipe"
    # The packed store's artifacts are found where they were unpacked, relative to that folder's parent.
    location = client.get_experiment(runs["alexnet"].info.experiment_id).artifact_location
    assert location.startswith("./gpu-store/mlruns")


def test_a_recipe_out_of_time_skips_every_network_and_still_packs(
    tmp_path: Path, train_only_data: Path
) -> None:
    out = tmp_path / "late"
    result = recipe(out, train_only_data, tmp_path, "--device", "cpu", "--total-minutes", "0.01")
    assert result.returncode == 1
    assert result.stdout.count("SKIPPED") == 7
    assert Path(result.stdout.strip().splitlines()[-1]).is_file()


def test_the_recipe_refuses_a_used_folder(tmp_path: Path, train_only_data: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mlflow.db").write_text("")
    result = recipe(tmp_path / "used", train_only_data, tmp_path, "--device", "cpu")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'used'} is not empty: the recipe logs into a fresh store"
    )


@pytest.mark.slow
def test_starter_without_a_candidate_still_packs_the_store(tmp_path: Path, train_only_data: Path) -> None:
    """--starter with no ONNX-exported network trained: the export is skipped with one line and the store
    still comes home (the champion lookup's error once escaped the recipe before it packed)."""
    out = tmp_path / "gpu-run"
    result = recipe(
        out, train_only_data, tmp_path / "empty-torch-home",
        "--device", "cpu", "--image-size", "64", "--limit", "16", "--epochs", "1", "--batch-size", "16",
        "--arch", "alexnet", "--arch-minutes", "alexnet=0.2", "--starter", "--", "--bootstrap", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "the starter was not exported: no version of 'pneumonia-classifier'" in result.stdout
    assert not list(out.glob("starter.tar.gz.part*"))
    assert Path(result.stdout.strip().splitlines()[-1]) == out / "gpu-store.tar.gz"
    assert (out / "gpu-store.tar.gz").is_file()
