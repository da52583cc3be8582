"""`train` and `sweep`: every training option comes from TrainConfig (cli/options.py builds them)."""

from typing import Any

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import open_store, require_data_folder
from pneumonia_zoo.cli.options import extra_option, option_fields, options_signature
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.training.schedules import DECAY_SCHEDULES
from pneumonia_zoo.workflows.choices import SWEEP_BACKEND

INTERRUPTED_EXIT_CODE = 130  # what a shell reports for a command ended by Ctrl-C

TRAIN_FIELDS = list(option_fields().values())
SWEEP_FIELDS = [f for f in TRAIN_FIELDS if f.name not in ("schedule", "lr", "run_name")]
QUIET = extra_option("quiet", bool, False, "--quiet", "-q", help="No progress bars or epoch lines.")


@options_signature(TRAIN_FIELDS, [QUIET])
def train(**values: Any) -> None:
    """Train one architecture, log everything to MLflow and register the model as a new version."""
    quiet = values.pop("quiet")
    config = TrainConfig.from_flat(values)
    require_data_folder(config.data)
    from pneumonia_zoo.workflows.train import train as run_training

    outcome = run_training(config, open_store(), quiet=quiet)
    if outcome.status == "SKIPPED":
        return
    if outcome.status == "KILLED":
        output.show(output.render_interrupted(outcome.run_id), err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE)
    output.show(
        output.render_run(
            outcome.run_id, outcome.metrics or {}, output.TRAIN_SUMMARY_METRICS, outcome.version
        )
    )


SWEEP_OPTIONS = [
    extra_option(
        "schedules",
        str,
        ",".join(DECAY_SCHEDULES),
        "--schedules",
        help="Comma-separated schedules.",
        rich_help_panel="Sweep",
    ),
    extra_option(
        "lrs", str, "1e-3", "--lrs", help="Comma-separated base learning rates.", rich_help_panel="Sweep"
    ),
    extra_option(
        "backend",
        str,
        SWEEP_BACKEND.values[0],
        "--backend",
        help=f"{' | '.join(SWEEP_BACKEND.values)} (trials in parallel on Ray: pip install .[ray]).",
        rich_help_panel="Sweep",
    ),
    extra_option(
        "address",
        str | None,
        None,
        "--address",
        help="Ray cluster address (default: a local Ray).",
        rich_help_panel="Sweep",
    ),
    extra_option(
        "max_concurrent",
        int | None,
        None,
        "--max-concurrent",
        help="Ray: at most N trials at once.",
        rich_help_panel="Sweep",
    ),
    QUIET,
]


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise UserError(f"invalid {option} '{text}': give numbers separated by commas") from None


@options_signature(SWEEP_FIELDS, SWEEP_OPTIONS, defaults={"onnx": False})
def sweep(**values: Any) -> None:
    """One nested MLflow run per schedule x learning rate, compared on the parent run."""
    quiet, schedules, lrs = values.pop("quiet"), values.pop("schedules"), values.pop("lrs")
    backend, address, max_concurrent = (
        values.pop("backend"),
        values.pop("address"),
        values.pop("max_concurrent"),
    )
    lr_values = _numbers(lrs, "--lrs")
    schedule_names = [s.strip() for s in schedules.split(",") if s.strip()]
    base = TrainConfig.from_flat(values)
    require_data_folder(base.data)
    from pneumonia_zoo.workflows.sweep import run_sweep

    result = run_sweep(
        base,
        open_store(),
        schedule_names,
        lr_values,
        quiet=quiet,
        backend=backend,
        address=address,
        max_concurrent=max_concurrent,
    )
    output.show(
        output.render_sweep(result.table.to_string(index=False), result.parent_run_id, result.best_run_id)
    )
