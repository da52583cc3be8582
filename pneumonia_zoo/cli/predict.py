"""`predict`: image files classified by a registered version (the champion by default) or a package
folder. The pipeline is workflows/predict.py; here, the options are checked and the records shown."""

from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import require_files, settings
from pneumonia_zoo.cli.options import AsJson, OperatingPoint
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.package.choices import RUNTIMES
from pneumonia_zoo.tracking.uris import ALIAS_FORM, VERSION_FORM


def _check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        allowed = f"{', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}"
        raise UserError(f"unknown --runtime '{runtime}': choose {allowed}")


def predict(
    images: Annotated[list[Path], typer.Argument(help="JPEG, PNG or DICOM files.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help=f"{ALIAS_FORM}, {VERSION_FORM}, or a model package folder (default: the champion).",
        ),
    ] = None,
    operating_point: OperatingPoint = None,
    runtime: Annotated[str, typer.Option(help=" | ".join(RUNTIMES))] = "auto",
    as_json: AsJson = False,
) -> None:
    """Classify X-ray images with a registered model (the champion by default) or a package folder."""
    require_files(images)
    _check_runtime(runtime)
    from pneumonia_zoo.workflows.predict import predict_files

    records = predict_files(settings(), images, model, runtime, operating_point)
    output.show_predictions(records, as_json)
