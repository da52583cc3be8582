"""Learning-rate schedules, one entry each in SCHEDULES.

Every decay schedule is a multiplier f(t) on the base rate lr0, where t is the (fractional)
epoch and T the number of epochs; the formulas are in each function's docstring. They are
stepped every batch, so "epoch" boundaries matter only where a formula floors t.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pneumonia_zoo.choices import OneOf

if TYPE_CHECKING:  # torch is imported when a Scheduler is made: the CLI validates names without it
    import torch


@dataclass(frozen=True)
class ScheduleParams:
    epochs: int
    decay_rate: float = 0.5  # per `decay_epochs` for the exponential family
    decay_epochs: float = 2.0
    step_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of T for `step`
    step_gamma: float = 0.1
    power: float = 2.0  # polynomial
    min_lr_ratio: float = 0.01  # floor for polynomial and cosine, as a fraction of lr0
    warmup_epochs: float = 0.0


def step(t: float, p: ScheduleParams) -> float:
    """lr0 * gamma^k, k = number of milestones m_i * T already passed (piecewise constant)."""
    return p.step_gamma ** sum(t >= m * p.epochs for m in p.step_milestones)


def staircase(t: float, p: ScheduleParams) -> float:
    """lr0 * decay_rate^floor(t / decay_epochs) (exponential decay taken in whole steps)."""
    return p.decay_rate ** math.floor(t / p.decay_epochs)


def exponential(t: float, p: ScheduleParams) -> float:
    """lr0 * decay_rate^(t / decay_epochs)."""
    return p.decay_rate ** (t / p.decay_epochs)


def natural_exp(t: float, p: ScheduleParams) -> float:
    """lr0 * exp(-decay_rate * t / decay_epochs)."""
    return math.exp(-p.decay_rate * t / p.decay_epochs)


def polynomial(t: float, p: ScheduleParams) -> float:
    """(lr0 - lr_min) * (1 - t/T)^power + lr_min, with lr_min = min_lr_ratio * lr0."""
    progress = min(t / p.epochs, 1.0)
    return (1 - p.min_lr_ratio) * (1 - progress) ** p.power + p.min_lr_ratio


def cosine(t: float, p: ScheduleParams) -> float:
    """lr_min + (lr0 - lr_min) * (1 + cos(pi * t/T)) / 2, with lr_min = min_lr_ratio * lr0."""
    progress = min(t / p.epochs, 1.0)
    return p.min_lr_ratio + (1 - p.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def constant(t: float, p: ScheduleParams) -> float:
    """lr0."""
    return 1.0


def warmup(t: float, p: ScheduleParams) -> float:
    """Linear warm-up multiplier: t / warmup_epochs until warmup_epochs, then 1."""
    return min(1.0, (t + 1e-8) / p.warmup_epochs) if p.warmup_epochs > 0 else 1.0


SCHEDULES: dict[str, Callable[[float, ScheduleParams], float]] = {
    "constant": constant,
    "step": step,
    "staircase": staircase,
    "exponential": exponential,
    "natural_exp": natural_exp,
    "polynomial": polynomial,
    "cosine": cosine,
}
# The six decay schedules compared in the original project; `plateau` is a Scheduler mode, not a formula.
DECAY_SCHEDULES = ("step", "staircase", "exponential", "natural_exp", "polynomial", "cosine")
SCHEDULE_NAMES = (*SCHEDULES, "plateau")
SCHEDULE = OneOf(SCHEDULE_NAMES, "schedule")


def lr_multiplier(name: str, t: float, params: ScheduleParams) -> float:
    """The factor f(t) that multiplies lr0 at fractional epoch t, warm-up included."""
    return SCHEDULES[name](t, params) * warmup(t, params)


class Scheduler:
    """One interface for every schedule: `step_batch()` each batch, `step_epoch(metric)` each epoch.

    `plateau` keeps lr0 (after warm-up) and halves it whenever the validation metric has not
    improved for `patience` epochs; the others follow their formula.
    """

    def __init__(
        self,
        name: str,
        optimizer: "torch.optim.Optimizer",
        params: ScheduleParams,
        steps_per_epoch: int,
        plateau_factor: float = 0.5,
        plateau_patience: int = 1,
    ) -> None:
        self.name = SCHEDULE.check(name)
        self.optimizer = optimizer
        self.plateau_factor = plateau_factor
        self.plateau_patience = plateau_patience
        self.plateau_scale = 1.0
        self._best = -math.inf
        self._stale_epochs = 0
        from torch.optim.lr_scheduler import LambdaLR

        formula = "constant" if name == "plateau" else name
        self.lambda_lr = LambdaLR(
            optimizer,
            lambda i: lr_multiplier(formula, i / steps_per_epoch, params) * self.plateau_scale,
        )

    def step_batch(self) -> None:
        self.lambda_lr.step()

    def step_epoch(self, metric: float) -> None:
        if self.name != "plateau":
            return
        if metric > self._best:
            self._best, self._stale_epochs = metric, 0
            return
        self._stale_epochs += 1
        if self._stale_epochs >= self.plateau_patience:
            self.plateau_scale *= self.plateau_factor
            self._stale_epochs = 0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
