import numpy as np
import pytest
from scipy.special import expit, logit

from pneumonia_zoo.stats.operating_points import (
    DEFAULT_OPERATING_POINT,
    OperatingPoint,
    choose_operating_points,
)

NAMES = {"balanced", "youden", "sensitivity_95", "specificity_95"}


def test_separable_validation_set() -> None:
    # Negatives top out at 0.2, positives start at 0.9: every threshold in (0.2, 0.9] is perfect.
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.05, 0.1, 0.2, 0.9, 0.95, 0.99])
    points = choose_operating_points(labels, probs)
    assert set(points) == NAMES and DEFAULT_OPERATING_POINT == "balanced"
    # Logit midpoint of (0.2, 0.9]: (ln(1/4) + ln 9) / 2 = ln(3/2), so p = 1.5 / 2.5 = 0.6, inside the gap.
    assert points["youden"].threshold == pytest.approx(0.6)
    assert points["sensitivity_95"].threshold == 0.9  # all three positives needed; 0.9 is the highest
    spec = points["specificity_95"].threshold  # all three negatives needed: just above 0.2
    assert 0.2 < spec < 0.2 + 1e-7
    assert points["balanced"].threshold == 0.5  # validation prevalence 3/6
    for point in points.values():
        assert (point.val_sensitivity, point.val_specificity) == (1.0, 1.0), point.name
        assert isinstance(point, OperatingPoint) and point.rule


def test_specificity_threshold_excludes_float32_ties() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs32 = np.array([0.05, 0.1, 0.2, 0.9, 0.95, 0.99], dtype=np.float32)
    spec = choose_operating_points(labels, probs32)["specificity_95"].threshold
    assert not (probs32 >= spec)[:3].any()  # float32 compared with the float threshold, as a caller would


def test_overlapping_validation_set_by_hand() -> None:
    # Ascending: 0.1 0.2 0.3 negative, 0.4 0.55 positive, 0.6 negative, 0.7 0.8 0.9 0.95 positive.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95, 0.55])
    points = choose_operating_points(labels, probs)
    # J by threshold: 0.4 -> 1 + 3/4 - 1 = 0.75 (best, on (0.3, 0.4]); 0.7 -> 4/6 + 1 - 1 = 0.667.
    odds = np.sqrt((0.3 / 0.7) * (0.4 / 0.6))  # geometric mean of the odds = logit midpoint
    assert points["youden"].threshold == pytest.approx(odds / (1 + odds))
    assert (points["youden"].val_sensitivity, points["youden"].val_specificity) == (1.0, 0.75)
    # Sensitivity >= 0.95 needs all six positives: the lowest positive, 0.4.
    assert points["sensitivity_95"].threshold == 0.4
    # Specificity >= 0.95 needs all four negatives below: just above 0.6; 4 of 6 positives remain.
    spec = points["specificity_95"]
    assert 0.6 < spec.threshold < 0.6 + 1e-7
    assert (spec.val_sensitivity, spec.val_specificity) == pytest.approx((4 / 6, 1.0))
    # Validation prevalence 0.6: 0.6 itself (a negative) is called PNEUMONIA.
    balanced = points["balanced"]
    assert balanced.threshold == pytest.approx(0.6)
    assert (balanced.val_sensitivity, balanced.val_specificity) == pytest.approx((4 / 6, 3 / 4))


def test_training_prior_sets_the_balanced_point() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.05, 0.1, 0.2, 0.9, 0.95, 0.99])
    point = choose_operating_points(labels, probs, prior=0.74)["balanced"]
    assert point.threshold == 0.74 and "training" in point.rule
    with pytest.raises(ValueError):
        choose_operating_points(labels, probs, prior=1.0)


def test_youden_takes_the_widest_of_tied_runs() -> None:
    # Ascending: 0.1 0.2 neg, 0.3 pos, 0.4 neg, 0.8 0.9 pos. J = 2/3 on (0.2, 0.3] and on (0.4, 0.8];
    # widths in logit space ln(12/7) and ln 6, so the second wins: midpoint odds sqrt(4 * 2/3).
    labels = np.array([0, 0, 1, 0, 1, 1])
    probs = np.array([0.1, 0.2, 0.3, 0.4, 0.8, 0.9])
    odds = np.sqrt(4 * 2 / 3)
    assert choose_operating_points(labels, probs)["youden"].threshold == pytest.approx(odds / (1 + odds))


def test_youden_merges_adjacent_steps_of_equal_j() -> None:
    # A positive and a negative tie at 0.5: J = 1/2 on (0.1, 0.5] and on (0.5, 0.9]. Merged, the run is
    # (0.1, 0.9] with logit midpoint 0 (p = 0.5); unmerged, either half would give 0.25 or 0.75.
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.5, 0.5, 0.9])
    assert choose_operating_points(labels, probs)["youden"].threshold == pytest.approx(0.5)


def test_saturated_probabilities_give_a_finite_midpoint() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.0, 0.0, 1.0, 1.0])
    youden = choose_operating_points(labels, probs)["youden"]
    assert youden.threshold == pytest.approx(0.5)
    assert (youden.val_sensitivity, youden.val_specificity) == (1.0, 1.0)


def test_thresholds_are_clipped_and_rates_reported_honestly() -> None:
    # The top score is a negative at exactly 1.0: "just above it" clips to 1.0, which still calls it.
    labels = np.array([1, 0])
    probs = np.array([0.5, 1.0])
    points = choose_operating_points(labels, probs)
    assert all(0.0 <= point.threshold <= 1.0 for point in points.values())
    assert points["specificity_95"].threshold == 1.0
    assert points["specificity_95"].val_specificity == 0.0


@pytest.mark.parametrize("labels", [np.zeros(4, int), np.ones(4, int)])
def test_one_class_only(labels: np.ndarray) -> None:
    points = choose_operating_points(labels, np.array([0.1, 0.4, 0.6, 0.9]), prior=0.7)
    assert set(points) == NAMES
    for point in points.values():
        assert point.threshold == 0.5
        assert np.isnan(point.val_sensitivity) and np.isnan(point.val_specificity)


def test_youden_midpoint_in_logit_space_not_probability() -> None:
    labels = np.array([0, 1])
    probs = np.array([0.5, 0.99])
    threshold = choose_operating_points(labels, probs)["youden"].threshold
    assert threshold == pytest.approx(expit((logit(0.5) + logit(0.99)) / 2))  # 0.9091, not 0.745
