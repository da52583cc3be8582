"""Fine-tuning the design-card nets from torchvision's ImageNet checkpoints, offline.

No real checkpoint can be downloaded here, so each test writes a stand-in (random values, the exact keys
and shapes of torchvision's network) under torchvision's own cache file name, read from its default
weights' URL, in a temporary $TORCH_HOME. `pneumonia-zoo train --pretrained` then runs in a process with
every proxy pointed at a closed port, so a download attempt fails at once instead of reaching the internet.
"""

import math
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from pneumonia_zoo.errors import MissingWeightsError
from pneumonia_zoo.zoo.factory import create_model, pretrained_available
from tests.conftest import PROJECT_ROOT, client_for

DESIGN_CARD = ("vgg16", "densenet201", "alexnet", "resnet50")
# A backbone convolution near the input and one deep inside, per network (torchvision's key names).
CONVS = {
    "vgg16": ("features.0.weight", "features.28.weight"),
    "densenet201": ("features.conv0.weight", "features.denseblock4.denselayer32.conv2.weight"),
    "alexnet": ("features.0.weight", "features.10.weight"),
    "resnet50": ("conv1.weight", "layer4.2.conv3.weight"),
}
LR = 1e-4  # one AdamW step moves every weight by at most this much (its first step is lr * sign(grad))
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, so every connection is refused


def checkpoint_file(torch_home: Path, arch: str) -> Path:
    """torchvision's own cache path for `arch`'s default ImageNet weights (the name from its URL)."""
    url = torchvision.models.get_model_weights(arch).DEFAULT.url
    return torch_home / "hub" / "checkpoints" / Path(urlparse(url).path).name


def stand_in_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values with the keys, shapes and dtypes of torchvision's `arch` (its 1000-class head too),
    scaled as an initialisation would be, so a forward pass stays finite."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        shapes = torchvision.models.get_model(arch, weights=None).state_dict()
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, meta in shapes.items():
        if not meta.is_floating_point():  # BatchNorm's num_batches_tracked
            state[key] = torch.zeros(meta.shape, dtype=meta.dtype)
        elif key.endswith("running_var"):
            state[key] = 1 + 0.1 * torch.rand(meta.shape, generator=generator)
        elif meta.dim() > 1:  # convolutions and linear layers: He-scaled
            fan_in = math.prod(meta.shape[1:])
            state[key] = torch.randn(meta.shape, generator=generator) * math.sqrt(2 / fan_in)
        else:  # biases, BatchNorm's affine parameters and running means
            base = 1.0 if key.endswith(".weight") else 0.0
            state[key] = base + 0.1 * torch.randn(meta.shape, generator=generator)
    return state


def write_stand_in(torch_home: Path, arch: str, drop: str | None = None) -> dict[str, torch.Tensor]:
    state = stand_in_state(arch)
    saved = {k: v for k, v in state.items() if k != drop}
    path = checkpoint_file(torch_home, arch)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, path)
    return state


def offline_env(torch_home: Path, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    proxies = {name: CLOSED_PORT for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    return (
        env
        | proxies
        | {"TORCH_HOME": str(torch_home), "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(PROJECT_ROOT)}
    )


def train_cli(arch: str, data: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "pneumonia_zoo", "train", "--arch", arch, "--data", str(data),
        "--pretrained", "--limit", "16", "--image-size", "64", "--batch-size", "64", "--epochs", "1",
        "--lr", str(LR), "--no-augment", "--bootstrap", "0", "--no-onnx", "--threads", "2", "--quiet", *extra,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=data.parent)


@pytest.mark.slow
@pytest.mark.parametrize("arch", DESIGN_CARD)
def test_train_pretrained_loads_the_cached_checkpoint_and_fine_tunes_a_step(
    arch: str, tmp_path: Path, train_only_data: Path
) -> None:
    torch_home = tmp_path / "torch-home"
    stand_in = write_stand_in(torch_home, arch)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train_cli(arch, train_only_data, offline_env(torch_home, store))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Downloading" not in result.stdout + result.stderr  # the cache answered: no download was tried

    client = client_for(store)
    (run,) = client.search_runs([client.get_experiment_by_name("pneumonia-zoo").experiment_id])
    assert run.data.tags["pretrained"] == "True" and run.data.params["pretrained"] == "True"
    assert run.data.metrics["epochs_run"] == 1
    (weights,) = (tmp_path / "mlruns").rglob("weights.safetensors")  # the registered package's
    trained = load_file(weights)
    # Every backbone tensor came from the stand-in (strict load: same keys, same shapes) ...
    backbone = [key for key in stand_in if key in trained and trained[key].shape == stand_in[key].shape]
    assert len(backbone) >= len(stand_in) - 2  # all but the 1000-class head, replaced by a 2-class one
    for key in CONVS[arch]:
        moved = (trained[key] - stand_in[key]).abs()
        # ... and was fine-tuned by exactly one AdamW step from it: within lr, and not all standing still.
        assert moved.max().item() <= LR * 1.01, key
        assert moved.max().item() > 0, key


def test_a_checkpoint_missing_a_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load is strict: torchvision's file name with one tensor missing fails, with one clear line."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    state = write_stand_in(tmp_path, "resnet50", drop="layer3.0.conv1.weight")
    assert pretrained_available("resnet50")  # the file is there ...
    with pytest.raises(
        MissingWeightsError, match=r"does not load into torchvision's resnet50 .*layer3\.0\.conv1"
    ):
        create_model("resnet50", pretrained=True)  # ... but it is not ResNet50's
    torch.save(state, checkpoint_file(tmp_path, "resnet50"))  # complete: it loads, exactly
    model = create_model("resnet50", pretrained=True)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    assert model.fc.out_features == 2


def test_pretrained_without_checkpoint_or_network_is_one_clear_line(
    tmp_path: Path, train_only_data: Path
) -> None:
    empty_home = tmp_path / "torch-home"
    env = offline_env(empty_home, f"sqlite:///{tmp_path / 'mlflow.db'}")
    result = train_cli("vgg16", train_only_data, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ImageNet weights for vgg16 are not cached at ")
    assert str(checkpoint_file(empty_home, "vgg16")) in lines[0] and "--no-pretrained" in lines[0]
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was logged
