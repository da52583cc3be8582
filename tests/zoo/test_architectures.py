"""The zoo: every architecture trains a step on real X-rays, has a Grad-CAM layer, and gets its weights
the way it says (offline checkpoints, torchvision's weights API, timm), or says clearly why it cannot."""

import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from pneumonia_zoo.data.cache import load_pixels, normalize_tensor
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import MissingWeightsError, UserError
from pneumonia_zoo.zoo import ARCHITECTURES
from pneumonia_zoo.zoo.efficientnet_lite import STAGES, _lite, imagenet_checkpoint
from pneumonia_zoo.zoo.factory import create_model


@pytest.fixture(scope="module")
def real_batch(fixture_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One NORMAL and one PNEUMONIA fixture X-ray at 64 px, preprocessed as in training."""
    paths = [next((fixture_data / "train" / label).iterdir()) for label in ("NORMAL", "PNEUMONIA")]
    preprocessing = Preprocessing(64)
    pixels = torch.stack([torch.from_numpy(load_pixels(p, preprocessing)[0].copy())[None] for p in paths])
    return normalize_tensor(preprocessing, pixels).contiguous(
        memory_format=torch.channels_last
    ), torch.tensor([0, 1])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_every_architecture_trains_a_step_and_has_a_cam_layer(name: str, real_batch) -> None:
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).to(memory_format=torch.channels_last)
    images, targets = real_batch
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(images), targets)
    loss.backward()
    optimizer.step()
    assert model(images).shape == (2, 2)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    activations = []
    layer = model.get_submodule(ARCHITECTURES[name].cam_layer)
    handle = layer.register_forward_hook(lambda _m, _i, out: activations.append(out))
    model.eval()(images)
    handle.remove()
    assert activations and activations[0].dim() in (3, 4)  # a spatial map (ViT: tokens) Grad-CAM can weight


def test_freeze_backbone_trains_only_the_head() -> None:
    model = create_model("efficientnet_lite0", pretrained=True, freeze="backbone")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["_fc.weight", "_fc.bias"]


@pytest.mark.parametrize(("variant", "prefix"), [(0, "57934424"), (1, "77cc7160"), (2, "9656183e")])
def test_efficientnet_lite_imagenet_checkpoints_load_exactly(variant: int, prefix: str) -> None:
    assert imagenet_checkpoint(variant).name == f"efficientnet-lite{variant}-{prefix}.pth"
    state = torch.load(imagenet_checkpoint(variant), map_location="cpu", weights_only=True)
    model = _lite(variant, pretrained=True)  # load_state_dict is strict: every key and shape matches
    assert torch.equal(model._conv_stem.weight, state["_conv_stem.weight"])
    assert len(model._blocks) == sum(stage[-1] for stage in STAGES[variant])


def test_missing_torchvision_weights_offline_is_one_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache

    def offline(*_args, **_kwargs):
        raise URLError("no network")

    # Where torchvision's weights API calls it (it imported the function: patching torch.hub does nothing).
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(MissingWeightsError, match="not cached at .*resnet50.*--no-pretrained") as caught:
        create_model("resnet50", pretrained=True)
    assert caught.value.exit_code == 2


def test_vit_tiny_without_a_cached_or_reachable_hub_is_one_clear_error(monkeypatch, tmp_path) -> None:
    from pneumonia_zoo.zoo import vit

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(vit, "_cached_weights", lambda: None)
    monkeypatch.setattr(vit, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(MissingWeightsError, match="vit_tiny.*--no-pretrained"):
        create_model("vit_tiny", pretrained=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "inception"}, "unknown architecture 'inception'"),
        ({"name": "small_cnn", "pretrained": True}, "no pretrained weights"),
        ({"name": "small_cnn", "freeze": "backbone"}, "needs pretrained weights"),
        ({"name": "small_cnn", "freeze": "half"}, "unknown freeze mode"),
    ],
)
def test_bad_requests_are_user_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        create_model(**kwargs)


def test_the_registry_imports_no_torch() -> None:
    """The CLI validates --arch against it before anything heavy is loaded."""
    code = "import sys, pneumonia_zoo.zoo, pneumonia_zoo.training.config; print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
