"""Progressive resizing (as EfficientNetV2's progressive learning, without its regularisation schedule):
with --progressive-start-size the schedule's epochs train on images growing linearly from that size to
--image-size, each batch downscaled from the full-size one; validation and weight averaging are always
at full size. Small early epochs cost less, and a network that ends at the size it is served at
needs no other change."""

import torch
from torch.nn import functional


def epoch_sizes(start: int | None, final: int, epochs: int) -> list[int] | None:
    """The input size of each of `epochs` epochs: `start` for the first, `final` for the last, linear
    between (rounded to whole pixels); None (every batch as it is) without a start."""
    if start is None:
        return None
    if epochs == 1:
        return [final]
    sizes = [start + (final - start) * epoch / (epochs - 1) for epoch in range(epochs)]
    return [round(size) for size in sizes]


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch N x C x H x W as N x C x size x size (bilinear, antialiased as PIL downscales), or itself
    when it already has that size."""
    if images.shape[-2:] == (size, size):
        return images
    return functional.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
