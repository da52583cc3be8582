"""Decode every image once into a uint8 tensor so epochs never touch JPEGs again."""

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from pneumonia_zoo.data.discovery import Sample
from pneumonia_zoo.data.images import ImageDecodeError, read_image
from pneumonia_zoo.data.transforms import Preprocessing


@dataclass
class DecodedImages:
    """The decoded images of one split (N x 3 x S x S uint8) and the files that failed."""

    samples: list[Sample]
    pixels: torch.Tensor
    labels: torch.Tensor
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def decode_all(
    samples: list[Sample], preprocessing: Preprocessing, desc: str = "decode", quiet: bool = False
) -> DecodedImages:
    """Decode in a thread pool (PIL releases the GIL); unreadable files are kept aside."""

    def load(sample: Sample) -> torch.Tensor | str:
        try:
            return preprocessing.to_uint8(read_image(sample.path))
        except ImageDecodeError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(
            tqdm(pool.map(load, samples), total=len(samples), desc=desc, disable=quiet, leave=False)
        )
    good = [(s, r) for s, r in zip(samples, results, strict=True) if isinstance(r, torch.Tensor)]
    unreadable = [(str(s.path), r) for s, r in zip(samples, results, strict=True) if isinstance(r, str)]
    size = preprocessing.image_size
    pixels = torch.stack([r for _, r in good]) if good else torch.empty(0, 3, size, size, dtype=torch.uint8)
    labels = torch.tensor([s.label for s, _ in good], dtype=torch.long)
    return DecodedImages([s for s, _ in good], pixels, labels, unreadable)


class CachedDataset(Dataset):
    """Normalized tensors from the cache, with an optional augmentation on the uint8 image."""

    def __init__(
        self,
        images: DecodedImages,
        preprocessing: Preprocessing,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.images = images
        self.preprocessing = preprocessing
        self.augment = augment

    def __len__(self) -> int:
        return len(self.images.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images.pixels[index]
        if self.augment is not None:
            image = self.augment(image)
        return self.preprocessing.normalize(image), self.images.labels[index]
