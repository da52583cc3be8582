"""The live loop's commands: `feedback export` (labels fed back, as a manifest) and `shadow
start|stop|promote` (a challenger scored off the answer path, then made champion)."""

from pathlib import Path
from typing import Annotated

import typer

from pneumonia_zoo.cli import output
from pneumonia_zoo.cli.common import one_line_errors, open_store, settings
from pneumonia_zoo.cli.options import AsJson

feedback = typer.Typer(
    help="Labels fed back to the service (POST /api/v1/feedback): export them.", no_args_is_help=True
)
shadow = typer.Typer(
    help="A shadow rollout: a version scores a share of the champion's answers (recorded, never answered), "
    "then becomes champion.",
    no_args_is_help=True,
)
AliasOption = Annotated[
    str | None,
    typer.Option("--alias", help="The challenger alias (default: PNEUMONIA_ZOO_CHALLENGER_ALIAS)."),
]


def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV to write (a manifest, or the records).")],
    audit_url: Annotated[
        str | None,
        typer.Option(
            help="The audit database (default: PNEUMONIA_ZOO_AUDIT_URL, else beside the MLflow store)."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """The labelled answers as a manifest (path,label,patient,...) that `evaluate --manifest` and `adapt
    --manifest` read, from the kept inputs (PNEUMONIA_ZOO_KEEP_INPUTS_DIR); without kept inputs, the
    labelled records, and why there are no paths."""
    from pneumonia_zoo.audit.export import export_recorded, recorded_database

    config = settings()
    url = recorded_database(audit_url or config.audit_url, config.tracking_uri)
    result = export_recorded(url, out, config.registered_model_name, config.keep_inputs_dir is not None)
    output.show_json(result.to_dict()) if as_json else output.show(result.message())


def start(
    version: Annotated[str, typer.Argument(help="The registered version to shadow-score with.")],
    alias: AliasOption = None,
) -> None:
    """Point the challenger alias at VERSION: the service scores PNEUMONIA_ZOO_SHADOW_SAMPLE of its
    champion answers with it too, off the answer path, and records them as kind shadow."""
    from pneumonia_zoo.workflows.rollout import start_shadow

    store = open_store()
    output.show(start_shadow(store, version, alias or settings().challenger_alias).message(store.model_name))


def stop(alias: AliasOption = None) -> None:
    """Remove the challenger alias: shadow scoring stops."""
    from pneumonia_zoo.workflows.rollout import stop_shadow

    store = open_store()
    output.show(stop_shadow(store, alias or settings().challenger_alias).message(store.model_name))


def promote(alias: AliasOption = None) -> None:
    """The challenger becomes the champion (the service swaps it in); the challenger alias is removed."""
    from pneumonia_zoo.workflows.rollout import promote_challenger

    store = open_store()
    output.show(promote_challenger(store, alias or settings().challenger_alias).message(store.model_name))


feedback.command("export")(one_line_errors(export))
for function, name in ((start, "start"), (stop, "stop"), (promote, "promote")):
    shadow.command(name)(one_line_errors(function))
