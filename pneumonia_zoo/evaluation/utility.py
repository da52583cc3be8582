"""Clinical utility of a model on a data set: PPV and NPV at a prevalence (the data's own, or where the
model will be used) at its operating point, and the decision curve."""

from dataclasses import dataclass

import numpy as np

from pneumonia_zoo.evaluation.predict import Predictions
from pneumonia_zoo.stats.utility import DecisionCurve, decision_curve, predictive_values


@dataclass(frozen=True)
class ClinicalUtility:
    prevalence: float
    prevalence_source: str  # "data" (the evaluated set's own) or "given"
    operating_point: str
    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    curve: DecisionCurve

    def to_dict(self) -> dict:
        return {
            "prevalence": self.prevalence,
            "prevalence_source": self.prevalence_source,
            "operating_point": self.operating_point,
            "threshold": self.threshold,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
            "decision_curve": self.curve.to_dict(),
        }

    def lines(self) -> list[str]:
        return [
            f"at prevalence {self.prevalence:.3f} ({self.prevalence_source}), {self.operating_point} point: "
            f"PPV {self.ppv:.3f}, NPV {self.npv:.3f}"
        ]

    def flat_metrics(self, context: str) -> dict[str, float]:
        flat = {f"{context}_ppv": self.ppv, f"{context}_npv": self.npv}
        flat[f"{context}_utility_prevalence"] = self.prevalence
        return {k: float(v) for k, v in flat.items() if np.isfinite(v)}


def clinical_utility(
    predictions: Predictions, threshold: float, operating_point: str, prevalence: float | None = None
) -> ClinicalUtility | None:
    """None when the data lack a class (no sensitivity or specificity to build on)."""
    labels, probs = predictions.labels, predictions.probs
    if len(np.unique(labels)) < 2:
        return None
    source = "data" if prevalence is None else "given"
    used = float(labels.mean()) if prevalence is None else float(prevalence)
    predicted = probs >= threshold
    sensitivity = float(predicted[labels == 1].mean())
    specificity = float((~predicted[labels == 0]).mean())
    ppv, npv = predictive_values(sensitivity, specificity, used)
    curve = decision_curve(labels, probs, prevalence=used)
    return ClinicalUtility(
        used, source, operating_point, threshold, sensitivity, specificity, ppv, npv, curve
    )
