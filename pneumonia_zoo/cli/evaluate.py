"""`evaluate`: a registered version's metrics on a Kaggle split, a labelled folder or a manifest."""

from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import open_store, require_existing
from pneumonia_zoo.cli.options import AsJson, ModelUri, OperatingPoint, Quiet
from pneumonia_zoo.tracking.uris import ALIAS_FORM, VERSION_FORM
from pneumonia_zoo.workflows.choices import EVALUATION_SPLIT


def evaluate(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Kaggle's chest_xray/ (with --split), or a folder holding NORMAL/ and PNEUMONIA/ directly.",
        ),
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="A CSV with columns path,label[,patient] instead of --data.")
    ] = None,
    model: ModelUri = None,
    split: Annotated[
        str | None,
        typer.Option(
            help=f"{' | '.join(EVALUATION_SPLIT.values)} (Kaggle folders only; default test; val "
            "is rebuilt from the model's seed)."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples (patients) for 95% intervals (0: none).")
    ] = 1000,
    limit: Annotated[int | None, typer.Option(help="Stratified subsample of N images.")] = None,
    operating_point: OperatingPoint = None,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness/--no-robustness",
            help="On the Kaggle test split: JPEG/resize agreement and full-resolution originals.",
        ),
    ] = True,
    log: Annotated[
        bool, typer.Option("--log", help="Record the evaluation against the version in MLflow.")
    ] = False,
    by: Annotated[
        str | None,
        typer.Option(help="Manifest columns to report subgroups of, comma-separated (e.g. view,sex)."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            help=f"Another version ({ALIAS_FORM} or {VERSION_FORM}) compared in pairs on the same images."
        ),
    ] = None,
    prevalence: Annotated[
        float | None,
        typer.Option(help="Prevalence of PNEUMONIA for PPV, NPV and net benefit (default: the data's own)."),
    ] = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Metrics of a registered model with patient-level intervals, calibration and the flag rate."""
    require_existing([data, manifest])
    from pneumonia_zoo.workflows.evaluate import log_evaluation, run_evaluation

    store = open_store()
    result = run_evaluation(
        store,
        model or store.champion_uri,
        data,
        manifest,
        split,
        bootstrap,
        limit,
        operating_point,
        robustness,
        quiet or as_json,
        by=[column.strip() for column in by.split(",") if column.strip()] if by else None,
        against=against,
        prevalence=prevalence,
    )
    report = result.to_dict()
    if log:
        report["logged_run"] = log_evaluation(store, result)
    if as_json:
        output.show_json(report)
    else:
        output.show("\n".join([output.render_evaluation(report), *result.site_lines()]))
