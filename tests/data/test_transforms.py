"""Serving's NumPy preprocessing gives training's torch tensors bit for bit."""

from pathlib import Path

import torch
from PIL import Image

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


def test_numpy_batch_equals_the_torch_path(originals: Path, fixture_data: Path) -> None:
    images = [read_image(path) for path in sorted(originals.iterdir())]
    images += [read_image(path) for path in sorted((fixture_data / "test").rglob("*.jpeg"))[:4]]
    images.append(Image.new("L", (300, 200), 90))  # modes other than RGB are converted, as in training
    for preprocessing in (
        Preprocessing(224, (0.5,) * 3, (0.5,) * 3),
        Preprocessing(96, IMAGENET_MEAN, IMAGENET_STD),
    ):
        batch = preprocessing.batch(images)
        assert batch.shape == (len(images), 3, preprocessing.image_size, preprocessing.image_size)
        assert batch.dtype == torch.float32
        assert torch.equal(batch, torch.stack([preprocessing.tensor_path(image) for image in images]))
        assert torch.equal(preprocessing(images[0]), batch[0])
