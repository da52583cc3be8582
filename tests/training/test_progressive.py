"""--progressive-start-size: the schedule's epochs train on batches resized from that size up to the
image size, validation and the averaging epochs at full size."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.progressive import epoch_sizes, resize_batch
from tests.training_helpers import fit_on_cpu


def test_the_sizes_grow_linearly_to_the_image_size() -> None:
    assert epoch_sizes(160, 224, 5) == [160, 176, 192, 208, 224]
    assert epoch_sizes(100, 224, 3) == [100, 162, 224]
    assert epoch_sizes(100, 224, 1) == [224]  # one epoch: the size it is served at
    assert epoch_sizes(None, 224, 5) is None


def test_a_batch_is_downscaled_with_antialiasing() -> None:
    stripes = torch.zeros(1, 1, 64, 64)
    stripes[..., ::2] = 1.0  # one-pixel stripes: aliased, a plain bilinear halving keeps one phase of them
    halved = resize_batch(stripes, 32)
    assert halved.shape == (1, 1, 32, 32)
    assert halved.mean().item() == pytest.approx(0.5, abs=1e-3) and halved.std().item() < 0.05
    assert resize_batch(stripes, 64) is stripes


def test_each_epoch_trains_at_its_size_and_validates_at_full_size() -> None:
    torch.manual_seed(0)
    images = torch.randn(32, 1, 24, 24)
    labels = (images.mean((1, 2, 3)) > 0).long()
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    seen: list[tuple[bool, int]] = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, args[0].shape[-1])))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = fit_on_cpu(model, loader, optimizer, epochs=3, input_sizes=[12, 18, 24], swa_epochs=1)
    trained = [size for training, size in seen if training]
    # Four batches an epoch at 12, 18, 24, then the averaging epoch at 24 (without BatchNorm, no pass
    # recomputes statistics).
    assert trained == [12] * 4 + [18] * 4 + [24] * 4 + [24] * 4
    assert {size for training, size in seen if not training} == {24}
    assert [row.get("input_size") for row in result.history] == [12, 18, 24, None]


def test_the_option_is_validated_logged_and_reproduced() -> None:
    config = TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), progressive_start_size=128)
    assert config.flat()["progressive_start_size"] == 128
    assert "--progressive-start-size 128" in config.train_command()
    with pytest.raises(UserError, match="--progressive-start-size must not exceed --image-size"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), image_size=64, progressive_start_size=96)
