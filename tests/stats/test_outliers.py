import numpy as np
import pytest
from scipy.stats import chi2

from pneumonia_zoo.stats.outliers import GaussianGuard, fit_gaussian_guard


def test_score_by_hand_in_two_dimensions() -> None:
    # Covariance diag(4, 1), so precision diag(1/4, 1). Point (2, 1): to mean (0, 0) the squared distance
    # is 4/4 + 1 = 2; to mean (10, 0) it is 64/4 + 1 = 17. The score is the nearer one, sqrt 2.
    guard = GaussianGuard(
        means=np.array([[0.0, 0.0], [10.0, 0.0]], dtype=np.float32),
        precision=np.diag([0.25, 1.0]).astype(np.float32),
        threshold=1.5,
        quantile=0.98,
    )
    points = np.array([[2.0, 1.0], [9.0, 0.0], [5.0, 3.0]])
    # (9, 0): 1/4 to the second mean -> 0.5. (5, 3): 25/4 + 9 to either mean -> sqrt(15.25).
    np.testing.assert_allclose(guard.score(points), [np.sqrt(2), 0.5, np.sqrt(15.25)], rtol=1e-6)
    np.testing.assert_array_equal(guard.flag(points), [False, False, True])


def test_correlated_covariance_by_hand() -> None:
    # Covariance [[2, 1], [1, 2]] has inverse [[2, -1], [-1, 2]] / 3; for x = (1, 1): (2 - 1 - 1 + 2) / 3.
    precision = np.linalg.inv(np.array([[2.0, 1.0], [1.0, 2.0]])).astype(np.float32)
    guard = GaussianGuard(np.zeros((1, 2), np.float32), precision, threshold=1.0, quantile=0.98)
    assert guard.score(np.array([[1.0, 1.0]]))[0] == pytest.approx(np.sqrt(2 / 3), rel=1e-6)


def _gaussian(n: int, means: np.ndarray, covariance: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(means), n)
    return means[labels] + rng.multivariate_normal(np.zeros(len(covariance)), covariance, n), labels


D = 8
MEANS = np.stack([np.zeros(D), np.r_[6.0, np.zeros(D - 1)]])
COVARIANCE = 0.5 * np.eye(D) + 0.5  # unit variances, correlation 0.5


def test_fit_on_gaussian_classes() -> None:
    train, labels = _gaussian(20000, MEANS, COVARIANCE, seed=0)
    val, _ = _gaussian(5000, MEANS, COVARIANCE, seed=1)
    guard = fit_gaussian_guard(train, labels, val)
    assert guard.means.dtype == np.float32 and guard.means.shape == (2, D)
    assert guard.precision.dtype == np.float32 and guard.precision.shape == (D, D)
    np.testing.assert_allclose(guard.means, MEANS, atol=0.05)
    np.testing.assert_allclose(guard.precision, np.linalg.inv(COVARIANCE), atol=0.1)
    assert guard.quantile == pytest.approx(0.98)
    # The squared distance to the own class is chi-squared with D degrees of freedom.
    assert guard.threshold == pytest.approx(np.sqrt(chi2.ppf(0.98, D)), rel=0.05)
    assert guard.flag(val).mean() == pytest.approx(0.02, abs=0.002)  # set on these very images
    fresh, _ = _gaussian(10000, MEANS, COVARIANCE, seed=2)
    assert guard.flag(fresh).mean() == pytest.approx(0.02, abs=0.006)
    far = np.random.default_rng(3).normal(size=(100, D)) + 20.0
    assert guard.flag(far).all()


def test_flag_rate_and_shrinkage_are_parameters() -> None:
    train, labels = _gaussian(4000, MEANS, COVARIANCE, seed=4)
    val, _ = _gaussian(4000, MEANS, COVARIANCE, seed=5)
    guard = fit_gaussian_guard(train, labels, val, flag_rate=0.10, shrinkage="oas")
    assert guard.quantile == pytest.approx(0.90)
    assert guard.flag(val).mean() == pytest.approx(0.10, abs=0.002)
    with pytest.raises(ValueError):
        fit_gaussian_guard(train, labels, val, shrinkage="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        fit_gaussian_guard(train, labels, val, flag_rate=0.0)


def test_arrays_round_trip() -> None:
    train, labels = _gaussian(2000, MEANS, COVARIANCE, seed=6)
    guard = fit_gaussian_guard(train, labels, train[:500])
    arrays = guard.to_arrays()
    assert set(arrays) == {"means", "precision"}
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays.values())
    again = GaussianGuard.from_arrays(arrays, guard.threshold, guard.quantile)
    np.testing.assert_array_equal(again.score(train[:50]), guard.score(train[:50]))
    assert (again.threshold, again.quantile) == (guard.threshold, guard.quantile)
