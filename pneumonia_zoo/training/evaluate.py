"""Evaluating a trained network on a split: probabilities, metrics, intervals, a report."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import classification_report
from torch import nn
from torch.utils.data import DataLoader

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.cache import CachedDataset, DecodedImages
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.training.device import Runtime
from pneumonia_zoo.training.loop import predict_probs
from pneumonia_zoo.training.metrics import binary_metrics, bootstrap_ci


@dataclass
class SplitEvaluation:
    name: str
    labels: np.ndarray
    probs: np.ndarray
    loss: float
    threshold: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]

    def flat_metrics(self) -> dict[str, float]:
        """`<split>_<metric>` (and `_ci_low`/`_ci_high`) names, as logged to MLflow."""
        flat = {f"{self.name}_{key}": float(value) for key, value in self.metrics.items()}
        flat[f"{self.name}_loss"] = self.loss
        for key, (low, high) in self.intervals.items():
            flat[f"{self.name}_{key}_ci_low"] = low
            flat[f"{self.name}_{key}_ci_high"] = high
        return flat

    def report(self) -> str:
        predicted = (self.probs >= self.threshold).astype(int)
        return classification_report(
            self.labels, predicted, labels=[0, 1], target_names=list(CLASS_NAMES), digits=4, zero_division=0
        )


def eval_loader(images: DecodedImages, preprocessing: Preprocessing, batch_size: int) -> DataLoader:
    return DataLoader(CachedDataset(images, preprocessing), batch_size=batch_size, shuffle=False)


def evaluate_split(
    name: str,
    model: nn.Module,
    loader: DataLoader,
    runtime: Runtime,
    threshold: float,
    bootstrap: int = 0,
    channels_last: bool = True,
) -> SplitEvaluation:
    labels, probs, loss = predict_probs(model, loader, runtime, channels_last)
    return evaluate_probs(name, labels, probs, loss, threshold, bootstrap)


def evaluate_probs(
    name: str, labels: np.ndarray, probs: np.ndarray, loss: float, threshold: float, bootstrap: int = 0
) -> SplitEvaluation:
    metrics = binary_metrics(labels, probs, threshold)
    intervals = bootstrap_ci(labels, probs, threshold, n_resamples=bootstrap) if bootstrap else {}
    return SplitEvaluation(name, labels, probs, loss, threshold, metrics, intervals)
