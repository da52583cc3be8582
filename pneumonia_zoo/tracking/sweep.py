"""Sweeps: one nested MLflow run per configuration under a parent run, best named by val AUC."""

import itertools
from dataclasses import dataclass

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from pneumonia_zoo.config import get_settings
from pneumonia_zoo.tracking.experiment import TrainOutcome, train
from pneumonia_zoo.tracking.store import ensure_experiment
from pneumonia_zoo.training.config import TrainConfig


@dataclass
class SweepResult:
    parent_run_id: str
    table: pd.DataFrame
    best_run_id: str | None


def sweep_configs(base: TrainConfig, schedules: list[str], lrs: list[float]) -> list[TrainConfig]:
    return [
        TrainConfig.build(
            **(base.model_dump() | {"schedule": schedule, "lr": lr, "run_name": f"{schedule}-lr{lr:g}"})
        )
        for schedule, lr in itertools.product(schedules, lrs)
    ]


def comparison_figure(histories: dict[str, list[dict]]) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, history in histories.items():
        epochs = [row["epoch"] + 1 for row in history]
        axes[0].plot(epochs, [row["lr"] for row in history], marker="o", label=label)
        axes[1].plot(epochs, [row["val_auc"] for row in history], marker="o", label=label)
    axes[0].set(title="learning rate", xlabel="epoch", yscale="log")
    axes[1].set(title="validation AUC", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def run_sweep(base: TrainConfig, schedules: list[str], lrs: list[float], quiet: bool = False) -> SweepResult:
    configs = sweep_configs(base, schedules, lrs)  # validates every schedule before anything runs
    ensure_experiment(get_settings().experiment_name)
    rows, histories = [], {}
    with mlflow.start_run(run_name=f"sweep-{base.arch}") as parent:
        mlflow.set_tags({"sweep": "true", "architecture": base.arch})
        mlflow.log_params(
            {
                "schedules": ",".join(schedules),
                "lrs": ",".join(f"{lr:g}" for lr in lrs),
                "arch": base.arch,
                "epochs": base.epochs,
                "image_size": base.image_size,
            }
        )
        for config in configs:
            outcome: TrainOutcome = train(config, quiet=quiet)
            metrics = outcome.metrics or {}
            rows.append(
                {
                    "run_id": outcome.run_id,
                    "schedule": config.schedule,
                    "lr": config.lr,
                    "status": outcome.status,
                    "version": outcome.version,
                    "val_auc": metrics.get("val_auc"),
                    "val_loss": metrics.get("val_loss"),
                    "test_auc": metrics.get("test_auc"),
                }
            )
            history = (
                mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/history.json") if outcome.metrics else []
            )
            histories[config.run_name] = history
        table = pd.DataFrame(rows)
        finished = table.dropna(subset=["val_auc"])
        best = (
            finished.sort_values(["val_auc", "val_loss"], ascending=[False, True]).iloc[0]
            if len(finished)
            else None
        )
        mlflow.log_text(table.to_markdown(index=False), "sweep_table.md")
        mlflow.log_table(table.astype(str), "sweep_table.json")
        mlflow.log_figure(
            comparison_figure({k: v for k, v in histories.items() if v}), "sweep_comparison.png"
        )
        if best is not None:
            mlflow.set_tags(
                {"best_run_id": best["run_id"], "best_schedule": best["schedule"], "best_lr": str(best["lr"])}
            )
            mlflow.log_metric("best_val_auc", float(best["val_auc"]))
        plt.close("all")
    return SweepResult(parent.info.run_id, table, None if best is None else best["run_id"])
