"""Clinical utility: what a positive or negative answer is worth at a prevalence, and net benefit.

Sensitivity and specificity do not depend on how common pneumonia is; what a clinician needs, the chance
that a positive answer is right (PPV) and that a negative one is (NPV), does. Bayes' rule gives them from
sensitivity, specificity and the prevalence where the model is used. Decision curves (Vickers & Elkin
2006) weigh true against false positives at the odds a threshold probability implies: the net benefit of
acting on the model, against treating everyone or no one.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def _check_prevalence(prevalence: float) -> None:
    if not 0 < prevalence < 1:
        raise ValueError(f"prevalence must lie in (0, 1), got {prevalence}")


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """(PPV, NPV) at `prevalence` by Bayes' rule; nan where the answer is never given.

    PPV = se p / (se p + (1 - sp)(1 - p)),  NPV = sp (1 - p) / (sp (1 - p) + (1 - se) p).
    """
    _check_prevalence(prevalence)
    positive = sensitivity * prevalence + (1 - specificity) * (1 - prevalence)
    negative = specificity * (1 - prevalence) + (1 - sensitivity) * prevalence
    ppv = sensitivity * prevalence / positive if positive > 0 else float("nan")
    npv = specificity * (1 - prevalence) / negative if negative > 0 else float("nan")
    return float(ppv), float(npv)


@dataclass(frozen=True)
class DecisionCurve:
    thresholds: np.ndarray  # threshold probabilities p_t
    net_benefit: np.ndarray  # of acting when P(PNEUMONIA) >= p_t
    treat_all: np.ndarray  # of acting on everyone
    prevalence: float

    @property
    def treat_none(self) -> np.ndarray:
        return np.zeros_like(self.thresholds)

    def to_dict(self) -> dict:
        return {
            "prevalence": self.prevalence,
            "thresholds": self.thresholds.tolist(),
            "net_benefit": self.net_benefit.tolist(),
            "treat_all": self.treat_all.tolist(),
            "treat_none": self.treat_none.tolist(),
        }


def decision_curve(
    labels: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray | None = None,
    prevalence: float | None = None,
) -> DecisionCurve:
    """Net benefit se(p_t) p - (1 - sp(p_t)) (1 - p) p_t / (1 - p_t) at every threshold p_t.

    With `prevalence` None, p is the data's own and this is the familiar TP/n - FP/n * p_t / (1 - p_t);
    a given prevalence reweighs the same sensitivity and specificity to where the model will be used.
    Treat-all: p - (1 - p) p_t / (1 - p_t); treat-none: 0.
    """
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if len(labels) != len(probs):
        raise ValueError(f"labels and probs differ in length: {len(labels)} and {len(probs)}")
    if not ((thresholds > 0) & (thresholds < 1)).all():
        raise ValueError("threshold probabilities must lie in (0, 1)")
    positives, negatives = probs[labels == 1], probs[labels == 0]
    if not len(positives) or not len(negatives):
        raise ValueError("a decision curve needs both classes")
    if prevalence is None:
        prevalence = len(positives) / len(labels)
    _check_prevalence(prevalence)
    sensitivity = (positives[None, :] >= thresholds[:, None]).mean(axis=1)
    false_positive_rate = (negatives[None, :] >= thresholds[:, None]).mean(axis=1)
    odds = thresholds / (1 - thresholds)
    net_benefit = sensitivity * prevalence - false_positive_rate * (1 - prevalence) * odds
    treat_all = prevalence - (1 - prevalence) * odds
    return DecisionCurve(thresholds, net_benefit, treat_all, float(prevalence))
