"""The training-time budget ends the run after the epoch that crosses it, mid-epoch if needed."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.training_helpers import fit_on_cpu


def _fit(max_minutes: float | None, epochs: int = 3):
    """Returns the fit result and how many training forward passes ran."""
    torch.manual_seed(0)
    images = torch.randn(64, 3, 16, 16)
    labels = torch.arange(64) % 2
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    forwards = []
    model.register_forward_hook(lambda module, args, out: forwards.append(module.training))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    result = fit_on_cpu(model, loader, optimizer, epochs, max_minutes=max_minutes)
    return result, sum(forwards)


def test_exhausted_budget_stops_after_one_batch_and_still_validates():
    result, train_batches = _fit(max_minutes=1e-9)
    assert result.budget_exhausted
    assert len(result.history) == 1  # validated once, then stopped
    assert train_batches == 1  # a full epoch is 8 batches of 8


def test_no_budget_runs_every_epoch():
    result, train_batches = _fit(max_minutes=None)
    assert not result.budget_exhausted
    assert len(result.history) == 3
    assert train_batches == 3 * 8
