"""Two packages' predictions on the same images, compared in pairs: ΔAUC with a paired patient-cluster
bootstrap (the primary figure), DeLong for reference, McNemar at the two models' own operating points, and
ΔBrier (the champion rule's score) with the same bootstrap."""

from dataclasses import dataclass

import numpy as np

from pneumonia_zoo.evaluation.predict import Predictions
from pneumonia_zoo.stats.paired import (
    DeLongResult,
    McNemarResult,
    PairedBootstrap,
    delong_paired,
    mcnemar_exact,
    paired_auc_bootstrap,
    paired_brier_bootstrap,
)


@dataclass(frozen=True)
class PairedComparison:
    model: str  # what is judged (URI or name)
    against: str  # the reference it is judged against
    images: int
    patients: int
    threshold: float  # the model's own operating point
    threshold_against: float
    bootstrap: PairedBootstrap  # ΔAUC
    delong: DeLongResult
    mcnemar: McNemarResult
    brier: PairedBootstrap  # ΔBrier: negative when the model is better

    @property
    def delta_auc(self) -> float:
        return self.bootstrap.delta

    @property
    def delta_auc_ci(self) -> tuple[float, float]:
        return self.bootstrap.ci

    def to_dict(self) -> dict:
        """The `paired` block of `evaluate --json`: ΔAUC = AUC(model) - AUC(against); `brier` the same for
        the Brier score."""
        return {
            "model": self.model,
            "against": self.against,
            "images": self.images,
            "patients": self.patients,
            "auc": self.bootstrap.value_a,
            "auc_against": self.bootstrap.value_b,
            "delta_auc": self.bootstrap.delta,
            "delta_auc_ci": list(self.bootstrap.ci),
            "p_value": self.bootstrap.p_value,
            "method": self.bootstrap.method,
            "valid_resamples": self.bootstrap.valid_resamples,
            "delong": self.delong.to_dict() | {"method": "DeLong (images independent; for reference)"},
            "mcnemar": self.mcnemar.to_dict()
            | {"threshold": self.threshold, "threshold_against": self.threshold_against},
            "brier": {"brier": self.brier.value_a, "brier_against": self.brier.value_b}
            | self.brier.to_dict(),
        }

    def lines(self) -> list[str]:
        low, high = self.bootstrap.ci
        mcnemar, brier = self.mcnemar, self.brier
        return [
            f"against {self.against}: AUC {self.bootstrap.value_a:.3f} vs {self.bootstrap.value_b:.3f}, "
            f"ΔAUC {self.bootstrap.delta:+.3f} [{low:+.3f}, {high:+.3f}], p {self.bootstrap.p_value:.3g} "
            f"({self.bootstrap.method})",
            f"  DeLong p {self.delong.p_value:.3g} (images independent); McNemar p {mcnemar.p_value:.3g} "
            f"({mcnemar.only_a_correct} images only this model gets right, "
            f"{mcnemar.only_b_correct} only the other)",
            f"  Brier {brier.value_a:.4f} vs {brier.value_b:.4f}, ΔBrier {brier.delta:+.4f} "
            f"[{brier.ci[0]:+.4f}, {brier.ci[1]:+.4f}], p {brier.p_value:.3g} (the same bootstrap)",
        ]

    def flat_metrics(self, context: str) -> dict[str, float]:
        prefix = f"{context}_paired"
        flat = {
            f"{prefix}_delta_auc": self.bootstrap.delta,
            f"{prefix}_delta_auc_ci_low": self.bootstrap.ci[0],
            f"{prefix}_delta_auc_ci_high": self.bootstrap.ci[1],
            f"{prefix}_p_value": self.bootstrap.p_value,
            f"{prefix}_auc_against": self.bootstrap.value_b,
            f"{prefix}_delong_p_value": self.delong.p_value,
            f"{prefix}_mcnemar_p_value": self.mcnemar.p_value,
            f"{prefix}_delta_brier": self.brier.delta,
            f"{prefix}_delta_brier_ci_low": self.brier.ci[0],
            f"{prefix}_delta_brier_ci_high": self.brier.ci[1],
            f"{prefix}_brier_p_value": self.brier.p_value,
        }
        return {k: float(v) for k, v in flat.items() if np.isfinite(v)}


def compare_predictions(
    predictions: Predictions,
    reference: Predictions,
    threshold: float,
    threshold_against: float,
    model: str,
    against: str,
    bootstrap: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Pair two sets of predictions of the SAME images (same files, same order, same labels)."""
    if predictions.files != reference.files or not np.array_equal(predictions.labels, reference.labels):
        raise ValueError("a paired comparison needs both models' predictions on the same images")
    labels, groups = predictions.labels, predictions.groups
    probs, probs_against = predictions.probs, reference.probs
    return PairedComparison(
        model=model,
        against=against,
        images=len(labels),
        patients=len(set(groups.tolist())),
        threshold=threshold,
        threshold_against=threshold_against,
        bootstrap=paired_auc_bootstrap(labels, probs, probs_against, groups, bootstrap, seed=seed),
        delong=delong_paired(labels, probs, probs_against),
        mcnemar=mcnemar_exact(labels, probs >= threshold, probs_against >= threshold_against),
        brier=paired_brier_bootstrap(labels, probs, probs_against, groups, bootstrap, seed=seed),
    )
