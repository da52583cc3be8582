import math

import pytest
import torch

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.schedules import DECAY_SCHEDULES, ScheduleParams, Scheduler, lr_multiplier

P = ScheduleParams(epochs=10, decay_rate=0.5, decay_epochs=2.0, power=2.0, min_lr_ratio=0.01)


@pytest.mark.parametrize(
    ("name", "t", "expected"),
    [
        ("step", 0.0, 1.0),
        ("step", 4.99, 1.0),
        ("step", 5.0, 0.1),
        ("step", 7.5, 0.01),
        ("staircase", 1.99, 1.0),
        ("staircase", 2.0, 0.5),
        ("staircase", 5.0, 0.25),
        ("exponential", 1.0, 0.5**0.5),
        ("exponential", 5.0, 0.5**2.5),
        ("natural_exp", 3.0, math.exp(-0.5 * 1.5)),
        ("polynomial", 0.0, 1.0),
        ("polynomial", 5.0, 0.99 * 0.25 + 0.01),
        ("polynomial", 10.0, 0.01),
        ("cosine", 0.0, 1.0),
        ("cosine", 5.0, 0.01 + 0.99 * 0.5),
        ("cosine", 10.0, 0.01),
    ],
)
def test_schedules_follow_their_formulas(name: str, t: float, expected: float) -> None:
    assert lr_multiplier(name, t, P) == pytest.approx(expected)


def test_every_decay_schedule_decays() -> None:
    for name in DECAY_SCHEDULES:
        values = [lr_multiplier(name, t, P) for t in range(11)]
        assert values[0] == pytest.approx(1.0) and values[-1] < 0.2, name
        assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False)), name


def test_warmup_ramps_linearly_then_hands_over() -> None:
    params = ScheduleParams(epochs=10, warmup_epochs=2)
    assert lr_multiplier("constant", 0.5, params) == pytest.approx(0.25)
    assert lr_multiplier("constant", 1.0, params) == pytest.approx(0.5)
    assert lr_multiplier("cosine", 4.0, params) == pytest.approx(
        lr_multiplier("cosine", 4.0, ScheduleParams(10))
    )


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_scheduler_steps_per_batch() -> None:
    optimizer = _optimizer()
    scheduler = Scheduler("staircase", optimizer, P, steps_per_epoch=4)
    for _ in range(8):  # two epochs of four batches
        optimizer.step()
        scheduler.step_batch()
    assert scheduler.lr == pytest.approx(0.1 * 0.5)


def test_plateau_halves_after_a_stale_epoch() -> None:
    optimizer = _optimizer()
    scheduler = Scheduler("plateau", optimizer, ScheduleParams(10), steps_per_epoch=1)
    for metric in (0.8, 0.9, 0.85):
        optimizer.step()
        scheduler.step_batch()
        scheduler.step_epoch(metric)
    optimizer.step()
    scheduler.step_batch()
    assert scheduler.lr == pytest.approx(0.05)


def test_unknown_schedule_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown schedule 'linear'"):
        Scheduler("linear", _optimizer(), P, 1)
