"""Binary metrics (PNEUMONIA = positive), bootstrap confidence intervals, threshold choice."""

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def _safe_div(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity (pneumonia recall), specificity, precision, F1, ROC AUC and counts."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probs) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    sensitivity = _safe_div(tp, tp + fn)
    precision = _safe_div(tp, tp + fp)
    auc = float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else float("nan")
    return {
        "accuracy": _safe_div(tp + tn, len(labels)),
        "sensitivity": sensitivity,
        "specificity": _safe_div(tn, tn + fp),
        "precision": precision,
        "f1": _safe_div(2 * precision * sensitivity, precision + sensitivity),
        "auc": auc,
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
    }


def bootstrap_ci(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of every metric in METRIC_NAMES, resampling images."""
    labels, probs = np.asarray(labels), np.asarray(probs)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    for _ in range(n_resamples):
        index = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[index])) < 2:
            continue  # AUC and the class-conditional rates need both classes
        values = binary_metrics(labels[index], probs[index], threshold)
        for name in METRIC_NAMES:
            draws[name].append(values[name])
    alpha = (1 - confidence) / 2
    return {
        name: (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))
        for name, values in draws.items()
        if values
    }


@dataclass(frozen=True)
class Thresholds:
    youden: float  # maximizes sensitivity + specificity - 1 on validation
    sensitivity_95: float  # the highest threshold that keeps validation sensitivity >= 0.95


def choose_thresholds(labels: np.ndarray, probs: np.ndarray) -> Thresholds:
    """Decision thresholds chosen on VALIDATION data only (never on test)."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return Thresholds(0.5, 0.5)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)  # sklearn's first threshold is +inf
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    youden = float(thresholds[np.argmax(tpr - fpr)])
    sensitive = thresholds[tpr >= 0.95]
    sensitivity_95 = float(sensitive.max()) if len(sensitive) else float(thresholds.min())
    return Thresholds(float(np.clip(youden, 0, 1)), float(np.clip(sensitivity_95, 0, 1)))
