import numpy as np
import pytest

from pneumonia_zoo.training.metrics import binary_metrics, bootstrap_ci, choose_thresholds

LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
PROBS = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95, 0.55])


def test_binary_metrics_by_hand() -> None:
    m = binary_metrics(LABELS, PROBS, 0.5)
    # positives >= 0.5: 0.9 0.8 0.7 0.95 0.55 (tp 5), 0.4 missed (fn 1); negatives: 0.6 (fp 1), tn 3
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (5, 1, 1, 3)
    assert m["sensitivity"] == pytest.approx(5 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(5 / 6)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(5 / 6)
    # AUC: pairs (pos > neg) out of 24; 0.4 beats 0.1, 0.2, 0.3 only; 0.55 beats all but 0.6
    assert m["auc"] == pytest.approx((6 * 4 - 1 - 1) / 24)


def test_youden_threshold_maximises_j() -> None:
    thresholds = choose_thresholds(LABELS, PROBS)
    m = binary_metrics(LABELS, PROBS, thresholds.youden)
    best_j = max(
        binary_metrics(LABELS, PROBS, t)["sensitivity"] + binary_metrics(LABELS, PROBS, t)["specificity"]
        for t in np.unique(PROBS)
    )
    assert m["sensitivity"] + m["specificity"] == pytest.approx(best_j)


def test_sensitivity_95_threshold_is_the_highest_that_reaches_it() -> None:
    t = choose_thresholds(LABELS, PROBS).sensitivity_95
    assert binary_metrics(LABELS, PROBS, t)["sensitivity"] >= 0.95
    assert t == pytest.approx(0.4)


def test_bootstrap_intervals_bracket_the_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    point = binary_metrics(labels, probs, 0.5)
    intervals = bootstrap_ci(labels, probs, 0.5, n_resamples=300, seed=1)
    for name, (low, high) in intervals.items():
        assert low <= point[name] <= high, name
        assert high - low < 0.25, name
