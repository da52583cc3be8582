"""An exponential moving average of a network's weights (as timm's ModelEma), built on PyTorch's
`AveragedModel`: with --ema-decay it is what is validated each epoch, kept and shipped."""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

WARMUP_STEPS = 10  # the decay is min(decay, (1 + t) / (WARMUP_STEPS + t)) after t updates


def warmed_up_decay(decay: float, updates: int) -> float:
    """The decay of the update after `updates` earlier ones: short runs (a 5-epoch recipe makes about
    700 steps) would otherwise carry the randomly initialised head's first weights to the end."""
    return min(decay, (1 + updates) / (WARMUP_STEPS + updates))


Tensors = tuple[Tensor, ...] | list[Tensor]  # what AveragedModel passes


def _ema_update(decay: float) -> Callable[[Tensors, Tensors, Tensor | int], None]:
    @torch.no_grad()
    def update(averaged: Tensors, current: Tensors, updates: Tensor | int) -> None:
        if not torch.is_floating_point(averaged[0]):  # counters such as BatchNorm's: not averaged
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1 - warmed_up_decay(decay, int(updates)))

    return update


def create_ema(network: nn.Module, decay: float) -> AveragedModel | None:
    """The running average of `network`'s parameters and buffers (BatchNorm statistics included), or
    None when `decay` is 0. Call `update_parameters(network)` after every optimizer step."""
    if decay <= 0:
        return None
    return AveragedModel(network, multi_avg_fn=_ema_update(decay), use_buffers=True)
