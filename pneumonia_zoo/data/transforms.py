"""Preprocessing shared by training and serving: squash-resize a grey X-ray, store it the way the
training images were stored, normalise, expand to RGB.

Images are squashed (not cropped) to a square: the reference dataset was made that way, so a
full-resolution upload must be seen the same way. The dataset's copies were then saved as JPEG at
quality 75: a network learns those artefacts (an early model flipped 4.8% of labels between a clean
upload and the copy of the same X-ray), and so does anything that scores how usual an image looks.
With `jpeg_quality` set, every image, in training and in serving alike, is re-encoded that way after
resizing, so an upload reaches the network in the state the training images were in. X-rays stay one
grey channel until the network's input, where the three normalised channels are made by broadcasting.
NumPy and Pillow only: the service and the CLI run this without importing torch.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumonia_zoo.data.images import DecodedImage
from pneumonia_zoo.data.normalization import IMAGENET_MEAN, IMAGENET_STD

RESAMPLING = Image.Resampling.BILINEAR  # antialiased when reducing, as the dataset's copies were made


@dataclass(frozen=True)
class Preprocessing:
    """Everything needed to turn a decoded X-ray into the network's input; travels with the model."""

    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    jpeg_quality: int | None = None  # re-encode after resizing (75: as the dataset's copies); None: never

    def pixels(self, decoded: DecodedImage | Image.Image) -> np.ndarray:
        """S x S uint8 grey, squash-resized and stored as the training images were (what the cache holds)."""
        image = decoded.image if isinstance(decoded, DecodedImage) else decoded
        if image.mode != "L":
            image = image.convert("L")
        size = (self.image_size, self.image_size)
        if image.size != size:
            image = image.resize(size, RESAMPLING)
        elif isinstance(decoded, DecodedImage) and decoded.stored_quality == self.jpeg_quality:
            return np.asarray(image)  # already stored this way: a second round trip would change it
        if self.jpeg_quality is not None:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=self.jpeg_quality)
            buffer.seek(0)
            image = Image.open(buffer)
            image.load()
        return np.asarray(image)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 N x 1 x S x S (or N x S x S) -> float32 N x 3 x S x S, normalised per channel.

        The same float32 operations, in the same order, as the training cache's torch path, so the
        two agree bit for bit.
        """
        if pixels.ndim == 3:
            pixels = pixels[:, None]
        mean = np.asarray(self.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(1, 3, 1, 1)
        return (pixels.astype(np.float32) / np.float32(255.0) - mean) / std

    def batch(self, images: Sequence[DecodedImage | Image.Image]) -> np.ndarray:
        """Decoded images -> the network's float32 N x 3 x S x S input."""
        size = self.image_size
        grey = np.empty((len(images), 1, size, size), dtype=np.uint8)
        for row, image in enumerate(images):
            grey[row, 0] = self.pixels(image)
        return self.normalize(grey)
