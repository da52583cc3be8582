"""--probe-epochs (LP-FT): the first epochs train the head alone on the pretrained features, the rest every
layer; BatchNorm keeps learning its statistics throughout."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from tests.training_helpers import fit_on_cpu


def _problem() -> tuple[DataLoader, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    features = torch.randn(64, 6)
    labels = (features[:, 0] - features[:, 2] > 0).long()
    loader = DataLoader(TensorDataset(features, labels), batch_size=8, shuffle=False)
    model = nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    # Weight decay too: a frozen parameter must not shrink either.
    return loader, model, torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.1)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_the_probe_epochs_train_the_head_alone_and_the_rest_everything() -> None:
    loader, model, optimizer = _problem()
    start, ends = _snapshot(model), []
    result = fit_on_cpu(
        model, loader, optimizer, epochs=3, probe_epochs=2, head="3",
        on_epoch=lambda *_: ends.append(_snapshot(model)),
    )  # fmt: skip
    assert len(result.history) == 3
    for probe_end in ends[:2]:
        for name in ("0.weight", "0.bias", "1.weight", "1.bias"):
            torch.testing.assert_close(probe_end[name], start[name], rtol=0, atol=0)
    assert not torch.equal(ends[0]["3.weight"], start["3.weight"])
    assert not torch.equal(ends[1]["3.weight"], ends[0]["3.weight"])
    assert not torch.equal(ends[0]["1.running_mean"], start["1.running_mean"])  # statistics still learn
    assert not torch.equal(ends[2]["0.weight"], ends[1]["0.weight"])  # fine-tuning moves the backbone
    assert all(parameter.requires_grad for parameter in model.parameters())  # and it leaves unfrozen


def test_without_probe_epochs_the_first_epoch_moves_every_layer() -> None:
    loader, model, optimizer = _problem()
    start, ends = _snapshot(model), []
    on_epoch = lambda *_: ends.append(_snapshot(model))  # noqa: E731
    fit_on_cpu(model, loader, optimizer, epochs=1, head="3", on_epoch=on_epoch)
    assert not torch.equal(ends[0]["0.weight"], start["0.weight"])


def test_probe_epochs_need_a_head() -> None:
    loader, model, optimizer = _problem()
    with pytest.raises(ValueError, match="needs the head"):
        fit_on_cpu(model, loader, optimizer, epochs=2, probe_epochs=1)


def test_the_option_is_validated_logged_and_reproduced() -> None:
    data = Path("chest_xray")
    config = TrainConfig.build(arch="efficientnet_lite0", data=data, epochs=5, probe_epochs=1)
    assert config.flat()["probe_epochs"] == 1 and "--probe-epochs 1" in config.train_command()
    assert "--probe" not in TrainConfig.build(arch="efficientnet_lite0", data=data).train_command()
    refused = [
        ({"epochs": 2, "probe_epochs": 2}, "--probe-epochs must be fewer than --epochs"),
        ({"epochs": 3, "probe_epochs": 1, "freeze": "backbone"}, "with --freeze none"),
        ({"epochs": 3, "probe_epochs": 1, "pretrained": False}, "--probe-epochs needs pretrained weights"),
    ]
    for options, message in refused:
        with pytest.raises(UserError, match=message):
            TrainConfig.build(arch="efficientnet_lite0", data=data, **options)


def test_a_run_that_stops_while_probing_averages_every_layer() -> None:
    loader, model, optimizer = _problem()
    features, labels = loader.dataset.tensors  # type: ignore[attr-defined]
    flipped = DataLoader(TensorDataset(features, 1 - labels), batch_size=8)  # learning makes it worse
    start = _snapshot(model)
    result = fit_on_cpu(
        model, loader, optimizer, epochs=4, val_loader=flipped, patience=1, probe_epochs=3, head="3",
        swa_epochs=1,
    )  # fmt: skip
    schedule_epochs = len(result.history) - result.swa_epochs_run
    assert schedule_epochs <= 3 and result.swa_epochs_run == 1  # stopped while probing, then averaged
    assert not torch.equal(model.state_dict()["0.weight"], start["0.weight"])
