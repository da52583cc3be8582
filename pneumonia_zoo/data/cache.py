"""Decode every image once into a uint8 tensor so epochs never touch JPEGs again."""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from pneumonia_zoo.data.discovery import Sample
from pneumonia_zoo.data.images import DecodedImage, ImageDecodeError, read_image
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.resources import available_cpus


@dataclass
class DecodedImages:
    """The decoded images of one split (N x 1 x S x S uint8, grey) and the files that failed."""

    samples: list[Sample]
    pixels: torch.Tensor
    labels: torch.Tensor
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) as stored
    colourfulness: list[float] = field(default_factory=list)
    jpeg_quality: int | None = None  # the preprocessing's re-encoding, already applied to `pixels`

    def decoded(self, index: int) -> DecodedImage:
        """Image `index` as the decoder would give it (already at the model's input size)."""
        return DecodedImage(
            Image.fromarray(self.pixels[index, 0].numpy(), mode="L"),
            self.sizes[index],
            self.colourfulness[index],
            "cache",
            self.jpeg_quality,
        )

    @property
    def groups(self) -> np.ndarray:
        """The patient of every image, for patient-level statistics."""
        return np.array([sample.patient for sample in self.samples])


Loaded = tuple[np.ndarray, tuple[int, int], float]  # S x S pixels, stored size, colourfulness


def load_pixels(path: Path, preprocessing: Preprocessing) -> Loaded:
    """The one decode used by training and evaluation (the service runs it on bytes): S x S uint8 grey."""
    decoded = read_image(path, min_side=preprocessing.image_size)
    return preprocessing.pixels(decoded), decoded.size, decoded.colourfulness


def decode_all(
    samples: list[Sample], preprocessing: Preprocessing, desc: str = "decode", quiet: bool = False
) -> DecodedImages:
    """Decode in a thread pool (PIL releases the GIL); unreadable files are kept aside."""

    def load(sample: Sample) -> Loaded | str:
        try:
            return load_pixels(sample.path, preprocessing)
        except ImageDecodeError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        results = list(
            tqdm(pool.map(load, samples), total=len(samples), desc=desc, disable=quiet, leave=False)
        )
    good = [(s, r) for s, r in zip(samples, results, strict=True) if not isinstance(r, str)]
    unreadable = [(str(s.path), r) for s, r in zip(samples, results, strict=True) if isinstance(r, str)]
    size = preprocessing.image_size
    grid = np.empty((len(good), 1, size, size), dtype=np.uint8)
    for row, (_, (array, _, _)) in enumerate(good):
        grid[row, 0] = array
    pixels = torch.from_numpy(grid)
    labels = torch.tensor([s.label for s, _ in good], dtype=torch.long)
    sizes = [loaded[1] for _, loaded in good]
    colour = [loaded[2] for _, loaded in good]
    return DecodedImages(
        [s for s, _ in good], pixels, labels, unreadable, sizes, colour, preprocessing.jpeg_quality
    )


def normalize_tensor(preprocessing: Preprocessing, pixels: torch.Tensor) -> torch.Tensor:
    """`Preprocessing.normalize` in torch: uint8 (N x) 1 x S x S -> float32 (N x) 3 x S x S, bit for bit."""
    shape = (-1, 1, 1) if pixels.dim() == 3 else (1, -1, 1, 1)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(shape)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(shape)
    return (pixels.float() / 255.0 - mean) / std


class CachedDataset(Dataset):
    """Normalised tensors from the cache, with an optional augmentation on the uint8 image."""

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
        return normalize_tensor(self.preprocessing, image), self.images.labels[index]
