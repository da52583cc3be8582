"""One training loop for every architecture: epochs, early stopping, best weights restored."""

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, update_bn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from pneumonia_zoo.stats.classification import binary_metrics
from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.ema import create_ema
from pneumonia_zoo.training.mixup import Mixup
from pneumonia_zoo.training.progressive import resize_batch
from pneumonia_zoo.training.schedules import Scheduler
from pneumonia_zoo.training.swa import create_swa, share_weights, swa_scheduler
from pneumonia_zoo.zoo.factory import freeze_backbone
from pneumonia_zoo.zoo.features import FeatureNetwork

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    interrupted: bool = False
    budget_exhausted: bool = False
    seconds: float = 0.0
    swa_epochs_run: int = 0
    averaged: dict[str, float] = field(default_factory=dict)  # validation of the SWA average, if any


def _unwrap(model: nn.Module) -> nn.Module:
    """The network itself, under DDP's wrapper or not (what is validated, saved and averaged)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _to_device(batch: torch.Tensor, runtime: Runtime, channels_last: bool) -> torch.Tensor:
    batch = batch.to(runtime.device, non_blocking=True)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


@torch.no_grad()
def predict_outputs(
    network: FeatureNetwork, loader: DataLoader, runtime: Runtime, channels_last: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, logits N x 2, the guard's features N x D) over a loader, in eval mode."""
    network.eval()
    labels, logits, features = [], [], []
    for images, targets in loader:
        with runtime.autocast():
            batch_logits, batch_features, _ = network(_to_device(images, runtime, channels_last))
        logits.append(batch_logits.float().cpu().numpy())
        features.append(batch_features.float().cpu().numpy())
        labels.append(targets.numpy())
    return np.concatenate(labels), np.concatenate(logits), np.concatenate(features)


@torch.no_grad()
def predict_probs(
    model: nn.Module, loader: DataLoader, runtime: Runtime, channels_last: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """(labels, P(PNEUMONIA), mean cross-entropy) over a loader, in eval mode."""
    model.eval()
    labels, probs, loss_sum = [], [], 0.0
    for images, targets in loader:
        with runtime.autocast():
            logits = model(_to_device(images, runtime, channels_last)).float()
        targets = targets.to(runtime.device)
        loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        probs.append(logits.softmax(1)[:, 1].cpu().numpy())
        labels.append(targets.cpu().numpy())
    count = sum(len(batch) for batch in labels)
    return np.concatenate(labels), np.concatenate(probs), loss_sum / max(count, 1)


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    loss_fn: nn.Module,
    runtime: Runtime,
    channels_last: bool,
    description: str,
    scaler: torch.amp.GradScaler | None = None,
    deadline: float | None = None,
    quiet: bool = False,
    mixup: Mixup | None = None,
    ema: AveragedModel | None = None,
    input_size: int | None = None,
) -> dict[str, float]:
    """One pass over the loader; with a `deadline` (perf_counter seconds) it ends early. `mixup` blends
    each batch; `ema` is updated after every optimizer step; `input_size` resizes each batch."""
    model.train()
    network = _unwrap(model)
    scaler = scaler or runtime.grad_scaler()
    seen, correct, loss_sum = 0, 0, 0.0
    lr_first = scheduler.lr
    progress = tqdm(loader, desc=description, leave=False, disable=quiet or not runtime.is_main)
    for images, targets in progress:
        images, targets = _to_device(images, runtime, channels_last), targets.to(runtime.device)
        if input_size is not None:
            images = resize_batch(images, input_size)
        optimizer.zero_grad(set_to_none=True)
        mixed = mixup(images, targets) if mixup is not None else None
        with runtime.autocast():
            logits = model(mixed.images if mixed else images)
            loss = mixed.loss(loss_fn, logits.float()) if mixed else loss_fn(logits.float(), targets)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step_batch()
        if ema is not None:
            ema.update_parameters(network)
        seen += len(targets)
        loss_sum += loss.item() * len(targets)
        correct += (logits.argmax(1) == (mixed.dominant_targets() if mixed else targets)).sum().item()
        progress.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{scheduler.lr:.2e}")
        if deadline is not None and time.perf_counter() >= deadline:
            break
    return {
        "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct / max(seen, 1),
        "lr": scheduler.lr,  # in use at the end of the epoch (after warm-up's ramp, say)
        "lr_start": lr_first,
    } | ({"input_size": float(input_size)} if input_size is not None else {})


