"""The maths of an out-of-population guard: Mahalanobis distances of feature vectors to the training classes.

A classifier answers NORMAL or PNEUMONIA for any image, including a hand or a blank frame; a feature
vector far from every training class (Lee et al. 2018, class-conditional Gaussians with one shared
covariance) is the cheap signal that the answer should not be trusted. One Gaussian model per *part* of
the feature vector (the penultimate features; the channel statistics of an intermediate layer, which see
how an image looks rather than what it shows): an image is as unusual as its most unusual part, each
part's score taken relative to its own validation threshold.
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

Shrinkage = Literal["ledoit_wolf", "oas"]
_ESTIMATORS = ("ledoit_wolf", "oas")  # sklearn.covariance's, imported when fitting
MAX_DIMS = 1280  # wider parts are projected on their first PROJECTED_DIMS principal components
PROJECTED_DIMS = 512


@dataclass(frozen=True)
class Whitening:
    """A guard's quadratic form as one matrix product: (x - mu_c)^T P (x - mu_c) = sum_k s_k (z_k - m_ck)^2
    with z = (x - centre) W and m_c = (mu_c - centre) W, where P = W S W^T (projection folded into W).

    W is a Cholesky factor of P (every sign s_k = +1) or, for a precision that rounding to float16/32 left
    indefinite, scaled eigenvectors with the eigenvalues' signs: the same quadratic form in both cases.
    Centring on the mean of the class means keeps z small, so z - m_c loses no digits. Float64 throughout:
    the result matches the direct quadratic form in float64 to about 1e-15 relative.
    """

    centre: np.ndarray  # D float64
    matrix: np.ndarray  # D x K float64 (C-contiguous)
    class_points: np.ndarray  # C x K float64: the class means, whitened
    signs: np.ndarray | None  # K, +1 / -1; None when P is positive definite (all +1)

    @classmethod
    def of(cls, means: np.ndarray, precision: np.ndarray, projection: np.ndarray | None) -> "Whitening":
        precision = np.asarray(precision, dtype=np.float64)
        precision = (precision + precision.T) / 2  # the quadratic form sees only the symmetric part
        signs = None
        try:
            factor = np.linalg.cholesky(precision)  # P = L L^T: q = |L^T d|^2
        except np.linalg.LinAlgError:
            values, vectors = np.linalg.eigh(precision)
            factor, signs = vectors * np.sqrt(np.abs(values)), np.sign(values)
        if projection is not None:  # d projected first: d -> d A^T, so fold A^T into the factor
            factor = np.asarray(projection, dtype=np.float64).T @ factor
        means = np.asarray(means, dtype=np.float64)
        centre = means.mean(axis=0)
        return cls(centre, np.ascontiguousarray(factor), (means - centre) @ factor, signs)

    def squared_distances(self, features: np.ndarray) -> np.ndarray:
        """N x C squared Mahalanobis distances (negative only where P is indefinite)."""
        whitened = (np.asarray(features, dtype=np.float64) - self.centre) @ self.matrix
        differences = whitened[:, None, :] - self.class_points[None, :, :]
        squares = differences * differences
        if self.signs is not None:
            squares *= self.signs
        return squares.sum(axis=2)


@dataclass
class GaussianGuard:
    means: np.ndarray  # C x D float32, row c = mean feature of training class c (sorted label order)
    precision: np.ndarray  # K x K float32, inverse of the shared, shrunk within-class covariance
    threshold: float  # scores above this are flagged
    quantile: float  # the validation-score quantile `threshold` was set at, e.g. 0.98
    projection: np.ndarray | None = None  # K x D principal axes when D > MAX_DIMS (else K = D, no projection)

    @cached_property
    def whitening(self) -> Whitening:
        """Factored once (a Cholesky of 1280 x 1280 takes a few tens of ms), then every score is one
        product. Means, precision and projection are not changed after the first score."""
        return Whitening.of(self.means, self.precision, self.projection)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Per image, the Mahalanobis distance sqrt((x - mu_c)^T P (x - mu_c)) to the nearest class mean.

        Computed in float64 (see Whitening): the same numbers as the quadratic form in float64, one
        N x D by D x K product for a whole batch instead of one K x K product per class.
        """
        squared = self.whitening.squared_distances(np.atleast_2d(features))
        return np.sqrt(np.clip(squared.min(axis=1), 0.0, None))

    def flag(self, features: np.ndarray) -> np.ndarray:
        """True for images whose score exceeds the threshold (out of the training population)."""
        return self.score(features) > self.threshold

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The tensors to save (e.g. as safetensors); threshold and quantile go in model.json."""
        arrays = {
            f"{prefix}means": np.ascontiguousarray(self.means, dtype=np.float32),
            f"{prefix}precision": np.ascontiguousarray(self.precision, dtype=np.float32),
        }
        if self.projection is not None:
            arrays[f"{prefix}projection"] = np.ascontiguousarray(self.projection, dtype=np.float32)
        return arrays

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], threshold: float, quantile: float, prefix: str = ""
    ) -> "GaussianGuard":
        """The inverse of `to_arrays`."""
        projection = arrays.get(f"{prefix}projection")
        return cls(
            means=np.asarray(arrays[f"{prefix}means"], dtype=np.float32),
            precision=np.asarray(arrays[f"{prefix}precision"], dtype=np.float32),
            threshold=float(threshold),
            quantile=float(quantile),
            projection=None if projection is None else np.asarray(projection, dtype=np.float32),
        )


def fit_gaussian_guard(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    flag_rate: float = 0.02,
    shrinkage: Shrinkage = "ledoit_wolf",
) -> GaussianGuard:
    """Class means and one shared covariance from training features; threshold from validation.

    The covariance is estimated on class-centred training features with Ledoit-Wolf (or OAS) shrinkage,
    because with ~1000-dimensional features and a few thousand images the sample covariance is
    ill-conditioned and its inverse would be dominated by noise. Features wider than MAX_DIMS are first
    projected on their leading principal components (a 4096 x 4096 precision matrix would weigh 64 MB).
    The threshold is the (1 - flag_rate) quantile of the validation scores, images the training fit
    never saw, so about flag_rate of in-population images are flagged.
    """
    if not 0 < flag_rate < 1:
        raise ValueError(f"flag_rate must lie in (0, 1), got {flag_rate}")
    if shrinkage not in _ESTIMATORS:
        raise ValueError(f"shrinkage must be one of {sorted(_ESTIMATORS)}, got {shrinkage!r}")
    from sklearn.covariance import OAS, LedoitWolf

    features = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    classes, codes = np.unique(labels, return_inverse=True)
    means = np.stack([features[codes == c].mean(axis=0) for c in range(len(classes))])
    centred = features - means[codes]
    projection = None
    if centred.shape[1] > MAX_DIMS:
        _, _, axes = np.linalg.svd(centred - centred.mean(axis=0), full_matrices=False)
        projection = axes[:PROJECTED_DIMS]
        centred = centred @ projection.T
    estimator_class = LedoitWolf if shrinkage == "ledoit_wolf" else OAS
    estimator = estimator_class(assume_centered=True, store_precision=False).fit(centred)
    # The shrunk covariance is positive definite (shrinkage > 0): an LU inverse is exact to rounding and
    # 10-20x faster than sklearn's eigendecomposition (pinvh) at 1280 dimensions.
    precision = np.linalg.inv(estimator.covariance_)
    guard = GaussianGuard(
        means=means.astype(np.float32),
        precision=precision.astype(np.float32),
        threshold=float("nan"),
        quantile=1.0 - flag_rate,
        projection=None if projection is None else projection.astype(np.float32),
    )
    guard.threshold = float(np.quantile(guard.score(val_features), guard.quantile))
    return guard


@dataclass
class PartGuard:
    """Gaussian guards over consecutive slices of one feature vector, combined by their largest ratio."""

    parts: list[GaussianGuard]
    dims: list[int]  # width of each part, in order
    threshold: float  # on the largest part ratio (score / part threshold), chosen on validation
    quantile: float
    names: list[str] = field(default_factory=list)

    def ratios(self, features: np.ndarray) -> np.ndarray:
        """N x parts: each part's score over its own threshold."""
        features = np.atleast_2d(features)
        bounds = np.cumsum([0, *self.dims])
        if features.shape[1] != bounds[-1]:
            raise ValueError(f"expected {bounds[-1]} features, got {features.shape[1]}")
        return np.stack(
            [
                part.score(features[:, a:b]) / part.threshold
                for part, a, b in zip(self.parts, bounds[:-1], bounds[1:], strict=True)
            ],
            axis=1,
        )

    def score(self, features: np.ndarray) -> np.ndarray:
        return self.ratios(features).max(axis=1)

    def flag(self, features: np.ndarray) -> np.ndarray:
        return self.score(features) > self.threshold

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        for index, part in enumerate(self.parts):
            arrays |= part.to_arrays(prefix=f"part{index}.")
        return arrays

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        dims: list[int],
        part_thresholds: list[float],
        threshold: float,
        quantile: float,
        names: list[str],
    ) -> "PartGuard":
        parts = [
            GaussianGuard.from_arrays(arrays, part_threshold, quantile, prefix=f"part{index}.")
            for index, part_threshold in enumerate(part_thresholds)
        ]
        return cls(parts, list(dims), float(threshold), float(quantile), list(names))


def fit_part_guard(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    dims: list[int],
    names: list[str],
    flag_rate: float = 0.02,
) -> PartGuard:
    """One Gaussian guard per slice, then the combined threshold: about `flag_rate` of validation flagged."""
    bounds = np.cumsum([0, *dims])
    parts = [
        fit_gaussian_guard(train_features[:, a:b], train_labels, val_features[:, a:b], flag_rate)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    guard = PartGuard(parts, list(dims), float("nan"), 1.0 - flag_rate, list(names))
    guard.threshold = float(np.quantile(guard.score(val_features), guard.quantile))
    return guard
