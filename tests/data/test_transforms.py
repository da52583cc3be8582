"""Serving's NumPy preprocessing gives training's torch tensors bit for bit, one grey channel to three."""

from pathlib import Path

import numpy as np
import torch

from pneumonia_zoo.data.cache import load_pixels, normalize_tensor
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from pneumonia_zoo.data.transforms import Preprocessing


def test_numpy_batch_equals_the_training_cache_path(originals: Path, fixture_data: Path) -> None:
    paths = sorted(originals.iterdir()) + sorted((fixture_data / "test").rglob("*.jpeg"))[:4]
    for preprocessing in (
        Preprocessing(224, (0.5,) * 3, (0.5,) * 3),
        Preprocessing(96, IMAGENET_MEAN, IMAGENET_STD),
    ):
        size = preprocessing.image_size
        served = preprocessing.batch([read_image(path, min_side=size) for path in paths])
        assert served.shape == (len(paths), 3, size, size) and served.dtype == np.float32
        cached = torch.stack(
            [torch.from_numpy(load_pixels(path, preprocessing)[0].copy())[None] for path in paths]
        )
        trained = normalize_tensor(preprocessing, cached)
        assert torch.equal(trained, torch.from_numpy(served))


def test_grey_stays_one_channel_until_the_network_input() -> None:
    preprocessing = Preprocessing(8, IMAGENET_MEAN, IMAGENET_STD)
    grey = np.full((1, 1, 8, 8), 128, dtype=np.uint8)
    out = preprocessing.normalize(grey)
    assert out.shape == (1, 3, 8, 8)
    expected = [(128 / 255 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert np.allclose(out[0, :, 0, 0], expected, atol=1e-6)
