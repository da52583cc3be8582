"""The registry's commands: promote, card, compare, ensemble, backfill-guard, and the starter model
(register-starter, export-starter)."""

from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import open_store, require_data_folder, require_existing, settings
from pneumonia_zoo.cli.options import ModelUri, Quiet
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.package.choices import TTA_VIEWS
from pneumonia_zoo.tracking.champion import CHAMPION_METRIC
from pneumonia_zoo.tracking.uris import ALIAS_FORM, VERSION_FORM


def promote(
    metric: Annotated[
        str,
        typer.Option(
            help="Validation metric to rank by (val_brier, val_loss, val_ece: lower is better; others higher)"
        ),
    ] = CHAMPION_METRIC,
    alias: Annotated[str | None, typer.Option(help="Alias to move (default: the champion alias).")] = None,
    version: Annotated[
        str | None, typer.Option(help="Promote this version (a number) instead of the best by --metric.")
    ] = None,
    not_worse_on: Annotated[
        Path | None,
        typer.Option(
            "--not-worse-on",
            help="A NORMAL/PNEUMONIA folder, a manifest (.csv) or Kaggle's chest_xray/ (its validation "
            "split): refuse when the version's paired ΔAUC interval against the champion on it lies below "
            "-MARGIN.",
        ),
    ] = None,
    margin: Annotated[float, typer.Option(help="How much worse than the champion is tolerated.")] = 0.0,
    better_on: Annotated[
        Path | None,
        typer.Option(
            "--better-on",
            help="Kaggle's chest_xray/ (its validation split, which the version must share with the "
            "champion), a NORMAL/PNEUMONIA folder or a manifest (.csv): refuse unless the version's paired "
            "ΔBrier interval against the champion on it lies below 0 (better beyond the sample).",
        ),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Move the champion alias to the version with the best validation metric (or to --version)."""
    require_existing([not_worse_on, better_on])
    from pneumonia_zoo.workflows.promote import promote as run_promote

    store = open_store()
    done = run_promote(store, metric, version, alias, not_worse_on, margin, quiet, better_on)
    output.show(output.render_promotion(store.model_name, done))


def card(
    model: ModelUri = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also log it to the version's run (model_card.md).")
    ] = False,
) -> None:
    """Print the model card of a registered version (rendered from the registry)."""
    from pneumonia_zoo.tracking.cards import log_model_card, version_card

    store = open_store()
    version = store.resolve(model or store.champion_uri).version
    output.show(log_model_card(store, version) if log else version_card(store, version))


def compare(
    out: Annotated[Path, typer.Option(help="Report folder (compare.md, compare.json, PNG charts).")] = Path(
        "reports/compare"
    ),
    latest_per_arch: Annotated[
        bool, typer.Option("--latest-per-arch", help="Only the newest version of each architecture.")
    ] = False,
    timing: Annotated[
        bool, typer.Option("--timing/--no-timing", help="Measure ms per image (batch 1).")
    ] = True,
    images: Annotated[
        Path | None, typer.Option(help="Folder of images to time on (default: the samples).")
    ] = None,
    on: Annotated[
        Path | None,
        typer.Option(
            help="Also compare the versions in pairs on this NORMAL/PNEUMONIA folder or manifest (.csv): "
            "ΔAUC against --against with paired intervals (paired.md, paired.json)."
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(help=f"The reference of the paired table ({ALIAS_FORM}; default the champion)."),
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Side-by-side report of registered versions: metrics with 95% CIs, size, train and inference time."""
    folder = images or settings().sample_images_dir
    if timing and not folder.is_dir():
        raise UserError(f"{folder} is not a folder of images to time on (or pass --no-timing)")
    require_existing([on])
    from pneumonia_zoo.workflows.compare import compare as run_compare
    from pneumonia_zoo.workflows.compare import timing_images

    store = open_store()
    result = run_compare(store, out, latest_per_arch, timing_images(folder) if timing else None)
    output.show(output.render_report(result.markdown, out / "compare.md"))
    if on is not None:
        from pneumonia_zoo.workflows.paired import write_paired_report

        table, path = write_paired_report(
            store, [row["version"] for row in result.rows], on, against, out, quiet
        )
        output.show(output.render_report(table.markdown(), path))


def ensemble(
    members: Annotated[
        list[str],
        typer.Option("--member", help=f"A registered version ({VERSION_FORM}); give two or more."),
    ],
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The chest_xray/ folder the members were trained on.")
    ],
    tta: Annotated[
        list[str] | None,
        typer.Option(
            "--tta",
            help=f"Test-time views to average: {', '.join(TTA_VIEWS)} (repeat the option; default none).",
        ),
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples (patients) for test intervals.")] = 1000,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register it as a new version.")
    ] = True,
    run_name: Annotated[str | None, typer.Option("--run-name")] = None,
    quiet: Quiet = False,
) -> None:
    """Register an ensemble of registered versions: the average of their calibrated probabilities."""
    require_data_folder(data)
    from pneumonia_zoo.workflows.ensemble import build_ensemble

    outcome = build_ensemble(open_store(), members, data, tta, bootstrap, register, run_name, quiet)
    output.show(
        output.render_run(outcome.run_id, outcome.metrics, output.ENSEMBLE_SUMMARY_METRICS, outcome.version)
    )


