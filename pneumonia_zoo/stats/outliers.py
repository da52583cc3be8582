"""The maths of an out-of-population guard: Mahalanobis distance of feature vectors to the training classes.

A classifier answers NORMAL or PNEUMONIA for any image, including a hand or a blank frame; a feature
vector far from every training class (Lee et al. 2018, class-conditional Gaussians with one shared
covariance) is the cheap signal that the answer should not be trusted.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

Shrinkage = Literal["ledoit_wolf", "oas"]
_ESTIMATORS = ("ledoit_wolf", "oas")  # sklearn.covariance's, imported when fitting


@dataclass
class GaussianGuard:
    means: np.ndarray  # C x D float32, row c = mean feature of training class c (sorted label order)
    precision: np.ndarray  # D x D float32, inverse of the shared, shrunk within-class covariance
    threshold: float  # scores above this are flagged
    quantile: float  # the validation-score quantile `threshold` was set at, e.g. 0.98

    def score(self, features: np.ndarray) -> np.ndarray:
        """Per image, the Mahalanobis distance sqrt((x - mu_c)^T P (x - mu_c)) to the nearest class mean.

        Computed in float64: the quadratic form of large, nearly collinear features loses digits in float32.
        """
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        precision = self.precision.astype(np.float64)
        squared = np.stack(
            [(((features - mean) @ precision) * (features - mean)).sum(axis=1) for mean in self.means]
        )
        return np.sqrt(np.clip(squared.min(axis=0), 0.0, None))

    def flag(self, features: np.ndarray) -> np.ndarray:
        """True for images whose score exceeds the threshold (out of the training population)."""
        return self.score(features) > self.threshold

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The tensors to save (e.g. as safetensors); threshold and quantile go in its metadata."""
        return {
            "means": np.ascontiguousarray(self.means, dtype=np.float32),
            "precision": np.ascontiguousarray(self.precision, dtype=np.float32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], threshold: float, quantile: float) -> "GaussianGuard":
        """The inverse of `to_arrays`."""
        return cls(
            means=np.asarray(arrays["means"], dtype=np.float32),
            precision=np.asarray(arrays["precision"], dtype=np.float32),
            threshold=float(threshold),
            quantile=float(quantile),
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
    ill-conditioned and its inverse would be dominated by noise. The threshold is the (1 - flag_rate)
    quantile of the validation scores, images the training fit never saw, so about flag_rate of
    in-population images are flagged.
    """
    if not 0 < flag_rate < 1:
        raise ValueError(f"flag_rate must lie in (0, 1), got {flag_rate}")
    if shrinkage not in _ESTIMATORS:
        raise ValueError(f"shrinkage must be one of {sorted(_ESTIMATORS)}, got {shrinkage!r}")
    features = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    classes, codes = np.unique(labels, return_inverse=True)
    means = np.stack([features[codes == c].mean(axis=0) for c in range(len(classes))])
    from sklearn.covariance import OAS, LedoitWolf

    estimator_class = LedoitWolf if shrinkage == "ledoit_wolf" else OAS
    estimator = estimator_class(assume_centered=True).fit(features - means[codes])
    guard = GaussianGuard(
        means=means.astype(np.float32),
        precision=estimator.precision_.astype(np.float32),
        threshold=float("nan"),
        quantile=1.0 - flag_rate,
    )
    guard.threshold = float(np.quantile(guard.score(val_features), guard.quantile))
    return guard
