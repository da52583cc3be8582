"""Binary classification metrics at a threshold, with PNEUMONIA (label 1) as the positive class.

These are the reference definitions every report uses; the bootstrap in `intervals` reimplements the
same counts in plain NumPy for speed and its tests hold it to these numbers.
"""

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

METRIC_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def _safe_div(numerator: float, denominator: float) -> float:
    """0.0 rather than a ZeroDivisionError, so a model that never predicts a class still gets a report."""
    return float(numerator / denominator) if denominator else 0.0


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity (pneumonia recall), specificity, precision, F1, ROC AUC and the four counts.

    An image is predicted PNEUMONIA when P(PNEUMONIA) >= threshold. AUC is nan when only one class is
    present, because it is undefined there; the ratio metrics fall back to 0.0 on an empty denominator.
    """
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
