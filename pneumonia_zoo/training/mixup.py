"""Mixup (Zhang et al. 2018): each training batch is blended with a shuffled copy of itself, and the loss
with it, by a share drawn from Beta(alpha, alpha) per batch."""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class MixedBatch:
    images: Tensor
    targets: Tensor
    partners: Tensor  # the targets of the images blended in
    share: float  # of the original images (and targets), in [0, 1]

    def loss(self, loss_fn: nn.Module, logits: Tensor) -> Tensor:
        """The loss of the blend: the same blend of the loss against either image's label (the class
        weights and label smoothing of `loss_fn` apply to both)."""
        return self.share * loss_fn(logits, self.targets) + (1 - self.share) * loss_fn(logits, self.partners)

    def dominant_targets(self) -> Tensor:
        """The label of the larger share, for the training accuracy."""
        return self.targets if self.share >= 0.5 else self.partners


@dataclass
class Mixup:
    alpha: float
    seed: int
    _rng: np.random.Generator = field(init=False, repr=False)
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, images: Tensor, targets: Tensor) -> MixedBatch:
        share = float(self._rng.beta(self.alpha, self.alpha))
        order = torch.randperm(len(targets), generator=self._generator).to(images.device)
        blended = share * images + (1 - share) * images[order]
        return MixedBatch(blended, targets, targets[order], share)


def create_mixup(alpha: float, seed: int) -> Mixup | None:
    return Mixup(alpha, seed) if alpha > 0 else None
