"""A new site: split its labelled X-rays by patient, and adapt a version to it (`adapt`)."""

from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import open_store, require_existing
from pneumonia_zoo.cli.options import AsJson, ModelUri, Quiet
from pneumonia_zoo.errors import InvalidInput


def split_manifest(
    manifest: Annotated[Path, typer.Option(help="The site's manifest (CSV: path,label,patient[,...]).")],
    fit_out: Annotated[Path, typer.Option("--fit-out", help="Where to write the FIT manifest.")],
    test_out: Annotated[Path, typer.Option("--test-out", help="Where to write the TEST manifest.")],
    test_fraction: Annotated[
        float, typer.Option("--test-fraction", help="Share of the patients that go to TEST.")
    ] = 1 / 3,
    seed: Annotated[int, typer.Option(help="Seeds the split.")] = 0,
    as_json: AsJson = False,
) -> None:
    """Split a manifest by patient (stratified by label, seeded) into FIT and TEST manifests."""
    require_existing([manifest])
    if not 0 < test_fraction < 1:
        raise InvalidInput(f"--test-fraction must lie between 0 and 1, got {test_fraction:g}")
    from pneumonia_zoo.data.manifests import split_manifest as run_split

    result = run_split(manifest, fit_out, test_out, test_fraction, seed)
    if as_json:
        output.show_json(result.to_dict())
    else:
        output.show(output.render_manifest_split(result.to_dict()))


def adapt(
    site: Annotated[str, typer.Option(help="The site's name (letters, digits, - and _), recorded with it.")],
    manifest: Annotated[
        Path | None, typer.Option(help="FIT: a CSV of path,label,patient (the images to learn from).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", "-d", help="FIT as a folder holding NORMAL/ and PNEUMONIA/.")
    ] = None,
    model: ModelUri = None,
    holdout: Annotated[
        Path | None,
        typer.Option(
            help="A manifest or folder kept unseen (TEST): refused if FIT shares a patient or a file with it."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(help="What the head reads: both (penultimate + guard-layer statistics) or penultimate."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds the cross-validation folds and the guard's split.")] = 0,
    member: Annotated[
        int | None,
        typer.Option(
            help="Ensembles: adapt through this member (default: the one whose site head has the lowest "
            "out-of-fold log loss on FIT)."
        ),
    ] = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Adapt a version to a site from its labelled X-rays; registers a new version (the champion stays)."""
    require_existing([manifest, data, holdout])
    from pneumonia_zoo.workflows.adapt import adapt as run_adapt

    store = open_store()
    result = run_adapt(
        store,
        model or store.champion_uri,
        site,
        manifest=manifest,
        data=data,
        holdout=holdout,
        feature_set=features,  # type: ignore[arg-type]
        seed=seed,
        quiet=quiet or as_json,
        member=member,
    )
    if as_json:
        output.show_json(result.to_dict())
    else:
        output.show(output.render_adapted(result.to_dict()))
