"""--ema-decay: the moving average is updated after every step, warmed up, and is what fit validates,
keeps and leaves in the network."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.ema import create_ema, warmed_up_decay
from tests.training_helpers import fit_on_cpu


def _problem() -> tuple[DataLoader, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    features = torch.randn(96, 6)
    labels = (features[:, 0] + 0.5 * features[:, 1] > 0).long()
    loader = DataLoader(TensorDataset(features, labels), batch_size=8, shuffle=False)
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    return loader, model, torch.optim.SGD(model.parameters(), lr=0.3)


def test_the_decay_is_warmed_up_then_capped() -> None:
    assert warmed_up_decay(0.998, 0) == pytest.approx(0.1)
    assert warmed_up_decay(0.998, 1) == pytest.approx(2 / 11)
    assert warmed_up_decay(0.998, 90) == pytest.approx(0.91)
    assert warmed_up_decay(0.9, 10_000) == 0.9


def test_no_decay_no_average() -> None:
    assert create_ema(nn.Linear(2, 2), 0.0) is None


def test_fit_leaves_the_network_with_the_average_of_its_steps() -> None:
    """One epoch (so its average is the best): the weights fit leaves are the warmed-up EMA of the
    weights after each optimizer step, recomputed here, and not the last step's weights."""
    loader, model, optimizer = _problem()
    steps: list[dict[str, torch.Tensor]] = []
    optimizer.register_step_post_hook(
        lambda *_: steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    )
    decay = 0.6
    fit_on_cpu(model, loader, optimizer, epochs=1, ema_decay=decay)
    assert len(steps) == len(loader) == 12
    expected = copy.deepcopy(steps[0])
    for updates, weights in enumerate(steps[1:], start=1):
        share = 1 - warmed_up_decay(decay, updates)
        for name, value in weights.items():
            if value.is_floating_point():
                expected[name] += share * (value - expected[name])
            else:
                expected[name] = value.clone()
    kept = model.state_dict()
    for name in kept:
        torch.testing.assert_close(kept[name], expected[name])
    assert int(kept["1.num_batches_tracked"]) == 12  # a counter is copied, not averaged
    assert not torch.allclose(kept["3.weight"], steps[-1]["3.weight"])


def test_without_ema_the_network_keeps_its_last_step() -> None:
    loader, model, optimizer = _problem()
    steps: list[dict[str, torch.Tensor]] = []
    optimizer.register_step_post_hook(
        lambda *_: steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    )
    fit_on_cpu(model, loader, optimizer, epochs=1, ema_decay=0.0)
    assert all(torch.equal(value, steps[-1][name]) for name, value in model.state_dict().items())


def test_validation_scores_the_average_not_the_last_step() -> None:
    loader, model, optimizer = _problem()
    steps: list[dict[str, torch.Tensor]] = []
    optimizer.register_step_post_hook(
        lambda *_: steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    )
    result = fit_on_cpu(model, loader, optimizer, epochs=1, ema_decay=0.9)

    def loss_of(weights: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(weights)
        model.eval()
        with torch.no_grad():
            return (
                float(sum(nn.functional.cross_entropy(model(x), y, reduction="sum") for x, y in loader)) / 96
            )

    logged = result.history[0]["val_loss"]
    assert logged == pytest.approx(loss_of(copy.deepcopy(model.state_dict())), rel=1e-5)
    assert logged != pytest.approx(loss_of(steps[-1]), rel=1e-3)


def test_the_options_are_validated_logged_and_reproduced() -> None:
    config = TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), ema_decay=0.998, mixup_alpha=0.2)
    assert config.flat()["ema_decay"] == 0.998 and config.flat()["mixup_alpha"] == 0.2
    assert "--mixup-alpha 0.2 --ema-decay 0.998" in config.train_command()
    assert "--ema-decay" not in TrainConfig.build(arch="small_cnn", data=Path("chest_xray")).train_command()
    with pytest.raises(UserError, match="invalid --ema-decay: Input should be less than 1"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), ema_decay=1.0)
    with pytest.raises(UserError, match="invalid --mixup-alpha"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), mixup_alpha=-0.1)
