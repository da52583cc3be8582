"""Sweeps: one nested MLflow run per configuration under a parent run, best named by val AUC.

Trials run one after another in this process (`sequential`), or as Ray tasks (`ray`) on a local
Ray or a cluster; either way each trial logs a child run of the same parent in the same store,
and the parent gets the same table, figure and best-run tags.
"""

import itertools
import os
from dataclasses import dataclass
from typing import cast

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.store import Store, sqlite_path
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.choices import SWEEP_BACKEND
from pneumonia_zoo.workflows.train import TrainOutcome, train

RAY_MISSING = "Ray is not installed: install the ray extra: pip install .[ray]"


@dataclass
class SweepResult:
    parent_run_id: str
    table: pd.DataFrame
    best_run_id: str | None


def sweep_configs(base: TrainConfig, schedules: list[str], lrs: list[float]) -> list[TrainConfig]:
    return [
        TrainConfig.from_flat(
            base.flat() | {"schedule": schedule, "lr": lr, "run_name": f"{schedule}-lr{lr:g}"}
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


def run_sweep(
    base: TrainConfig,
    store: Store,
    schedules: list[str],
    lrs: list[float],
    quiet: bool = False,
    backend: str = "sequential",
    address: str | None = None,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
) -> SweepResult:
    """Run every schedule x learning rate; `num_cpus` sizes a local Ray (default: all cores)."""
    SWEEP_BACKEND.check(backend)
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError("--max-concurrent must be at least 1")
    configs = sweep_configs(base, schedules, lrs)  # validates every schedule before anything runs
    if backend == "ray":
        _import_ray()  # a missing extra fails before any run exists
    store.activate()
    with mlflow.start_run(run_name=f"sweep-{base.arch}") as parent:
        mlflow.set_tags({"sweep": "true", "architecture": base.arch, "sweep_backend": backend})
        mlflow.log_params(
            {
                "schedules": ",".join(schedules),
                "lrs": ",".join(f"{lr:g}" for lr in lrs),
                "arch": base.arch,
                "epochs": base.epochs,
                "image_size": base.image_size,
            }
        )
        if backend == "ray":
            outcomes = run_on_ray(
                configs, store.settings, parent.info.run_id, quiet, address, max_concurrent, num_cpus
            )
        else:
            outcomes = [train(config, store, quiet=quiet) for config in configs]
        table, best = summarise(configs, outcomes)
    return SweepResult(parent.info.run_id, table, None if best is None else best["run_id"])


def summarise(
    configs: list[TrainConfig], outcomes: list[TrainOutcome]
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Log the table, the comparison figure and the best run to the active (parent) run."""
    rows, histories = [], {}
    for config, outcome in zip(configs, outcomes, strict=True):
        metrics = outcome.metrics or {}
        history = (
            mlflow.artifacts.load_dict(f"runs:/{outcome.run_id}/history.json") if outcome.metrics else []
        )
        histories[str(config.run_name)] = cast(list[dict], history)
        rows.append(
            {
                "run_id": outcome.run_id,
                "schedule": config.schedule,
                "lr": config.lr,
                "status": outcome.status,
                "version": outcome.version,
                "val_auc": metrics.get("val_auc"),
                "val_loss": metrics.get("val_loss"),  # the kept epoch's, logged by the recipe
                "test_auc": metrics.get("test_auc"),
            }
        )
    table = pd.DataFrame(rows)
    finished = table.dropna(subset=["val_auc"])
    best = (
        finished.sort_values(["val_auc", "val_loss"], ascending=[False, True]).iloc[0]
        if len(finished)
        else None
    )
    mlflow.log_text(table.to_markdown(index=False), "sweep_table.md")
    mlflow.log_table(table.astype(str), "sweep_table.json")
    mlflow.log_figure(comparison_figure({k: v for k, v in histories.items() if v}), "sweep_comparison.png")
    if best is not None:
        mlflow.set_tags(
            {"best_run_id": best["run_id"], "best_schedule": best["schedule"], "best_lr": str(best["lr"])}
        )
        mlflow.log_metric("best_val_auc", float(best["val_auc"]))
    plt.close("all")
    return table, best


# --- Ray -----------------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def _trial_settings(settings: Settings) -> str:
    """The settings a trial process needs, as JSON (a relative sqlite path made absolute)."""
    uri = settings.tracking_uri
    if db_path := sqlite_path(uri):
        uri = f"sqlite:///{db_path}"
    return settings.model_copy(update={"tracking_uri": uri}).model_dump_json(
        exclude={"admin_token", "api_key"}
    )


def ray_trial(config_json: str, parent_run_id: str, settings_json: str, quiet: bool) -> TrainOutcome:
    """One trial in a Ray worker: a child run of `parent_run_id` in the store the settings name."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    store = Store(Settings.model_validate_json(settings_json))
    outcome = train(
        TrainConfig.model_validate_json(config_json), store, quiet=True, parent_run_id=parent_run_id
    )
    if outcome.run_id:
        store.set_run_tag(outcome.run_id, "sweep_backend", "ray")
    return outcome


def run_on_ray(
    configs: list[TrainConfig],
    settings: Settings,
    parent_run_id: str,
    quiet: bool,
    address: str | None = None,
    max_concurrent: int | None = None,
    num_cpus: int | None = None,
) -> list[TrainOutcome]:
    """Each config as a Ray task (CPUs: its --threads, else 1); results in the configs' order.

    On a cluster (`address`), every node needs pneumonia-zoo installed, the data at the same path
    and access to the tracking store (a server or a shared database, not a local sqlite file).
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=not quiet)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=not quiet)
    settings_json = _trial_settings(settings)
    try:
        pending: dict = {}
        outcomes: dict[int, TrainOutcome] = {}
        queue = list(enumerate(configs))
        limit = max_concurrent or len(configs)
        remote_trial = ray.remote(ray_trial)
        while queue or pending:
            while queue and len(pending) < limit:
                index, config = queue.pop(0)
                task = remote_trial.options(num_cpus=config.threads or 1)
                pending[task.remote(config.model_dump_json(), parent_run_id, settings_json, quiet)] = index
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                index = pending.pop(ref)
                try:
                    outcomes[index] = ray.get(ref)
                except Exception as exc:  # one failed trial does not end the sweep
                    outcomes[index] = TrainOutcome(None, "FAILED")
                    mlflow.log_text(str(exc), f"failed_trials/{configs[index].run_name}.txt")
        return [outcomes[index] for index in range(len(configs))]
    finally:
        if started:
            ray.shutdown()
