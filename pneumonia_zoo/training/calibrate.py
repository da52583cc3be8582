"""After training, on held-out data only: the temperature (and a bias, for Platt scaling), the operating
points and the guard.

Temperature (bias) and thresholds are fitted on the VALIDATION split; the guard's Gaussians on the TRAINING
split's features (without augmentation) and its threshold on validation, so that about
`flag_rate` of validation images are flagged. The test split is never seen here.
"""

import copy
from dataclasses import dataclass

import numpy as np
from torch import nn

from pneumonia_zoo.data.cache import DecodedImages
from pneumonia_zoo.data.pipeline import PreparedData
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.stats.calibration import apply_temperature, fit_platt, fit_temperature
from pneumonia_zoo.stats.operating_points import OperatingPoint, choose_operating_points
from pneumonia_zoo.stats.outliers import PartGuard, fit_part_guard
from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.factories import create_eval_loader
from pneumonia_zoo.training.loop import predict_outputs
from pneumonia_zoo.zoo.architectures import Architecture
from pneumonia_zoo.zoo.features import FeatureNetwork


@dataclass
class Calibration:
    temperature: float
    operating_points: dict[str, OperatingPoint]
    guard: PartGuard
    prior: float  # training prevalence of PNEUMONIA (the balanced point's reference)
    bias: float = 0.0  # Platt scaling's, on the scaled PNEUMONIA logit


def calibrate(
    model: nn.Module,
    arch: Architecture,
    data: PreparedData,
    preprocessing: Preprocessing,
    runtime: Runtime,
    batch_size: int,
    flag_rate: float,
    channels_last: bool = True,
    method: str = "temperature",
) -> Calibration:
    # A split view of a copy: the trained model itself stays as it is, for the package.
    network = FeatureNetwork(copy.deepcopy(model), arch)

    def outputs(images: DecodedImages) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return predict_outputs(
            network, create_eval_loader(images, preprocessing, batch_size), runtime, channels_last
        )

    val_labels, val_logits, val_features = outputs(data.val)
    train_labels, _, train_features = outputs(data.train)
    penultimate = network.head.in_features
    if method == "platt":
        temperature, bias = fit_platt(val_logits, val_labels)
    else:
        temperature, bias = fit_temperature(val_logits, val_labels), 0.0
    val_probs = apply_temperature(val_logits, temperature, bias)[:, 1]
    prior = float(np.mean(train_labels))
    points = choose_operating_points(val_labels, val_probs, prior=prior)
    guard = fit_guard(arch, penultimate, train_features, train_labels, val_features, flag_rate)
    return Calibration(temperature, points, guard, prior, bias)


def fit_guard(
    arch: Architecture,
    penultimate: int,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    flag_rate: float,
) -> PartGuard:
    """The two-part guard: Gaussians of the penultimate features and of the guard layer's channel
    statistics (the rest of each feature row), fitted on training images, thresholded on validation."""
    dims = [penultimate, train_features.shape[1] - penultimate]
    names = ["penultimate", arch.guard_layer]
    return fit_part_guard(train_features, train_labels, val_features, dims, names, flag_rate=flag_rate)
