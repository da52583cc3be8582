import numpy as np
import pytest

from pneumonia_zoo.stats.classification import METRIC_NAMES, binary_metrics

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
    # AUC: 24 (pos, neg) pairs; 0.4 loses to 0.6, 0.55 loses to 0.6; all others win
    assert m["auc"] == pytest.approx(22 / 24)
    assert set(METRIC_NAMES) | {"tn", "fp", "fn", "tp"} == set(m)


def test_threshold_is_inclusive() -> None:
    assert binary_metrics(LABELS, PROBS, 0.55)["tp"] == 5  # 0.55 >= 0.55 counts as PNEUMONIA


def test_one_class_and_no_positive_predictions() -> None:
    m = binary_metrics(np.ones(3), np.array([0.1, 0.2, 0.3]), 0.5)
    assert np.isnan(m["auc"])
    assert (m["tp"], m["fn"], m["precision"], m["f1"], m["specificity"]) == (0, 3, 0.0, 0.0, 0.0)
