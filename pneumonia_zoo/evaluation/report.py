"""The evaluation of one set of predictions: metrics at every operating point, patient-level
intervals, calibration and the out-of-population flag rate, flat for MLflow and whole for JSON."""

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import classification_report

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.evaluation.predict import Predictions
from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.stats.calibration import brier_score, expected_calibration_error, reliability_bins
from pneumonia_zoo.stats.classification import binary_metrics
from pneumonia_zoo.stats.intervals import cluster_bootstrap, wilson_rates

COUNTS = ("tn", "fp", "fn", "tp")


@dataclass
class Evaluation:
    name: str  # the split or context: val, test, external, ...
    predictions: Predictions
    operating_point: str
    threshold: float
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]]  # cluster (patient) bootstrap, BCa where it applies
    wilson: dict[str, tuple[float, float]]
    calibration: dict[str, float]  # ece, brier
    reliability: list[dict[str, float]]
    flag_rate: float
    by_operating_point: dict[str, dict[str, float]] = field(default_factory=dict)
    bootstrap: int = 0

    @property
    def images(self) -> int:
        return len(self.predictions.labels)

    @property
    def patients(self) -> int:
        return len(set(self.predictions.groups.tolist()))

    def flat_metrics(self) -> dict[str, float]:
        """`<name>_<metric>` (+ `_ci_low/_ci_high`), `<name>/<point>/<metric>`, as logged to MLflow."""
        prefix = self.name
        flat = {f"{prefix}_{k}": float(v) for k, v in self.metrics.items()}
        flat |= {f"{prefix}_{k}": float(v) for k, v in self.calibration.items()}
        flat[f"{prefix}_flag_rate"] = self.flag_rate
        flat[f"{prefix}_images"] = float(self.images)
        flat[f"{prefix}_patients"] = float(self.patients)
        for key, (low, high) in self.intervals.items():
            flat[f"{prefix}_{key}_ci_low"], flat[f"{prefix}_{key}_ci_high"] = low, high
        for key, (low, high) in self.wilson.items():
            flat[f"{prefix}_{key}_wilson_low"], flat[f"{prefix}_{key}_wilson_high"] = low, high
        for point, values in self.by_operating_point.items():
            flat |= {f"{prefix}/{point}/{k}": float(v) for k, v in values.items() if k not in COUNTS}
        return {k: v for k, v in flat.items() if np.isfinite(v)}

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "patients": self.patients,
            "operating_point": {"name": self.operating_point, "threshold": self.threshold},
            "metrics": self.metrics,
            "ci95": {k: list(v) for k, v in self.intervals.items()},
            "ci95_method": f"cluster bootstrap over patients, BCa ({self.bootstrap} resamples)",
            "wilson95": {k: list(v) for k, v in self.wilson.items()},
            "calibration": self.calibration | {"bins": 15},
            "out_of_population": {
                "flag_rate": self.flag_rate,
                "flagged": int(self.predictions.ood_flags.sum()),
            },
            "operating_points": self.by_operating_point,
        }

    def report(self) -> str:
        predicted = (self.predictions.probs >= self.threshold).astype(int)
        return classification_report(
            self.predictions.labels,
            predicted,
            labels=[0, 1],
            target_names=list(CLASS_NAMES),
            digits=4,
            zero_division=0,
        )


def evaluate(
    name: str,
    predictions: Predictions,
    config: PackageConfig,
    bootstrap: int = 1000,
    operating_point: str | None = None,
) -> Evaluation:
    point = config.operating_point(operating_point)
    labels, probs = predictions.labels, predictions.probs
    metrics = binary_metrics(labels, probs, point.threshold)
    # A one-class set (an external set of pneumonias, say) has no specificity, not a specificity of 0.
    if not (labels == 0).any():
        metrics["specificity"] = float("nan")
    if not (labels == 1).any():
        metrics["sensitivity"] = float("nan")
    intervals = (
        cluster_bootstrap(labels, probs, predictions.groups, point.threshold, n_resamples=bootstrap)
        if bootstrap and len(labels)
        else {}
    )
    by_point = {
        other: binary_metrics(labels, probs, p.threshold) for other, p in config.operating_points.items()
    }
    return Evaluation(
        name=name,
        predictions=predictions,
        operating_point=point.name,
        threshold=point.threshold,
        metrics=metrics,
        intervals=intervals,
        wilson=wilson_rates(labels, probs, point.threshold),
        calibration={"ece": expected_calibration_error(labels, probs), "brier": brier_score(labels, probs)},
        reliability=reliability_bins(labels, probs),
        flag_rate=float(predictions.ood_flags.mean()) if len(labels) else float("nan"),
        by_operating_point=by_point,
        bootstrap=bootstrap,
    )
