"""--swa-epochs: after the schedule, epochs at a constant share of the rate from the best epoch's weights;
the network leaves with the equal average of their ends, BatchNorm's statistics recomputed for it."""

import copy
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training import plots
from pneumonia_zoo.training.config import TrainConfig
from tests.training_helpers import fit_on_cpu

LR = 0.3


def _problem(
    flip_validation: bool = False,
) -> tuple[DataLoader, DataLoader, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    features = torch.randn(96, 6)
    labels = (features[:, 0] + 0.5 * features[:, 1] + 0.8 * torch.randn(96) > 0).long()
    loader = DataLoader(TensorDataset(features, labels), batch_size=8, shuffle=False)
    # Flipped labels make the least trained epoch the best, so "from the best epoch" is not "from the last".
    val_labels = 1 - labels if flip_validation else labels
    val_loader = DataLoader(TensorDataset(features, val_labels), batch_size=8, shuffle=False)
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    return loader, val_loader, model, torch.optim.SGD(model.parameters(), lr=LR)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_the_network_leaves_with_the_average_of_the_averaging_epochs_ends() -> None:
    loader, val_loader, model, optimizer = _problem()
    ends: list[dict[str, torch.Tensor]] = []
    result = fit_on_cpu(
        model,
        loader,
        optimizer,
        epochs=2,
        val_loader=val_loader,
        on_epoch=lambda *_: ends.append(_snapshot(model)),
        swa_epochs=3,
        swa_lr_ratio=0.5,
    )
    assert result.swa_epochs_run == 3 and len(result.history) == len(ends) == 5
    assert [entry["lr"] for entry in result.history[2:]] == [pytest.approx(LR * 0.5)] * 3
    kept = model.state_dict()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.detach(), torch.stack([end[name] for end in ends[2:]]).mean(0))
    assert not torch.allclose(kept["3.weight"], ends[-1]["3.weight"])
    # BatchNorm's statistics are those of the averaged first layer over the training set (8 equal
    # batches: the mean of the batch means and of the unbiased batch variances), not any epoch's.
    with torch.no_grad():
        hidden = [model[0](images) for images, _ in loader]
    torch.testing.assert_close(kept["1.running_mean"], torch.stack([h.mean(0) for h in hidden]).mean(0))
    torch.testing.assert_close(kept["1.running_var"], torch.stack([h.var(0) for h in hidden]).mean(0))
    # The average is what was validated at the end.
    model.eval()
    with torch.no_grad():
        loss = sum(nn.functional.cross_entropy(model(x), y, reduction="sum") for x, y in val_loader) / 96
    assert result.averaged["val_loss"] == pytest.approx(float(loss), rel=1e-5)


def test_the_averaging_starts_from_the_best_epoch() -> None:
    loader, val_loader, model, optimizer = _problem(flip_validation=True)
    ends: list[dict[str, torch.Tensor]] = []
    starts: list[dict[str, torch.Tensor]] = []
    optimizer.register_step_pre_hook(
        lambda *_: starts.append(_snapshot(model)) if optimizer.param_groups[0]["lr"] < LR else None
    )
    result = fit_on_cpu(
        model,
        loader,
        optimizer,
        epochs=3,
        val_loader=val_loader,
        on_epoch=lambda *_: ends.append(_snapshot(model)),
        swa_epochs=1,
    )
    assert result.best_epoch == 0 and len(result.history) == 4  # the test means something only then
    for name, _ in model.named_parameters():  # (the first step's forward pass has moved BatchNorm's)
        torch.testing.assert_close(starts[0][name], ends[0][name])
    assert not torch.equal(starts[0]["3.weight"], ends[2]["3.weight"])


def test_no_averaging_after_the_budget_ran_out() -> None:
    loader, val_loader, model, optimizer = _problem()
    result = fit_on_cpu(model, loader, optimizer, epochs=3, max_minutes=1e-6, swa_epochs=2)
    assert result.budget_exhausted and len(result.history) == 1
    assert result.swa_epochs_run == 0 and result.averaged == {}


def test_without_swa_nothing_is_averaged() -> None:
    loader, val_loader, model, optimizer = _problem()
    result = fit_on_cpu(model, loader, optimizer, epochs=1)
    assert result.swa_epochs_run == 0 and result.averaged == {} and len(result.history) == 1
    assert copy.deepcopy(optimizer.param_groups[0]["lr"]) == LR


def test_the_options_are_validated_logged_and_reproduced() -> None:
    config = TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), swa_epochs=3, swa_lr_ratio=0.2)
    assert config.flat()["swa_epochs"] == 3 and config.flat()["swa_lr_ratio"] == 0.2
    assert "--swa-epochs 3 --swa-lr-ratio 0.2" in config.train_command()
    assert "--swa" not in TrainConfig.build(arch="small_cnn", data=Path("chest_xray")).train_command()
    with pytest.raises(UserError, match="--swa-epochs and --ema-decay each ship an average"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), swa_epochs=2, ema_decay=0.99)
    with pytest.raises(UserError, match="invalid --swa-lr-ratio"):
        TrainConfig.build(arch="small_cnn", data=Path("chest_xray"), swa_lr_ratio=0.0)


def test_the_curves_show_the_averaging_epochs_and_the_kept_average() -> None:
    history = [
        {
            "epoch": e,
            "train_loss": 0.3,
            "val_loss": 0.2,
            "train_accuracy": 0.9,
            "val_accuracy": 0.9,
            "val_auc": 0.99,
        }
        for e in range(5)
    ]
    averaged = {"val_loss": 0.15, "val_accuracy": 0.95, "val_auc": 0.995}
    figure = plots.history_figure(history, averaged, averaging_epochs=2)
    for axis, key in zip(figure.axes, ("val_loss", "val_accuracy", "val_auc"), strict=True):
        labels = axis.get_legend_handles_labels()[1]
        assert "averaging" in labels and "average (kept)" in labels
        (star,) = [line for line in axis.get_lines() if line.get_label() == "average (kept)"]
        assert list(star.get_ydata()) == [averaged[key]] and list(star.get_xdata()) == [5.5]
    assert "averaging" not in plots.history_figure(history).axes[0].get_legend_handles_labels()[1]
