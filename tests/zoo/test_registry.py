from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import MissingWeightsError, UserError
from pneumonia_zoo.zoo import ARCHITECTURES, create_model
from pneumonia_zoo.zoo.efficientnet_lite import efficientnet_lite0, imagenet_checkpoint


@pytest.fixture(scope="module")
def real_batch(fixture_data: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """One NORMAL and one PNEUMONIA fixture X-ray at 64 px, preprocessed as in training."""
    paths = [next((fixture_data / "train" / label).iterdir()) for label in ("NORMAL", "PNEUMONIA")]
    images = torch.stack([Preprocessing(64)(read_image(path)) for path in paths])
    return images.contiguous(memory_format=torch.channels_last), torch.tensor([0, 1])


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
    assert activations and activations[0].dim() == 4  # a spatial map Grad-CAM can weight


def test_freeze_backbone_trains_only_the_head() -> None:
    model = create_model("efficientnet_lite0", pretrained=True, freeze="backbone")
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["_fc.weight", "_fc.bias"]


def test_efficientnet_lite0_imagenet_checkpoint_loads_exactly() -> None:
    assert imagenet_checkpoint().name.startswith("efficientnet-lite0-57934424")
    model = efficientnet_lite0(pretrained=True)
    state = torch.load(imagenet_checkpoint(), map_location="cpu", weights_only=True)
    assert torch.equal(model._conv_stem.weight, state["_conv_stem.weight"])
    assert model._fc.out_features == 1000


def test_missing_torchvision_weights_offline_is_one_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache

    def offline(*_args, **_kwargs):
        raise URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(MissingWeightsError, match="not cached at .*resnet50.*--no-pretrained") as caught:
        create_model("resnet50", pretrained=True)
    assert caught.value.exit_code == 2


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