def _validate(
    model: nn.Module, loader: DataLoader, runtime: Runtime, channels_last: bool
) -> dict[str, float]:
    labels, probs, val_loss = predict_probs(model, loader, runtime, channels_last)
    val = binary_metrics(labels, probs, 0.5)
    return {"val_loss": val_loss, "val_accuracy": val["accuracy"], "val_auc": val["auc"]}


def _epoch_line(name: str, metrics: dict[str, float]) -> str:
    return (
        f"{name}: loss {metrics['train_loss']:.4f} val_loss {metrics['val_loss']:.4f} "
        f"val_auc {metrics['val_auc']:.4f} lr {metrics['lr_start']:.2e} -> {metrics['lr']:.2e}"
    )


def _should_stop(stop: bool, runtime: Runtime) -> bool:
    """Rank 0 decides; every rank follows, so they leave the loop together."""
    if not runtime.distributed:
        return stop
    flag = torch.tensor([int(stop)], device=runtime.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler,
    loss_fn: nn.Module,
    runtime: Runtime,
    epochs: int,
    patience: int,
    channels_last: bool = True,
    on_epoch: EpochCallback | None = None,
    max_minutes: float | None = None,
    quiet: bool = False,
    mixup: Mixup | None = None,
    ema_decay: float = 0.0,
    swa_epochs: int = 0,
    swa_lr_ratio: float = 0.1,
    input_sizes: Sequence[int] | None = None,
    probe_epochs: int = 0,
    head: str | None = None,
) -> FitResult:
    """Train, validating each epoch on rank 0; stop after `patience` epochs without a better
    validation AUC and restore the best weights. Ctrl-C ends the loop cleanly.

    With `ema_decay` the moving average of the weights is what is validated, kept and restored: the
    network leaves with the best epoch's average.

    With `swa_epochs` the best epoch's weights then train that many epochs more at `swa_lr_ratio` times
    the base rate, and the network leaves with the average of their ends (`_average_epochs`).

    With `input_sizes` (one per epoch, `progressive.epoch_sizes`) the schedule's epochs train on batches
    resized to them; validation and the averaging epochs see the loaders' images as they are.

    With `probe_epochs` the first epochs train only the `head` submodule, the rest every layer: linear
    probing, then fine-tuning (LP-FT, Kumar et al. 2022), which distorts the pretrained features less than
    fine-tuning from a random head. BatchNorm stays in training mode meanwhile, so the head learns on the
    features as fine-tuning will compute them. Not under DDP, whose gradient buckets are fixed when it
    wraps the model.

    `max_minutes` is a training-time budget: the epoch that crosses it ends early, is validated,
    and is the last (no averaging epochs follow). Under DDP the budget is checked between epochs only,
    so ranks stay in step.
    """
    probe_head = head if probe_epochs else None
    if probe_epochs and probe_head is None:
        raise ValueError("probe_epochs needs the head to train alone")
    result, best_state = FitResult(), None
    network = _unwrap(model)
    ema = create_ema(network, ema_decay)
    validated: nn.Module = ema.module if ema is not None else network
    started = time.perf_counter()
    run = _Epochs(
        model,
        train_loader,
        val_loader,
        optimizer,
        loss_fn,
        runtime,
        channels_last,
        runtime.grad_scaler(),  # float16 only: bfloat16 and float32 need no loss scaling
        mixup,
        started + max_minutes * 60 if max_minutes else None,
        quiet,
        on_epoch,
        result,
    )
    sizes: list[int | None] = list(input_sizes) if input_sizes is not None else [None] * epochs
    try:
        for epoch in range(epochs):
            description = f"epoch {epoch + 1}/{epochs}"
            if probe_head is not None:
                freeze_backbone(network, probe_head, frozen=epoch < probe_epochs)
                description += " (head only)" if epoch < probe_epochs else ""
            metrics = run.train(epoch, scheduler, description, ema, sizes[epoch])
            stop = result.budget_exhausted
            if runtime.is_main:
                metrics |= run.validate(validated)
                score = metrics["val_auc"] if not math.isnan(metrics["val_auc"]) else -metrics["val_loss"]
                if score > result.best_score:
                    result.best_score, result.best_epoch = score, epoch
                    best_state = copy.deepcopy(validated.state_dict())
                scheduler.step_epoch(score)
                run.record(metrics, description)
                stop = stop or epoch - result.best_epoch >= patience
            if _should_stop(stop, runtime):
                break
        if probe_head is not None:  # a run that stopped while probing averages every layer
            freeze_backbone(network, probe_head, frozen=False)
        if best_state is not None:
            network.load_state_dict(best_state)
        if swa_epochs and not result.budget_exhausted:
            _average_epochs(run, swa_epochs, swa_lr_ratio, first_shuffle=epochs)
    except KeyboardInterrupt:
        result.interrupted = True
        if best_state is not None:
            network.load_state_dict(best_state)
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Epochs:
    """What every epoch of a run trains and validates with, and where it is recorded: the schedule's
    epochs and the averaging ones alike."""

    model: nn.Module
    train_loader: DataLoader
    val_loader: DataLoader
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    runtime: Runtime
    channels_last: bool
    scaler: torch.amp.GradScaler | None
    mixup: Mixup | None
    deadline: float | None
    quiet: bool
    on_epoch: EpochCallback | None
    result: FitResult

    def train(
        self,
        shuffle: int,
        scheduler: Scheduler,
        description: str,
        ema: AveragedModel | None = None,
        input_size: int | None = None,
    ) -> dict[str, float]:
        """One epoch (`shuffle` seeds the distributed sampler: the same on every rank, new each epoch);
        notes in the result whether the time budget is spent."""
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(shuffle)
        metrics = train_one_epoch(
            self.model,
            self.train_loader,
            self.optimizer,
            scheduler,
            self.loss_fn,
            self.runtime,
            self.channels_last,
            description,
            self.scaler,
            None if self.runtime.distributed else self.deadline,
            self.quiet,
            self.mixup,
            ema,
            input_size,
        )
        self.result.budget_exhausted = self.deadline is not None and time.perf_counter() >= self.deadline
        return metrics

    def validate(self, network: nn.Module) -> dict[str, float]:
        return _validate(network, self.val_loader, self.runtime, self.channels_last)

    def record(self, metrics: dict[str, float], description: str) -> None:
        """Rank 0: the epoch joins the history, the callback and the console."""
        step = len(self.result.history)
        self.result.history.append(metrics | {"epoch": step})
        if self.on_epoch:
            self.on_epoch(step, metrics)
        if not self.quiet:
            tqdm.write(_epoch_line(description, metrics))


