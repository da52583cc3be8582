"""Stochastic weight averaging (Izmailov et al. 2018) on PyTorch's `swa_utils`: with --swa-epochs the
schedule is followed by that many epochs at a constant rate, and the equal average of the weights at the
end of each, its BatchNorm statistics recomputed over the training set, is what is validated and shipped."""

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel

from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.schedules import ScheduleParams, Scheduler


def create_swa(network: nn.Module) -> AveragedModel:
    """The equal average of `network`'s parameters; its buffers (BatchNorm's statistics) are not averaged
    but recomputed for the averaged weights (`torch.optim.swa_utils.update_bn`)."""
    return AveragedModel(network, use_buffers=False)


def swa_scheduler(
    optimizer: torch.optim.Optimizer, lr_ratio: float, steps_per_epoch: int, epochs: int
) -> Scheduler:
    """A constant rate of `lr_ratio` times each parameter group's base rate (as --min-lr-ratio is a share
    of --lr), replacing the schedule that has ended."""
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"] = group.get("initial_lr", group["lr"]) * lr_ratio
    return Scheduler("constant", optimizer, ScheduleParams(epochs=epochs), steps_per_epoch)


def share_weights(network: nn.Module, runtime: Runtime) -> None:
    """Under DDP only rank 0 validates, so only it restored its best epoch: every rank starts the
    averaging epochs from rank 0's weights."""
    if runtime.distributed:
        for tensor in network.state_dict().values():
            dist.broadcast(tensor, src=0)