def backfill_guard(
    data: Annotated[
        Path, typer.Option("--data", "-d", help="The chest_xray/ folder the model was trained on.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="A registered version: the guarded copy is registered as a new version."
        ),
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Or a package folder, rewritten in place.")
    ] = None,
    flag_rate: Annotated[
        float, typer.Option("--flag-rate", help="Share of validation images to flag.")
    ] = 0.02,
    quiet: Quiet = False,
) -> None:
    """Fit the out-of-population guard of a package made without one."""
    if (model is None) == (directory is None):
        raise UserError("give either --model (a registered version) or --dir (a package folder)")
    require_data_folder(data)
    if not 0 < flag_rate < 0.5:
        raise UserError("--flag-rate must be between 0 and 0.5")
    from pneumonia_zoo.workflows import backfill

    if directory is not None:
        rate = backfill.add_guard(directory, data, flag_rate, quiet)
        output.show(output.render_guard_added(directory, rate))
    else:
        version = backfill.backfill_version(open_store(), model or "", data, flag_rate, quiet)
        output.show(output.render_guarded_version(version))


def register_starter(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Starter package folder (default: the package's own assets/starter)."),
    ] = None,
) -> None:
    """Register the shipped starter model and make it champion, if the registry has no champion."""
    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.workflows.starter import ensure_champion

    store = open_store()
    version = ensure_champion(store, directory or STARTER_DIR)
    if version is not None:
        output.show(output.render_alias(store.model_name, store.settings.champion_alias, version))


def export_starter(
    model: Annotated[str, typer.Option("--model", "-m", help=f"{VERSION_FORM} (or @ALIAS) to export.")],
    out: Annotated[Path, typer.Option(help="Folder to write the package and MODEL_CARD.md to.")] = Path(
        "pneumonia_zoo/assets/starter"
    ),
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16",
            help="Round weights to float16 (half the size); ONNX is rebuilt from exactly those weights.",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="The chest_xray/ folder it was trained on: a package without the monitor's drift "
            "reference gets it, from its validation split.",
        ),
    ] = None,
) -> None:
    """Write a registered version as the starter model: its package plus its model card."""
    from pneumonia_zoo.workflows.compare import timing_images
    from pneumonia_zoo.workflows.starter import export_starter as run_export

    samples = settings().sample_images_dir
    check = timing_images(samples, count=8) if samples.is_dir() else None
    if data is not None:
        require_data_folder(data)
    result = run_export(open_store(), model, out, fp16, check, data)
    output.show(
        output.render_starter_written(
            out, result.total_bytes, result.float16, result.max_probability_change, len(check or [])
        )
    )
