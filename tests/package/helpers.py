"""Small real model packages for tests: a random small_cnn with calibration, operating points and guard."""

from pathlib import Path

import numpy as np
import torch

from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.build import write_single
from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.package.io import guard_config
from pneumonia_zoo.package.network import feature_network
from pneumonia_zoo.stats.operating_points import OperatingPoint
from pneumonia_zoo.stats.outliers import fit_part_guard
from pneumonia_zoo.zoo.factory import create_model

POINTS = {
    "balanced": OperatingPoint("balanced", 0.37, "test rule", 0.9, 0.8),
    "sensitivity_95": OperatingPoint("sensitivity_95", 0.2, "test rule", 0.95, 0.6),
}


def make_package(
    directory: Path,
    size: int = 48,
    temperature: float = 1.7,
    seed: int = 0,
    onnx: bool = True,
    float16: bool = False,
    jpeg_quality: int | None = 75,
) -> PackageConfig:
    """A small_cnn package whose guard is fitted on the features of random inputs."""
    torch.manual_seed(seed)
    network = create_model("small_cnn").eval()
    split = feature_network("small_cnn", network.state_dict())
    with torch.no_grad():
        _, train_features, _ = split(torch.randn(64, 3, size, size))
        _, val_features, _ = split(torch.randn(32, 3, size, size))
    dims = [split.head.in_features, train_features.shape[1] - split.head.in_features]
    labels = np.arange(64) % 2
    guard = fit_part_guard(
        train_features.numpy(), labels, val_features.numpy(), dims, ["penultimate", "features.2"], 0.05
    )
    config = PackageConfig(
        architecture="small_cnn",
        preprocessing=Preprocessing(size, jpeg_quality=jpeg_quality),
        temperature=temperature,
        operating_points=dict(POINTS),
        guard=guard_config(guard, 0.05),
        info={"seed": "42", "val_fraction": "0.15", "limit": "None"},
    )
    return write_single(network, config, directory, guard, with_onnx=onnx, float16=float16)
