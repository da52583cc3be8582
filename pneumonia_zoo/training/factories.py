"""Factories that turn a TrainConfig into the objects a run needs (as timm keeps `create_*` in the
library): data loaders, optimizer, loss. `create_model` is the zoo's, `Scheduler` the schedules'."""

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.augment import RobustAugmentation
from pneumonia_zoo.data.cache import CachedDataset, DecodedImages
from pneumonia_zoo.data.pipeline import PreparedData
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.device import Runtime


def create_eval_loader(images: DecodedImages, preprocessing: Preprocessing, batch_size: int) -> DataLoader:
    return DataLoader(CachedDataset(images, preprocessing), batch_size=batch_size, shuffle=False)


def create_loaders(
    config: TrainConfig, data: PreparedData, preprocessing: Preprocessing, runtime: Runtime
) -> tuple[DataLoader, DataLoader]:
    augment = RobustAugmentation(config.augmentation) if config.augment else None
    train_set = CachedDataset(data.train, preprocessing, augment)
    generator = torch.Generator().manual_seed(config.training_seed)
    sampler: DistributedSampler | None = (
        DistributedSampler(
            train_set, runtime.world_size, runtime.rank, shuffle=True, seed=config.training_seed
        )
        if runtime.distributed
        else None
    )
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        pin_memory=runtime.device.type == "cuda",
        num_workers=config.workers,
        persistent_workers=config.workers > 0,  # forked once, not once per epoch
        drop_last=len(train_set) > config.batch_size,  # a batch of 1 breaks BatchNorm
    )
    return train_loader, create_eval_loader(data.val, preprocessing, config.batch_size)


def create_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def create_loss(config: TrainConfig, labels: torch.Tensor, device: torch.device) -> nn.Module:
    weight = None
    if config.class_weights:  # inverse class frequency, so NORMAL counts as much as PNEUMONIA
        counts = torch.bincount(labels, minlength=len(CLASS_NAMES)).float().clamp(min=1)
        weight = (counts.sum() / (len(CLASS_NAMES) * counts)).to(device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
