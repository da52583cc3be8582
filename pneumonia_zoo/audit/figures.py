"""Live figures from labelled records: the answered label against the label fed back.

Sensitivity, specificity and accuracy are the recorded labels' (each answer at the operating point it
was given at), with Wilson intervals; AUC ranks the recorded P(PNEUMONIA), with DeLong's interval.
Live records are one per answer with no patient known, so they are treated as independent.
"""

import math

import numpy as np

from pneumonia_zoo.stats.intervals import wilson_interval
from pneumonia_zoo.stats.paired import delong_auc, delong_paired, mcnemar_exact


def _number(value: float, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _interval(interval: tuple[float, float]) -> list[float | None]:
    return [_number(interval[0]), _number(interval[1])]


def rate(successes: int, trials: int) -> tuple[float | None, list[float | None]]:
    if not trials:
        return None, [None, None]
    return _number(successes / trials), _interval(wilson_interval(successes, trials))


def live_figures(truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray) -> dict:
    """truth and predicted: 1 for PNEUMONIA; probability: the recorded P(PNEUMONIA)."""
    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    tp = int(((predicted == 1) & (truth == 1)).sum())
    fn = int(((predicted == 0) & (truth == 1)).sum())
    tn = int(((predicted == 0) & (truth == 0)).sum())
    fp = int(((predicted == 1) & (truth == 0)).sum())
    sensitivity, sensitivity_ci = rate(tp, tp + fn)
    specificity, specificity_ci = rate(tn, tn + fp)
    accuracy, accuracy_ci = rate(tp + tn, len(truth))
    auc, auc_ci = delong_auc(truth, probability) if len(truth) else (float("nan"), (math.nan, math.nan))
    return {
        "labelled": len(truth),
        "confusion": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
        "accuracy": accuracy,
        "accuracy_ci": accuracy_ci,
        "sensitivity": sensitivity,
        "sensitivity_ci": sensitivity_ci,
        "specificity": specificity,
        "specificity_ci": specificity_ci,
        "auc": _number(auc),
        "auc_ci": _interval(auc_ci),
    }


def paired_figures(
    truth: np.ndarray,
    predicted_a: np.ndarray,
    probability_a: np.ndarray,
    predicted_b: np.ndarray,
    probability_b: np.ndarray,
) -> dict:
    """Two versions on the same labelled requests: McNemar on their labels, DeLong on their AUCs."""
    truth = np.asarray(truth, dtype=int)
    result: dict = {"labelled": len(truth)}
    if not len(truth):
        return result
    result["mcnemar"] = mcnemar_exact(truth, predicted_a, predicted_b).to_dict()
    if min(int((truth == 1).sum()), int((truth == 0).sum())) >= 2:  # DeLong's covariances need two of each
        delong = delong_paired(truth, probability_a, probability_b)
        result["delta_auc"] = _number(delong.delta)
        result["delta_auc_ci"] = _interval(delong.ci)
        result["delta_auc_p_value"] = _number(delong.p_value)
    return result
