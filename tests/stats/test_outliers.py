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


def test_a_part_guard_scores_each_part_against_its_own_threshold() -> None:
    from pneumonia_zoo.stats.outliers import fit_part_guard

    rng = np.random.default_rng(5)
    train = np.hstack([rng.normal(size=(400, 3)), rng.normal(size=(400, 2)) * 10])
    labels = np.arange(400) % 2
    val = np.hstack([rng.normal(size=(200, 3)), rng.normal(size=(200, 2)) * 10])
    guard = fit_part_guard(train, labels, val, dims=[3, 2], names=["a", "b"], flag_rate=0.05)
    ratios = guard.ratios(val)
    assert ratios.shape == (200, 2)
    for index, part in enumerate(guard.parts):  # each ratio is the part's own score over its threshold
        columns = slice(0, 3) if index == 0 else slice(3, 5)
        assert np.allclose(ratios[:, index], part.score(val[:, columns]) / part.threshold)
    assert abs(guard.flag(val).mean() - 0.05) <= 0.011  # the combined threshold flags the asked share
    odd_in_b_only = np.hstack([np.zeros((1, 3)), np.full((1, 2), 500.0)])
    assert (
        guard.flag(odd_in_b_only)[0]
        and guard.ratios(odd_in_b_only)[0, 0] < 1 < guard.ratios(odd_in_b_only)[0, 1]
    )


def test_wide_features_are_projected_and_still_flag_the_far_ones() -> None:
    from pneumonia_zoo.stats.outliers import MAX_DIMS, PROJECTED_DIMS, fit_gaussian_guard

    rng = np.random.default_rng(6)
    width = MAX_DIMS + 20
    train, val = rng.normal(size=(600, width)), rng.normal(size=(300, width))
    guard = fit_gaussian_guard(train, np.arange(600) % 2, val, flag_rate=0.02)
    assert guard.projection is not None and guard.projection.shape == (PROJECTED_DIMS, width)
    assert guard.precision.shape == (PROJECTED_DIMS, PROJECTED_DIMS)
    assert guard.flag(rng.normal(size=(20, width)) + 5).all()


def direct_score(guard: GaussianGuard, features: np.ndarray) -> np.ndarray:
    """The quadratic form class by class in float64, as the guard scored before its whitening."""
    features = np.atleast_2d(np.asarray(features, dtype=np.float64))
    precision = guard.precision.astype(np.float64)
    squared = []
    for mean in guard.means:
        centred = features - mean
        if guard.projection is not None:
            centred = centred @ guard.projection.astype(np.float64).T
        squared.append(((centred @ precision) * centred).sum(axis=1))
    return np.sqrt(np.clip(np.min(squared, axis=0), 0.0, None))


def test_the_whitened_score_equals_the_quadratic_form() -> None:
    train, labels = _gaussian(3000, MEANS * 40 + 100, COVARIANCE * 9, seed=7)  # large, offset features
    guard = fit_gaussian_guard(train, labels, train[:300])
    assert guard.whitening.signs is None  # positive definite: a Cholesky factor
    np.testing.assert_allclose(guard.score(train[:200]), direct_score(guard, train[:200]), rtol=1e-12)


def test_a_precision_that_rounding_left_indefinite_scores_as_before() -> None:
    # One negative eigenvalue (as float16 storage of a nearly singular precision could leave): the
    # eigenvector factor with signs gives the same quadratic form, clipped at 0 as before.
    rng = np.random.default_rng(8)
    axes, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    precision = (axes * np.array([3.0, 2.0, 1.0, 0.5, 0.1, -0.01])) @ axes.T
    guard = GaussianGuard(rng.normal(size=(2, 6)).astype(np.float32), precision.astype(np.float32), 1.0, 0.98)
    points = rng.normal(size=(500, 6))
    assert guard.whitening.signs is not None and (guard.whitening.signs < 0).sum() == 1
    np.testing.assert_allclose(guard.score(points), direct_score(guard, points), rtol=1e-9, atol=1e-12)


def test_a_projected_guard_folds_its_projection_into_one_product() -> None:
    from pneumonia_zoo.stats.outliers import MAX_DIMS

    rng = np.random.default_rng(9)
    width = MAX_DIMS + 8
    train = rng.normal(size=(700, width)) * rng.uniform(0.5, 3, width)
    guard = fit_gaussian_guard(train, np.arange(700) % 2, train[:100])
    assert guard.whitening.matrix.shape == (width, guard.precision.shape[0])
    points = rng.normal(size=(50, width))
    np.testing.assert_allclose(guard.score(points), direct_score(guard, points), rtol=1e-10)