def _average_epochs(run: _Epochs, count: int, lr_ratio: float, first_shuffle: int) -> None:
    """Stochastic weight averaging: `count` epochs at a constant rate from the weights the network holds,
    the equal average of the weights at each epoch's end, BatchNorm's statistics recomputed for it over
    the training set; the average is validated (`result.averaged`) and left in the network. Each epoch is
    logged as the schedule's were, validating the weights it ended with."""
    network, runtime, result = _unwrap(run.model), run.runtime, run.result
    share_weights(network, runtime)
    scheduler = swa_scheduler(run.optimizer, lr_ratio, len(run.train_loader), count)
    average = create_swa(network)
    for index in range(count):
        description = f"averaging {index + 1}/{count}"
        metrics = run.train(first_shuffle + index, scheduler, description)  # shuffles none before had
        average.update_parameters(network)
        result.swa_epochs_run += 1
        if runtime.is_main:
            run.record(metrics | run.validate(network), description)
        if _should_stop(result.budget_exhausted, runtime):
            break
    update_bn(run.train_loader, average, runtime.device)
    network.load_state_dict(average.module.state_dict())
    if runtime.is_main:
        result.averaged = run.validate(network)
        if not run.quiet:
            tqdm.write(
                f"average of {result.swa_epochs_run} epochs: val_loss {result.averaged['val_loss']:.4f} "
                f"val_auc {result.averaged['val_auc']:.4f}"
            )
