import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from pneumonia_zoo.stats.calibration import (
    TEMPERATURE_BOUNDS,
    apply_temperature,
    brier_score,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    reliability_bins,
)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


def test_temperature_closed_form() -> None:
    # Four identical logit pairs (0, d), three labelled 1: the NLL is minimal where sigmoid(d / T) = 3/4,
    # i.e. d / T = ln 3.
    labels = np.array([1, 1, 1, 0])
    for d in (1.0, 2.0, 5.0):
        logits = np.tile([0.0, d], (4, 1))
        assert fit_temperature(logits, labels) == pytest.approx(d / np.log(3), rel=1e-5)


def test_temperature_matches_a_brute_force_grid() -> None:
    logits = np.array([[0.3, 1.9], [2.0, -0.5], [0.0, 0.4], [1.2, 1.0], [-1.0, 2.5], [0.5, -0.2]])
    labels = np.array([1, 0, 0, 1, 1, 1])
    grid = np.geomspace(*TEMPERATURE_BOUNDS, 40001)
    losses = np.array([_nll(logits, labels, t) for t in grid])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(grid[np.argmin(losses)], rel=1e-3)
    assert _nll(logits, labels, fitted) <= losses.min() + 1e-9


def test_temperature_recovers_an_overconfident_scaling() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20000, 2)) * 1.5
    labels = (rng.random(20000) < softmax(z, axis=1)[:, 1]).astype(int)  # calibrated at T = 1
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(z, labels) == pytest.approx(1.0, rel=0.05)


def test_separable_data_hit_the_lower_bound() -> None:
    # Small logits, so the NLL still falls all the way to T = 0.05 instead of underflowing to a plateau.
    logits = np.array([[0.0, 0.1], [0.1, 0.0]])
    assert fit_temperature(logits, np.array([1, 0])) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=1e-3)


def test_apply_temperature_values_and_stability() -> None:
    probs = apply_temperature(np.array([[0.0, 2 * np.log(3)], [1000.0, 0.0]]), 2.0)
    assert probs.dtype == np.float64
    np.testing.assert_allclose(probs, [[0.25, 0.75], [1.0, 0.0]], atol=1e-12)
    with pytest.raises(ValueError):
        apply_temperature(np.zeros((1, 2)), 0.0)


def calibrated_sample(shift: float, n: int = 20000) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logits calibrated at T = 1, bias `-shift` (every PNEUMONIA logit moved down by `shift`)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(n, 2)) * 1.5 + [0.0, 1.0]  # about 70% PNEUMONIA, as in training
    labels = (rng.random(n) < softmax(z, axis=1)[:, 1]).astype(int)
    return z - [0.0, shift], labels


def test_platt_recovers_logits_a_temperature_cannot() -> None:
    """Off-centre logits (DenseNet201 after one epoch, README): a temperature alone calls every image NORMAL
    at 0.5; the bias puts them back."""
    logits, labels = calibrated_sample(shift=8.0)
    temperature = fit_temperature(logits, labels)
    alone = apply_temperature(logits, temperature)[:, 1]
    # A large temperature squeezes the probabilities under 0.5: (nearly) every image NORMAL, 64% PNEUMONIA.
    assert (alone >= 0.5).mean() < 0.01
    fitted_t, bias = fit_platt(logits, labels)
    # Back to the sample's own calibration: (d - 8) / T + bias = d / T exactly when bias = 8 / T.
    assert fitted_t == pytest.approx(1.0, rel=0.05) and bias * fitted_t == pytest.approx(8.0, rel=0.01)
    platt = apply_temperature(logits, fitted_t, bias)[:, 1]
    assert platt.mean() == pytest.approx(labels.mean(), abs=0.01)
    assert ((platt >= 0.5) == labels).mean() > ((alone >= 0.5) == labels).mean() + 0.3
    assert brier_score(labels, platt) < brier_score(labels, alone) - 0.05
    assert np.array_equal(np.argsort(platt, kind="stable"), np.argsort(alone, kind="stable"))  # same ranking


def test_platt_on_centred_logits_is_a_temperature() -> None:
    logits, labels = calibrated_sample(shift=0.0)
    fitted_t, bias = fit_platt(logits, labels)
    assert fitted_t == pytest.approx(fit_temperature(logits, labels), rel=0.02) and abs(bias) < 0.05
    with pytest.raises(ValueError, match="two classes"):
        fit_platt(np.zeros((4, 3)), np.array([0, 1, 2, 1]))


def test_apply_temperature_adds_the_bias_to_the_pneumonia_logit() -> None:
    probs = apply_temperature(np.array([[0.0, 0.0], [0.0, 2.0]]), 2.0, bias=np.log(3))
    np.testing.assert_allclose(probs[:, 1], [0.75, 1 / (1 + np.exp(-(1 + np.log(3))))], atol=1e-12)


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    # p = 0.8 ten times, eight positives: confidence 0.8, accuracy 0.8.
    # p = 0.1 ten times (NORMAL at confidence 0.9), nine negatives: accuracy 0.9.
    probs = np.r_[np.full(10, 0.8), np.full(10, 0.1)]
    labels = np.r_[np.ones(8), np.zeros(2), np.zeros(9), np.ones(1)]
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_a_large_calibrated_sample_is_small() -> None:
    rng = np.random.default_rng(1)
    probs = rng.random(200000)
    labels = (rng.random(200000) < probs).astype(int)
    assert expected_calibration_error(labels, probs) < 0.01


def test_ece_by_hand() -> None:
    # 4 x p = 0.9, three positive: confidence 0.9, accuracy 0.75, gap 0.15, share 0.4.
    # 6 x p = 0.3, all negative: confidence 0.7, accuracy 1.0, gap 0.3, share 0.6.
    probs = np.r_[np.full(4, 0.9), np.full(6, 0.3)]
    labels = np.r_[1, 1, 1, 0, np.zeros(6)]
    assert expected_calibration_error(labels, probs) == pytest.approx(0.4 * 0.15 + 0.6 * 0.3)


def test_ece_bins_the_top_label_confidence() -> None:
    # P(PNEUMONIA) 0.75 and 0.22 have confidences 0.75 and 0.78: one bin, (11/15, 12/15].
    # Mean confidence 0.765, accuracy 3/4 (the 0.22 with label 1 is wrong), so ECE = 0.015.
    probs = np.array([0.75, 0.75, 0.22, 0.22])
    labels = np.array([1, 1, 1, 0])
    assert expected_calibration_error(labels, probs) == pytest.approx(0.015)
    bins = reliability_bins(labels, probs)
    assert len(bins) == 15
    assert [b["count"] for b in bins] == [0] * 11 + [4] + [0] * 3
    assert bins[11]["lower"] == pytest.approx(11 / 15) and bins[11]["upper"] == pytest.approx(12 / 15)
    assert bins[11]["confidence"] == pytest.approx(0.765)
    assert bins[11]["accuracy"] == pytest.approx(0.75)
    assert np.isnan(bins[0]["confidence"]) and np.isnan(bins[0]["accuracy"])


def test_reliability_bins_agree_with_ece() -> None:
    rng = np.random.default_rng(2)
    probs = rng.random(500)
    labels = (rng.random(500) < probs**2).astype(int)
    bins = [b for b in reliability_bins(labels, probs) if b["count"]]
    ece = sum(b["count"] / 500 * abs(b["confidence"] - b["accuracy"]) for b in bins)
    assert expected_calibration_error(labels, probs) == pytest.approx(ece)


def test_brier_by_hand() -> None:
    assert brier_score(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx((0.2**2 + 0.4**2) / 2)
