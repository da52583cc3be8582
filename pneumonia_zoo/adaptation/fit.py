"""Everything a site-adapted package holds, fitted on the site's FIT images only.

- The linear head learns from all of FIT, its C chosen by patient-grouped cross-validation.
- The temperature and the operating points are fitted on that cross-validation's out-of-fold
  predictions: every FIT image scored by a fold head that never learnt from its patient (cross-fitted
  calibration, as scikit-learn's CalibratedClassifierCV does). Measured on external_nih_site (5
  patient-grouped seeds, ~200 FIT images, benchmarks/adapt.py): AUC 0.879 against 0.853 for a head that
  learnt from 70% of FIT with the other 30% kept for calibration; calibration from ~200 images, not ~60.
- The guard: its Gaussians from a patient-grouped part of FIT, its thresholds from the other part, so
  that about `flag_rate` of unseen site images are flagged.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.adaptation.features import SiteFeatures
from pneumonia_zoo.adaptation.head import LinearHead, fit_linear_head
from pneumonia_zoo.data.split import grouped_indices
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.calibration import apply_temperature, expected_calibration_error, fit_temperature
from pneumonia_zoo.stats.operating_points import OperatingPoint, choose_operating_points
from pneumonia_zoo.stats.outliers import PartGuard, fit_part_guard

FeatureSet = Literal["both", "penultimate"]
FEATURE_SETS: tuple[FeatureSet, ...] = ("both", "penultimate")
CALIBRATION_FRACTION = 0.3
FLAG_RATE = 0.02
MIN_PATIENTS_PER_PART = 2  # of each class, in each of the head and calibration parts


@dataclass(frozen=True)
class SiteModel:
    feature_set: FeatureSet
    head: LinearHead
    temperature: float
    operating_points: dict[str, OperatingPoint]
    prior: float  # PNEUMONIA share of FIT: the balanced point's reference
    guard: PartGuard
    flag_rate: float
    head_rows: np.ndarray  # indices into the FIT features: the guard's Gaussians
    calibration_rows: np.ndarray  # the guard's thresholds
    calibration: dict[str, float]  # out-of-fold AUC and ECE (after temperature); flag rate of the guard part

    def figures(self) -> dict[str, float]:
        """The numbers it was chosen by (logged, and kept in the package's metrics)."""
        return {
            "site_head_C": self.head.C,
            "site_head_cv_log_loss": self.head.cv_log_loss,
            "site_head_cv_auc": self.head.cv_auc,
            "site_head_cv_folds": float(self.head.folds),
            "site_temperature": self.temperature,
            "site_head_images": float(len(self.head.out_of_fold)),
            "site_calibration_images": float(len(self.head.out_of_fold)),
            "site_calibration_auc": self.calibration["auc"],
            "site_calibration_ece": self.calibration["ece"],
            "site_calibration_flag_rate": self.calibration["flag_rate"],
            "site_prior": self.prior,
        }


def feature_columns(features: SiteFeatures, feature_set: FeatureSet) -> np.ndarray:
    """The features the head reads: the penultimate part only, or both guard parts."""
    if feature_set == "penultimate":
        return features.features[:, : features.penultimate]
    return features.features


def _check_parts(labels: np.ndarray, groups: np.ndarray, rows: np.ndarray, part: str) -> None:
    for k, name in enumerate(CLASS_NAMES):
        patients = len(set(groups[rows][labels[rows] == k].tolist()))
        if patients < MIN_PATIENTS_PER_PART:
            raise InvalidInput(
                f"too few {name} patients to fit: the {part} part of FIT has {patients} "
                f"(at least {MIN_PATIENTS_PER_PART} needed); add images of more patients"
            )


def fit_site_model(
    features: SiteFeatures,
    feature_set: FeatureSet = "both",
    seed: int = 0,
    calibration_fraction: float = CALIBRATION_FRACTION,
    flag_rate: float = FLAG_RATE,
    float16_head: bool = False,
) -> SiteModel:
    """Head, temperature, operating points and guard from the site's FIT features.

    `float16_head`: the head will be stored in float16 (written into a float16 network): the
    temperature and thresholds are then fitted on the logits of the rounded head, which is what serves.
    """
    if feature_set not in FEATURE_SETS:
        raise InvalidInput(f"unknown feature set '{feature_set}': choose one of {', '.join(FEATURE_SETS)}")
    labels, groups = features.labels, features.groups
    for k, name in enumerate(CLASS_NAMES):
        patients = len(set(groups[labels == k].tolist()))
        if patients < 2 * MIN_PATIENTS_PER_PART:
            raise InvalidInput(
                f"too few {name} patients to fit: FIT has {patients}, at least {2 * MIN_PATIENTS_PER_PART} "
                "are needed (head and calibration parts are split by patient)"
            )
    head_rows, calibration_rows = grouped_indices(labels, groups, calibration_fraction, seed)
    _check_parts(labels, groups, head_rows, "head")
    _check_parts(labels, groups, calibration_rows, "calibration")
    columns = feature_columns(features, feature_set)
    head = fit_linear_head(columns, labels, groups, seed)
    if float16_head:
        head = head.as_float16()
    out_of_fold_logits = head.out_of_fold_logits()
    temperature = fit_temperature(out_of_fold_logits, labels)
    calibrated = apply_temperature(out_of_fold_logits, temperature)[:, 1]
    prior = float(labels.mean())
    points = choose_operating_points(labels, calibrated, prior=prior)
    guard = fit_part_guard(
        features.features[head_rows],
        labels[head_rows],
        features.features[calibration_rows],
        features.dims,
        features.names,
        flag_rate=flag_rate,
    )
    from sklearn.metrics import roc_auc_score

    calibration = {
        "auc": float(roc_auc_score(labels, calibrated)),
        "ece": expected_calibration_error(labels, calibrated),
        "flag_rate": float(guard.flag(features.features[calibration_rows]).mean()),
    }
    return SiteModel(
        feature_set,
        head,
        temperature,
        points,
        prior,
        guard,
        flag_rate,
        head_rows,
        calibration_rows,
        calibration,
    )
