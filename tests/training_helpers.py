"""The training loop on CPU with a constant learning rate: what the loop's tests vary is the data, the
model and one option at a time, not the plumbing around `fit`."""

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.loop import FitResult, fit
from pneumonia_zoo.training.schedules import ScheduleParams, Scheduler


def fit_on_cpu(
    model: nn.Module,
    train_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    val_loader: DataLoader | None = None,
    patience: int = 10,
    **options: Any,
) -> FitResult:
    """`fit` with cross-entropy, a constant schedule, float32 on CPU, no channels_last; validation on
    the training loader unless another is given; `options` go to `fit` (ema_decay, max_minutes, ...)."""
    scheduler = Scheduler("constant", optimizer, ScheduleParams(epochs=epochs), len(train_loader))
    return fit(
        model,
        train_loader,
        val_loader or train_loader,
        optimizer,
        scheduler,
        nn.CrossEntropyLoss(),
        Runtime(torch.device("cpu")),
        epochs=epochs,
        patience=patience,
        channels_last=False,
        **({"quiet": True} | options),
    )
