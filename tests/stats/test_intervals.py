import time

import numpy as np
import pytest

from pneumonia_zoo.stats.calibration import brier_score, expected_calibration_error
from pneumonia_zoo.stats.classification import binary_metrics
from pneumonia_zoo.stats.intervals import (
    INTERVAL_METRICS,
    _metric_vector,
    cluster_bootstrap,
    wilson_interval,
    wilson_rates,
)


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    # Newcombe (1998), Statistics in Medicine 17:857, Table II, method 3 (Wilson score, no correction)
    [
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_published_values(successes: int, trials: int, expected: tuple[float, float]) -> None:
    assert wilson_interval(successes, trials) == pytest.approx(expected, abs=5e-5)


def test_wilson_closed_form_at_90_percent() -> None:
    # centre (k + z^2/2) / (n + z^2), half-width z sqrt(k (n - k) / n + z^2 / 4) / (n + z^2), z = 1.644854
    k, n, z = 8, 10, 1.6448536269514722
    centre = (k + z**2 / 2) / (n + z**2)
    half = z * np.sqrt(k * (n - k) / n + z**2 / 4) / (n + z**2)
    assert wilson_interval(k, n, confidence=0.9) == pytest.approx((centre - half, centre + half))


def test_wilson_of_no_trials_is_nan() -> None:
    assert all(np.isnan(wilson_interval(0, 0)))


def test_wilson_rates_count_the_right_cells() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.8, 0.4, 0.7, 0.95, 0.55])
    rates = wilson_rates(labels, probs, 0.5)  # tp 5 of 6 positives, tn 3 of 4 negatives
    assert rates == {"sensitivity": wilson_interval(5, 6), "specificity": wilson_interval(3, 4)}


def test_the_fast_statistic_agrees_with_the_reference_metrics() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.round(np.clip(0.35 * labels + rng.random(300) * 0.65, 0, 1), 1)  # rounded: many AUC ties
    reference = binary_metrics(labels, probs, 0.5)
    reference |= {"brier": brier_score(labels, probs), "ece": expected_calibration_error(labels, probs)}
    fast = _metric_vector(labels, probs.astype(np.float64), 0.5)
    np.testing.assert_allclose(fast, [reference[name] for name in INTERVAL_METRICS], rtol=1e-12)


def test_undefined_rates_are_nan_in_a_resample() -> None:
    values = _metric_vector(np.zeros(3, int), np.array([0.2, 0.6, 0.1]), 0.5)
    vector = dict(zip(INTERVAL_METRICS, values, strict=True))
    assert np.isnan(vector["sensitivity"]) and np.isnan(vector["auc"])
    assert vector["specificity"] == pytest.approx(2 / 3)
    assert vector["precision"] == 0.0


def _scored(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.6).astype(int)
    return labels, np.clip(rng.normal(0.3 + 0.4 * labels, 0.2), 0, 1)


def test_the_patient_is_the_resampling_unit() -> None:
    # Every patient has four identical images: resampling patients must give exactly the intervals of the
    # image bootstrap of one image per patient, and treating images as independent must be too narrow.
    labels, probs = _scored(150, seed=1)
    once = cluster_bootstrap(labels, probs, np.arange(150), 0.5, n_resamples=300)
    groups = np.repeat(np.arange(150), 4)
    by_patient = cluster_bootstrap(labels[groups], probs[groups], groups, 0.5, n_resamples=300)
    by_image = cluster_bootstrap(labels[groups], probs[groups], np.arange(600), 0.5, n_resamples=300)
    for name in INTERVAL_METRICS:
        assert by_patient[name] == pytest.approx(once[name], abs=1e-12), name
    for name in ("accuracy", "sensitivity", "auc"):
        width = by_patient[name][1] - by_patient[name][0]
        assert by_image[name][1] - by_image[name][0] < 0.7 * width, name  # about 1/2 (= 1/sqrt(4))


def test_groups_may_be_strings_and_rows_in_any_order() -> None:
    # Same patients under names that sort like the numbers, rows shuffled: the very same intervals.
    labels, probs = _scored(80, seed=2)
    groups = np.repeat(np.arange(40), 2)
    shuffle = np.random.default_rng(0).permutation(80)
    names = np.array([f"patient{g:03d}" for g in groups])[shuffle]
    expected = cluster_bootstrap(labels, probs, groups, 0.5, n_resamples=200)
    got = cluster_bootstrap(labels[shuffle], probs[shuffle], names, 0.5, n_resamples=200)
    for name in INTERVAL_METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


def test_image_bootstrap_of_accuracy_agrees_with_wilson() -> None:
    labels, probs = _scored(600, seed=3)
    point = binary_metrics(labels, probs, 0.5)
    correct = point["tp"] + point["tn"]
    intervals = cluster_bootstrap(labels, probs, np.arange(600), 0.5, n_resamples=2000)
    assert intervals["accuracy"] == pytest.approx(wilson_interval(correct, 600), abs=0.01)
    point |= {"brier": brier_score(labels, probs), "ece": expected_calibration_error(labels, probs)}
    for name in INTERVAL_METRICS:
        low, high = intervals[name]
        assert low <= point[name] <= high, name


def test_a_degenerate_metric_falls_back_to_percentile() -> None:
    # Every positive scores 0.9, above the threshold: sensitivity is 1.0 in every resample, BCa is 0 / 0.
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(30, int), np.zeros(30, int)]
    probs = np.r_[np.full(30, 0.9), rng.random(30) * 0.8]
    intervals = cluster_bootstrap(labels, probs, np.arange(60), 0.5, n_resamples=300)
    assert intervals["sensitivity"] == (1.0, 1.0)
    assert all(np.isfinite(intervals[name]).all() for name in INTERVAL_METRICS)


def test_resamples_missing_a_class_are_left_out() -> None:
    # One positive patient of twelve: about a third of resamples have no positive at all.
    labels = np.r_[1, 1, np.zeros(22, int)]
    probs = np.r_[0.7, 0.4, np.linspace(0.05, 0.6, 22)]
    groups = np.repeat(np.arange(12), 2)
    intervals = cluster_bootstrap(labels, probs, groups, 0.5, n_resamples=300)
    for name in ("sensitivity", "auc"):
        low, high = intervals[name]
        assert 0.0 <= low <= high <= 1.0, name
    assert intervals["sensitivity"] == (0.5, 0.5)  # the one positive patient always has 1 of 2 found


def test_lengths_must_match() -> None:
    with pytest.raises(ValueError):
        cluster_bootstrap(np.zeros(3), np.zeros(3), np.zeros(2), 0.5)


def test_a_thousand_resamples_of_a_test_set_take_seconds() -> None:
    rng = np.random.default_rng(5)
    groups = np.r_[np.arange(400), rng.integers(0, 400, 224)]  # 624 images, 400 patients
    labels = (groups % 8 < 5).astype(int)
    probs = np.clip(rng.normal(0.3 + 0.45 * labels, 0.2), 0, 1)
    start = time.perf_counter()
    intervals = cluster_bootstrap(labels, probs, groups, 0.5, n_resamples=1000)
    assert time.perf_counter() - start < 10.0  # measured 0.17-0.21 s on a busy 2-core machine
    assert all(np.isfinite(intervals[name]).all() for name in INTERVAL_METRICS)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_is_scipys_wilson_interval(confidence: float) -> None:
    from scipy.stats import binomtest

    for trials in (1, 2, 7, 40, 1000):
        for successes in sorted({0, 1, trials // 3, trials - 1, trials}):
            ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
            assert wilson_interval(successes, trials, confidence) == pytest.approx(
                (ci.low, ci.high), abs=1e-12
            )
