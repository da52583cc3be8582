"""After training, on held-out data only: the temperature, the operating points and the guard.

Temperature and thresholds are fitted on the VALIDATION split; the guard's Gaussians on the TRAINING
split's features (without augmentation) and its threshold on validation, so that about
`flag_rate` of validation images are flagged. The test split is never seen here.
"""

from dataclasses import dataclass

import numpy as np
from torch import nn

from pneumonia_zoo.data.pipeline import PreparedData
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.stats.calibration import apply_temperature, fit_temperature
from pneumonia_zoo.stats.operating_points import OperatingPoint, choose_operating_points
from pneumonia_zoo.stats.outliers import GaussianGuard, fit_gaussian_guard
from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.factories import create_eval_loader
from pneumonia_zoo.training.loop import predict_outputs


@dataclass
class Calibration:
    temperature: float
    operating_points: dict[str, OperatingPoint]
    guard: GaussianGuard
    prior: float  # training prevalence of PNEUMONIA (the balanced point's reference)


def calibrate(
    model: nn.Module,
    head: str,
    data: PreparedData,
    preprocessing: Preprocessing,
    runtime: Runtime,
    batch_size: int,
    flag_rate: float,
    channels_last: bool = True,
) -> Calibration:
    def outputs(images):
        loader = create_eval_loader(images, preprocessing, batch_size)
        return predict_outputs(model, loader, runtime, head, channels_last)

    val_labels, val_logits, val_features = outputs(data.val)
    train_labels, _, train_features = outputs(data.train)
    temperature = fit_temperature(val_logits, val_labels)
    val_probs = apply_temperature(val_logits, temperature)[:, 1]
    prior = float(np.mean(train_labels))
    points = choose_operating_points(val_labels, val_probs, prior=prior)
    guard = fit_gaussian_guard(train_features, train_labels, val_features, flag_rate=flag_rate)
    return Calibration(temperature, points, guard, prior)
