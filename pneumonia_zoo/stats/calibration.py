"""Temperature scaling (with or without a bias) and the calibration measures (ECE, reliability bins,
Brier) that judge it.

Temperature scaling is the one-parameter recalibration of Guo et al. (2017): it rescales the logits so
the softmax's confidence matches observed accuracy without changing any prediction's ranking, which is
why it can be fitted on validation data and leave every AUC untouched. It cannot move logits that are
off-centre (a network stopped after an epoch or two may put every image on one side of zero): rescaling
them only squeezes every probability toward one class. Platt scaling (Platt 1999, on the logit of
PNEUMONIA against NORMAL) adds a bias to the scaled PNEUMONIA logit; the ranking, and so the AUC, is still
unchanged.
"""

import numpy as np

# SciPy and scikit-learn are imported inside the fitting and scoring functions: the prediction path
# (apply_temperature) needs NumPy only, and the CLI's `predict` should not pay for them.

CALIBRATIONS = ("temperature", "platt")  # the methods train --calibration offers
TEMPERATURE_BOUNDS = (0.05, 20.0)
BIAS_BOUND = 50.0  # |bias| on the PNEUMONIA logit: far beyond any useful shift, keeps the answer finite
ECE_BINS = 15


def _scaled(logits: np.ndarray, temperature: float, bias: float) -> np.ndarray:
    """logits / temperature, with `bias` added to the last (PNEUMONIA) class's."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if bias:
        scaled[:, -1] += bias
    return scaled


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float, bias: float = 0.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / temperature + [0, bias])."""
    from scipy.special import log_softmax

    log_probs = log_softmax(_scaled(logits, temperature, bias), axis=1)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def _checked(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"need N x C logits and N labels, got {logits.shape} and {labels.shape}")
    return logits, labels


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 that minimises the mean NLL of softmax(logits / T) on these labels.

    The NLL is convex in 1/T, hence unimodal in log T, so a bounded Brent search on log T over
    TEMPERATURE_BOUNDS finds the optimum deterministically. Separable data push T to the lower bound
    (sharper is always better there); the bound keeps the answer finite.
    """
    logits, labels = _checked(logits, labels)
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: _nll(logits, labels, float(np.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The temperature T and bias b minimising the mean NLL of softmax(logits / T + [0, b]) on these labels
    (two classes). Started from the temperature alone (b = 0), within TEMPERATURE_BOUNDS and BIAS_BOUND."""
    logits, labels = _checked(logits, labels)
    if logits.shape[1] != 2:
        raise ValueError(f"Platt scaling needs two classes' logits, got {logits.shape[1]}")
    from scipy.optimize import minimize

    low, high = np.log(TEMPERATURE_BOUNDS)
    start = np.log(fit_temperature(logits, labels))
    result = minimize(
        lambda x: _nll(logits, labels, float(np.exp(x[0])), float(x[1])),
        x0=np.array([start, 0.0]),
        method="L-BFGS-B",
        bounds=[(low, high), (-BIAS_BOUND, BIAS_BOUND)],
    )
    return float(np.exp(result.x[0])), float(result.x[1])


def apply_temperature(logits: np.ndarray, temperature: float, bias: float = 0.0) -> np.ndarray:
    """N x C probabilities softmax(logits / temperature + [0, bias]), in float64 so large logits cannot
    overflow."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = _scaled(logits, temperature, bias)
    exp = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _top_label(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Confidence max(p, 1 - p) of the predicted class and whether that prediction is right.

    The predicted class is PNEUMONIA when p >= 0.5, matching a 0.5 threshold in `binary_metrics`.
    """
    probs = np.asarray(probs, dtype=np.float64)
    predicted = (probs >= 0.5).astype(int)
    confidence = np.where(predicted == 1, probs, 1.0 - probs)
    return confidence, (predicted == np.asarray(labels).astype(int)).astype(np.float64)


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin k holds confidences in (k / bins, (k + 1) / bins], as in Guo et al.; 0 goes to bin 0."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)


def _bin_sums(labels: np.ndarray, probs: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin image count, summed confidence and summed correctness."""
    confidence, correct = _top_label(labels, probs)
    index = _bin_index(confidence, bins)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    return (
        count,
        np.bincount(index, weights=confidence, minlength=bins),
        np.bincount(index, weights=correct, minlength=bins),
    )


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over bins of (bin share) * |mean confidence - accuracy|.

    The standard definition (Guo et al. 2017): confidence is max(p, 1 - p) for P(PNEUMONIA) = p, binned
    into `bins` equal-width bins over [0, 1]. With two classes confidence is >= 0.5, so only the upper
    half of the bins is ever used; the bins are kept on [0, 1] so numbers compare with the literature.
    nan for an empty set.
    """
    count, confidence_sum, correct_sum = _bin_sums(labels, probs, bins)
    total = count.sum()
    return float(np.abs(confidence_sum - correct_sum).sum() / total) if total else float("nan")


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Every bin of the top-label ECE, for a reliability diagram: its edges, count, confidence, accuracy.

    Empty bins are kept (count 0, nan confidence and accuracy) so a plot has a fixed x-axis.
    """
    count, confidence_sum, correct_sum = _bin_sums(labels, probs, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, accuracy = confidence_sum / count, correct_sum / count
    return [
        {
            "lower": float(edges[k]),
            "upper": float(edges[k + 1]),
            "count": int(count[k]),
            "confidence": float(confidence[k]),
            "accuracy": float(accuracy[k]),
        }
        for k in range(bins)
    ]


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of P(PNEUMONIA) against the 0/1 label (sklearn's brier_score_loss)."""
    from sklearn.metrics import brier_score_loss

    return float(brier_score_loss(np.asarray(labels).astype(int), np.asarray(probs), pos_label=1))
