"""Figures for a run: curves, confusion matrix, ROC/PR, misclassified images."""

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay  # noqa: E402

from pneumonia_zoo import CLASS_NAMES  # noqa: E402
from pneumonia_zoo.training.evaluate import SplitEvaluation  # noqa: E402


def history_figure(history: list[dict[str, float]]) -> Figure:
    """Loss, accuracy and validation AUC per epoch."""
    epochs = [row["epoch"] + 1 for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        axes[0].plot(epochs, [row[key] for row in history], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        axes[1].plot(epochs, [row[key] for row in history], marker="o", label=label)
    axes[2].plot(epochs, [row["val_auc"] for row in history], marker="o", color="tab:green")
    for ax, title in zip(axes, ("loss", "accuracy (threshold 0.5)", "validation ROC AUC"), strict=True):
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    return fig


def lr_figure(history: list[dict[str, float]]) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([row["epoch"] + 1 for row in history], [row["lr"] for row in history], marker="o")
    ax.set(title="learning rate at epoch start", xlabel="epoch", ylabel="lr", yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_figure(evaluation: SplitEvaluation) -> Figure:
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    predicted = (evaluation.probs >= evaluation.threshold).astype(int)
    ConfusionMatrixDisplay.from_predictions(
        evaluation.labels, predicted, labels=[0, 1], display_labels=list(CLASS_NAMES), ax=ax, colorbar=False
    )
    ax.set_title(f"{evaluation.name} (threshold {evaluation.threshold:.3f})")
    fig.tight_layout()
    return fig


def roc_pr_figure(evaluation: SplitEvaluation) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    if len(np.unique(evaluation.labels)) == 2:
        RocCurveDisplay.from_predictions(
            evaluation.labels, evaluation.probs, ax=axes[0], name=evaluation.name
        )
        PrecisionRecallDisplay.from_predictions(
            evaluation.labels, evaluation.probs, ax=axes[1], name=evaluation.name
        )
    axes[0].set_title("ROC")
    axes[1].set_title("precision-recall (PNEUMONIA positive)")
    fig.tight_layout()
    return fig


def misclassified_figure(
    evaluation: SplitEvaluation, pixels: torch.Tensor, names: list[str], max_images: int = 24
) -> Figure:
    """A grid of the worst mistakes (most confident wrong answers) with their probabilities."""
    predicted = (evaluation.probs >= evaluation.threshold).astype(int)
    wrong = np.flatnonzero(predicted != evaluation.labels)
    confidence = np.abs(evaluation.probs[wrong] - evaluation.threshold)
    chosen = wrong[np.argsort(-confidence)][:max_images]
    columns = 6
    rows = max(1, int(np.ceil(len(chosen) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, chosen, strict=False):
        ax.imshow(pixels[index].permute(1, 2, 0).numpy())
        truth = CLASS_NAMES[evaluation.labels[index]]
        ax.set_title(f"{names[index][:22]}\ntrue {truth}, p={evaluation.probs[index]:.2f}", fontsize=7)
    fig.suptitle(f"misclassified {evaluation.name} images: {len(wrong)} of {len(evaluation.labels)}")
    fig.tight_layout()
    return fig
