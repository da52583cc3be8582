"""Figures of a training run: loss, accuracy and AUC curves, the learning rate."""

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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
    ax.set(title="learning rate at epoch end", xlabel="epoch", ylabel="lr", yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
