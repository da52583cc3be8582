"""A linear head on frozen features: L2 logistic regression, its strength chosen by patient-grouped CV.

Features are standardised before fitting (the penultimate features and the channel statistics live on
very different scales, and one L2 penalty must treat them alike); the scaling is then folded into the
weights, so the head applies to raw features as one matrix product, in a package or in an ONNX graph.

C is chosen by the pooled out-of-fold log loss, a proper scoring rule: with ~150 images and ~1500
features the out-of-fold AUC is flat over two decades of C (measured on external_nih_site: the AUC-chosen C
jumped between 0.003 and 10 across seeds, and its heads needed temperatures up to 5), while the log loss
also penalises overconfidence and picks a stable, moderate C. The out-of-fold AUC is reported too.
"""

import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

C_GRID = tuple(float(c) for c in np.logspace(-4, 0, 9))
CV_FOLDS = 5
# liblinear penalises the intercept as a feature of this value: large enough to leave it nearly free.
INTERCEPT_SCALING = 10.0


@dataclass(frozen=True)
class LinearHead:
    """logits = features @ weight.T + bias, as a 2-class head: rows (NORMAL, PNEUMONIA) = (-z/2, +z/2),
    so softmax gives sigmoid(z) for the logistic regression's own z and both classes have a CAM."""

    weight: np.ndarray  # 2 x D, on raw features
    bias: np.ndarray  # 2
    C: float
    cv_log_loss: float  # pooled out-of-fold, at C
    cv_auc: float
    folds: int
    grid: dict[float, float]  # every C tried -> its out-of-fold log loss
    out_of_fold: np.ndarray  # P(PNEUMONIA) of every image at C, from a fold head that never saw its patient

    def out_of_fold_logits(self) -> np.ndarray:
        """The out-of-fold probabilities as this head's 2-class logits (-z/2, +z/2)."""
        p = np.clip(self.out_of_fold, 1e-7, 1 - 1e-7)
        z = np.log(p / (1 - p))
        return np.stack([-z / 2, z / 2], axis=1)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float64) @ self.weight.T + self.bias

    def as_float16(self) -> "LinearHead":
        """The head as float16 storage holds it (a network's head in a float16 package)."""
        return replace(
            self,
            weight=self.weight.astype(np.float16).astype(np.float64),
            bias=self.bias.astype(np.float16).astype(np.float64),
        )


def _pipeline(C: float) -> "Pipeline":
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, solver="liblinear", intercept_scaling=INTERCEPT_SCALING, max_iter=1000),
    )


def _out_of_fold(
    features: np.ndarray, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], C: float
) -> np.ndarray:
    probs = np.empty(len(labels))
    for train, test in folds:
        probs[test] = _pipeline(C).fit(features[train], labels[train]).predict_proba(features[test])[:, 1]
    return probs


def fit_linear_head(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    seed: int = 0,
    grid: tuple[float, ...] = C_GRID,
) -> LinearHead:
    """Choose C by grouped, stratified CV (no patient in a fold's training and test part), refit on all.

    Folds: CV_FOLDS, fewer when a class has fewer patients (at least 2; the caller checks that).
    Ties in log loss go to the smaller C (the stronger penalty).
    """
    from sklearn.metrics import log_loss, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    features, labels = np.asarray(features, np.float64), np.asarray(labels).astype(int)
    patients_per_class = min(len(set(groups[labels == k].tolist())) for k in (0, 1))
    n_folds = max(2, min(CV_FOLDS, patients_per_class))
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = list(splitter.split(features, labels, groups))
    scores: dict[float, float] = {}
    out_of_fold: dict[float, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence notes at the weakest penalties
        for C in grid:
            out_of_fold[C] = _out_of_fold(features, labels, folds, C)
            scores[C] = float(log_loss(labels, out_of_fold[C], labels=[0, 1]))
        best = min(grid, key=lambda C: (round(scores[C], 12), C))
        # Refit on all of FIT with the folds' balance of penalty to data (liblinear's C multiplies the sum
        # of losses, and a fold head saw (k-1)/k of the images): the final head is then as sharp as the
        # fold heads whose out-of-fold predictions calibrate it.
        fitted = _pipeline(best * (n_folds - 1) / n_folds).fit(features, labels)
    scaler, model = fitted[0], fitted[-1]
    # z = w . (x - mu) / sigma + b  =  (w / sigma) . x + (b - w . mu / sigma)
    slope = model.coef_[0] / scaler.scale_
    intercept = float(model.intercept_[0] - slope @ scaler.mean_)
    return LinearHead(
        weight=np.stack([-slope / 2, slope / 2]),
        bias=np.array([-intercept / 2, intercept / 2]),
        C=best,
        cv_log_loss=scores[best],
        cv_auc=float(roc_auc_score(labels, out_of_fold[best])),
        folds=n_folds,
        grid=scores,
        out_of_fold=out_of_fold[best],
    )
