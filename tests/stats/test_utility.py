"""PPV/NPV at a prevalence (Bayes) and decision-curve net benefit, against hand-computed values."""

import numpy as np
import pytest

from pneumonia_zoo.stats.utility import decision_curve, predictive_values


def test_predictive_values_by_hand() -> None:
    # se 0.9, sp 0.8, prevalence 0.1: PPV = 0.09 / (0.09 + 0.18) = 1/3; NPV = 0.72 / (0.72 + 0.01).
    ppv, npv = predictive_values(0.9, 0.8, 0.1)
    assert ppv == pytest.approx(1 / 3) and npv == pytest.approx(0.72 / 0.73)
    # At prevalence 0.5 with se = sp the two are equal to them.
    assert predictive_values(0.85, 0.85, 0.5) == pytest.approx((0.85, 0.85))


def test_predictive_values_never_given_are_nan() -> None:
    ppv, npv = predictive_values(0.0, 1.0, 0.3)  # never positive: no PPV
    assert np.isnan(ppv) and npv == pytest.approx(0.7)
    with pytest.raises(ValueError, match="prevalence"):
        predictive_values(0.9, 0.9, 1.0)


def test_decision_curve_by_hand() -> None:
    # Positives 0.9, 0.4; negatives 0.6, 0.1 (prevalence 1/2).
    # p_t 0.2: TP 2, FP 1 -> 2/4 - 1/4 * 0.25 = 0.4375; treat all 0.5 - 0.5 * 0.25 = 0.375.
    # p_t 0.5: TP 1, FP 1 -> 1/4 - 1/4 * 1 = 0; treat all 0.
    # p_t 0.8: TP 1, FP 0 -> 0.25; treat all 0.5 - 0.5 * 4 = -1.5.
    curve = decision_curve(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), np.array([0.2, 0.5, 0.8]))
    np.testing.assert_allclose(curve.net_benefit, [0.4375, 0.0, 0.25])
    np.testing.assert_allclose(curve.treat_all, [0.375, 0.0, -1.5])
    np.testing.assert_array_equal(curve.treat_none, [0.0, 0.0, 0.0])
    assert curve.prevalence == 0.5
    assert set(curve.to_dict()) == {"prevalence", "thresholds", "net_benefit", "treat_all", "treat_none"}


def test_a_given_prevalence_reweighs_the_same_rates() -> None:
    # p_t 0.2 at prevalence 0.1: se 1, FPR 1/2 -> 0.1 - 0.5 * 0.9 * 0.25 = -0.0125; treat all 0.1 - 0.225.
    curve = decision_curve(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), np.array([0.2]), 0.1)
    np.testing.assert_allclose(curve.net_benefit, [-0.0125])
    np.testing.assert_allclose(curve.treat_all, [-0.125])


def test_default_thresholds_and_a_perfect_model() -> None:
    labels = np.array([0] * 30 + [1] * 10)
    curve = decision_curve(labels, labels.astype(float))
    assert curve.thresholds[0] == 0.01 and curve.thresholds[-1] == 0.99 and len(curve.thresholds) == 99
    np.testing.assert_allclose(curve.net_benefit, 0.25)  # every positive found, no false positive
    assert (curve.net_benefit >= np.maximum(curve.treat_all, 0) - 1e-12).all()
