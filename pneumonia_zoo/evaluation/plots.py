"""Figures of an evaluation: confusion matrix, ROC/PR, reliability diagram, the worst mistakes."""

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

from pneumonia_zoo import CLASS_NAMES  # noqa: E402
from pneumonia_zoo.evaluation.report import Evaluation  # noqa: E402
from pneumonia_zoo.stats.utility import DecisionCurve  # noqa: E402


def confusion_figure(evaluation: Evaluation) -> Figure:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    predicted = (evaluation.predictions.probs >= evaluation.threshold).astype(int)
    ConfusionMatrixDisplay.from_predictions(
        evaluation.predictions.labels,
        predicted,
        labels=[0, 1],
        display_labels=list(CLASS_NAMES),
        ax=ax,
        colorbar=False,
    )
    ax.set_title(f"{evaluation.name} ({evaluation.operating_point}, threshold {evaluation.threshold:.3f})")
    fig.tight_layout()
    return fig


def roc_pr_figure(evaluation: Evaluation) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    labels, probs = evaluation.predictions.labels, evaluation.predictions.probs
    if len(np.unique(labels)) == 2:
        RocCurveDisplay.from_predictions(labels, probs, ax=axes[0], name=evaluation.name)
        PrecisionRecallDisplay.from_predictions(labels, probs, ax=axes[1], name=evaluation.name)
    axes[0].set_title("ROC")
    axes[1].set_title("precision-recall (PNEUMONIA positive)")
    fig.tight_layout()
    return fig


def reliability_figure(evaluation: Evaluation) -> Figure:
    """Accuracy against confidence per bin (15 equal-width bins), with the bins' image counts."""
    bins = [b for b in evaluation.reliability if b["count"] > 0]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.8, 5.2), height_ratios=(3, 1), sharex=True)
    top.plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="perfect calibration")
    top.plot(
        [b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", label=evaluation.name
    )
    ece, brier = evaluation.calibration["ece"], evaluation.calibration["brier"]
    top.set(
        ylabel="accuracy", title=f"reliability: ECE {ece:.3f}, Brier {brier:.3f}", xlim=(0.5, 1), ylim=(0, 1)
    )
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [b["count"] for b in bins], width=1 / 15 * 0.9)
    bottom.set(xlabel="confidence (top-label probability)", ylabel="images")
    fig.tight_layout()
    return fig


def misclassified_figure(evaluation: Evaluation, pixels: np.ndarray, max_images: int = 24) -> Figure:
    """A grid of the worst mistakes (most confident wrong answers) with their probabilities."""
    labels, probs = evaluation.predictions.labels, evaluation.predictions.probs
    names = [path.rsplit("/", 1)[-1] for path in evaluation.predictions.files]
    predicted = (probs >= evaluation.threshold).astype(int)
    wrong = np.flatnonzero(predicted != labels)
    chosen = wrong[np.argsort(-np.abs(probs[wrong] - evaluation.threshold))][:max_images]
    columns = 6
    rows = max(1, int(np.ceil(len(chosen) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen, strict=False):
        ax.imshow(pixels[index, 0], cmap="gray", vmin=0, vmax=255)
        ax.set_title(
            f"{names[index][:22]}\ntrue {CLASS_NAMES[labels[index]]}, p={probs[index]:.2f}", fontsize=7
        )
    fig.suptitle(f"misclassified {evaluation.name} images: {len(wrong)} of {len(labels)}")
    fig.tight_layout()
    return fig


def decision_curve_figure(curves: dict[str, DecisionCurve], title: str) -> Figure:
    """Net benefit against threshold probability for each model, with treat-all and treat-none.

    The y-axis is cut a little below 0: treat-all falls steeply at high thresholds and would squash the
    curves that matter (Vickers & Elkin 2006 plot it the same way).
    """
    fig, ax = plt.subplots(figsize=(6, 4.5))
    first = next(iter(curves.values()))
    for name, curve in curves.items():
        ax.plot(curve.thresholds, curve.net_benefit, label=name)
    ax.plot(first.thresholds, first.treat_all, color="grey", linestyle="--", label="treat all")
    ax.plot(first.thresholds, first.treat_none, color="black", linewidth=0.8, label="treat none")
    top = max(float(np.nanmax(c.net_benefit)) for c in curves.values())
    ax.set(
        xlabel="threshold probability",
        ylabel="net benefit",
        title=f"{title} (prevalence {first.prevalence:.2f})",
        xlim=(0, 1),
        ylim=(-0.05, max(top, first.prevalence) * 1.1 + 0.01),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
