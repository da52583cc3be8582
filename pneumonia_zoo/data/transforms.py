"""Preprocessing shared by training and serving, and training-time augmentation.

Images are squashed (not cropped) to a square: the reference dataset was made that way, so a
full-resolution upload must be seen the same way.
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn an RGB image into the network's input; travels with the model."""

    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """Squash-resize an RGB image to a uint8 CxHxW tensor (what the cache stores)."""
        resized = image.convert("RGB").resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1).contiguous()

    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N)CHW -> float normalized by the ImageNet statistics."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (batch.float() / 255.0 - mean) / std

    def tensor_path(self, image: Image.Image) -> torch.Tensor:
        """`normalize(to_uint8(image))`: the torch steps training applies to its cached images."""
        return self.normalize(self.to_uint8(image))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images -> normalized float NCHW: `tensor_path`'s float32 steps, bit for bit, in NumPy.

        Torch's elementwise ops on one small image each wake its intra-op thread pool; with a request
        per thread on 2 cores that cost more than the arithmetic. NumPy stays in the calling thread.
        """
        size = self.image_size
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 1, 3)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 1, 3)
        out = np.empty((len(images), 3, size, size), dtype=np.float32)
        for row, image in enumerate(images):
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            pixels = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
            out[row] = ((pixels / np.float32(255.0) - mean) / std).transpose(2, 0, 1)
        return torch.from_numpy(out)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> normalized float CHW tensor."""
        return self.batch([image])[0]

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        return cls(int(values["image_size"]), tuple(values["mean"]), tuple(values["std"]))


def build_augmentation(horizontal_flip: bool = False) -> v2.Transform:
    """Small geometric and photometric jitter on uint8 tensors.

    Flips are off by default: chest anatomy (heart on the left) is not mirror-symmetric.
    """
    steps: list[v2.Transform] = [
        v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.95, 1.05)),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ]
    if horizontal_flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)
