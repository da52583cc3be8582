"""Figures of a training run: loss, accuracy and AUC curves, the learning rate."""

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def history_figure(
    history: list[dict[str, float]], averaged: dict[str, float] | None = None, averaging_epochs: int = 0
) -> Figure:
    """Loss, accuracy and validation AUC per epoch. With weight averaging (--swa-epochs) its epochs, the
    last `averaging_epochs` of `history`, are shaded and the average's validation figures (`averaged`)
    drawn as stars after them: the average is what the run keeps."""
    epochs = [row["epoch"] + 1 for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        axes[0].plot(epochs, [row[key] for row in history], marker="o", label=label)
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation")):
        axes[1].plot(epochs, [row[key] for row in history], marker="o", label=label)
    axes[2].plot(epochs, [row["val_auc"] for row in history], marker="o", color="tab:green")
    for ax, key in zip(axes, ("val_loss", "val_accuracy", "val_auc"), strict=True):
        if averaging_epochs:
            ax.axvspan(epochs[-averaging_epochs] - 0.5, epochs[-1] + 0.5, color="0.9", label="averaging")
        if averaged:
            ax.plot(
                [epochs[-1] + 0.5],
                [averaged[key]],
                marker="*",
                markersize=12,
                ls="",
                color="tab:red",
                label="average (kept)",
            )
    for ax, title in zip(axes, ("loss", "accuracy (threshold 0.5)", "validation ROC AUC"), strict=True):
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if averaging_epochs or averaged:
        axes[2].legend()
    fig.tight_layout()
    return fig


def lr_figure(history: list[dict[str, float]]) -> Figure:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([row["epoch"] + 1 for row in history], [row["lr"] for row in history], marker="o")
    ax.set(title="learning rate at epoch end", xlabel="epoch", ylabel="lr", yscale="log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
