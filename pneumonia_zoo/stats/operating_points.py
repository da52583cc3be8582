"""Decision thresholds (operating points) chosen on VALIDATION data only, each with the rule that made it.

A threshold picked on the test set would make the test metrics optimistic; these functions only ever
see validation labels, and each point carries its validation sensitivity and specificity so a report
can show what was promised next to what the test set delivered.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_OPERATING_POINT = "balanced"
TARGET_RATE = 0.95
# Probabilities are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before taking logits, so saturated float32
# outputs of exactly 0 or 1 give a finite midpoint.
LOGIT_EPS = 1e-6


@dataclass(frozen=True)
class OperatingPoint:
    name: str
    threshold: float  # predict PNEUMONIA when P(PNEUMONIA) >= threshold
    rule: str  # one sentence saying how the threshold was chosen
    val_sensitivity: float
    val_specificity: float


def _rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float, float]:
    predicted = probs >= threshold
    return float(predicted[labels == 1].mean()), float((~predicted[labels == 0]).mean())


def _youden(labels: np.ndarray, probs: np.ndarray) -> float:
    """Midpoint, in logit space, of the widest run of thresholds that reach the maximum empirical J.

    Every threshold in (u_{k-1}, u_k] between consecutive distinct scores gives the same confusion
    matrix, so J is a step function; taking the edge of the best step (as sklearn's thresholds do) puts
    the threshold on a validation image, which on a nearly separable set is the worst place for unseen
    data. Adjacent steps with equal J are merged; ties between runs go to the lowest (most sensitive).
    When no threshold beats chance (max J <= 0) this returns 0.5.
    """
    from scipy.special import expit, logit  # fitting only: the prediction path needs just the dataclass
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, probs, drop_intermediate=False)
    j = (tpr - fpr)[1:][::-1]  # ascending thresholds u_1 < ... < u_m; drop sklearn's leading +inf
    scores = thresholds[1:][::-1]
    best = j.max()
    if best <= 0:
        return 0.5
    # Step k holds the thresholds in (lower_bound[k], scores[k]]; the lowest step starts at 0.
    lower_bound = np.concatenate([[0.0], scores[:-1]])
    lower_logit = logit(np.clip(lower_bound, LOGIT_EPS, 1 - LOGIT_EPS))
    upper_logit = logit(np.clip(scores, LOGIT_EPS, 1 - LOGIT_EPS))
    is_best = np.isclose(j, best, rtol=0, atol=1e-12)
    # Runs of consecutive best steps: start where a best step follows a non-best one.
    edges = np.diff(np.concatenate([[0], is_best.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    widths = upper_logit[stops] - lower_logit[starts]
    widest = int(np.argmax(widths))
    low, high = float(lower_bound[starts[widest]]), float(scores[stops[widest]])
    middle = float(expit((lower_logit[starts[widest]] + upper_logit[stops[widest]]) / 2))
    if not low < middle <= high:  # both ends clipped to the same LOGIT_EPS: split the run in probability
        middle = (low + high) / 2 if low < (low + high) / 2 else high
    return middle


def _needed(count: int) -> int:
    """The fewest of `count` images whose share reaches TARGET_RATE (19 / 20 == 0.95 holds in floats)."""
    return int(np.argmax(np.arange(1, count + 1) / count >= TARGET_RATE)) + 1


def _sensitivity_target(labels: np.ndarray, probs: np.ndarray) -> float:
    """The highest threshold with validation sensitivity >= TARGET_RATE: the k-th highest positive's score."""
    positives = np.sort(probs[labels == 1])[::-1]
    return float(positives[_needed(len(positives)) - 1])


def _specificity_target(labels: np.ndarray, probs: np.ndarray) -> float:
    """The lowest threshold with validation specificity >= TARGET_RATE: just above the k-th lowest negative.

    A negative scored exactly at the threshold counts as predicted PNEUMONIA, so the threshold is the next
    float32 above that negative's score; float32 rather than float64 so it still lies above the score when
    a caller compares float32 probabilities with it.
    """
    negatives = np.sort(probs[labels == 0])
    highest_needed = negatives[_needed(len(negatives)) - 1]
    return float(np.nextafter(np.float32(highest_needed), np.float32(np.inf)))


def choose_operating_points(
    labels: np.ndarray, probs: np.ndarray, prior: float | None = None
) -> dict[str, OperatingPoint]:
    """The named operating points of a model, from validation labels and calibrated P(PNEUMONIA).

    "balanced" (the default) predicts PNEUMONIA when calibrated P(PNEUMONIA) >= `prior`, the training
    prevalence: with the training prior built into the probabilities, that is the Bayes decision for
    equal class priors and equal costs, the population optimum of Youden's J. Unlike the empirical
    Youden point it does not depend on where a nearly separable validation set has its gap. `prior`
    None uses the validation prevalence. With one class only in `labels` every point is 0.5 with nan
    rates. Thresholds are clipped to [0, 1].
    """
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    if len(labels) != len(probs):
        raise ValueError(f"labels and probs differ in length: {len(labels)} and {len(probs)}")
    if prior is not None and not 0 < prior < 1:
        raise ValueError(f"prior must lie in (0, 1), got {prior}")
    prior_source = "training"
    if prior is None:
        prior, prior_source = float(labels.mean()) if len(labels) else 0.5, "validation"
    rules = {
        "balanced": f"calibrated P(PNEUMONIA) >= {prior_source} prevalence {prior:.4f} (Bayes, equal costs)",
        "youden": "logit-space midpoint of the widest threshold range maximising validation Youden's J",
        "sensitivity_95": f"highest threshold with validation sensitivity >= {TARGET_RATE}",
        "specificity_95": f"lowest threshold with validation specificity >= {TARGET_RATE}",
    }
    if len(np.unique(labels)) < 2:
        nan = float("nan")
        return {name: OperatingPoint(name, 0.5, rule, nan, nan) for name, rule in rules.items()}
    thresholds = {
        "balanced": float(prior),
        "youden": _youden(labels, probs),
        "sensitivity_95": _sensitivity_target(labels, probs),
        "specificity_95": _specificity_target(labels, probs),
    }
    points = {}
    for name, threshold in thresholds.items():
        threshold = float(np.clip(threshold, 0.0, 1.0))
        sensitivity, specificity = _rates(labels, probs, threshold)
        points[name] = OperatingPoint(name, threshold, rules[name], sensitivity, specificity)
    return points
