"""`pneumonia-zoo feedback ...` and `pneumonia-zoo shadow ...`: Typer sub-apps mounted by the main CLI
(`app.add_typer(feedback, name="feedback")`, `app.add_typer(shadow, name="shadow")`).

Nothing heavy is imported until a command runs: `--help` stays fast.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pneumonia_zoo.errors import UserError

if TYPE_CHECKING:
    from pneumonia_zoo.tracking.store import Store

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


def open_audit_url(configured: str | None) -> str:
    """The audit database the service records into (or --audit-url); refused when there is none."""
    from sqlalchemy.engine import make_url

    from pneumonia_zoo.audit.database import audit_url
    from pneumonia_zoo.config import get_settings

    settings = get_settings()
    url = audit_url(configured or settings.audit_url, settings.tracking_uri)
    if url is None:
        raise UserError(
            "recording is off (PNEUMONIA_ZOO_AUDIT_URL=off): there is no audit database to export"
        )
    try:
        parsed = make_url(url)
    except Exception:
        raise UserError("PNEUMONIA_ZOO_AUDIT_URL is not a database URL") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and not Path(database).is_file():
        raise UserError(f"no audit database at {database}: the service has recorded nothing there yet")
    return url


@feedback.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV to write (a manifest, or the records).")],
    audit_url: Annotated[
        str | None,
        typer.Option(
            help="The audit database (default: PNEUMONIA_ZOO_AUDIT_URL, else beside the MLflow store)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The labelled answers as a manifest (path,label,patient,...) that `evaluate --manifest` and `adapt
    --manifest` read, from the kept inputs (PNEUMONIA_ZOO_KEEP_INPUTS_DIR); without kept inputs, the
    labelled records, and why there are no paths."""
    from pneumonia_zoo.audit.database import migrate, open_engine, safe_url
    from pneumonia_zoo.audit.export import export_feedback
    from pneumonia_zoo.config import get_settings

    settings = get_settings()
    url = open_audit_url(audit_url)
    engine = open_engine(url)
    try:
        migrate(engine)  # an older database is brought up to date (idempotent)
        result = export_feedback(
            engine, out, settings.registered_model_name, keeping_inputs=settings.keep_inputs_dir is not None
        )
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"the audit database {safe_url(url)} could not be read ({type(exc).__name__})"
        ) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "path": str(result.path),
                    "kind": result.kind,
                    "rows": result.rows,
                    "without_input": result.without_input,
                    "message": result.message(),
                }
            )
        )
    else:
        typer.echo(result.message())


def _rollout_store() -> "tuple[Store, str]":
    from pneumonia_zoo.config import get_settings
    from pneumonia_zoo.tracking.store import Store

    settings = get_settings()
    return Store(settings), settings.challenger_alias


@shadow.command("start")
def shadow_start(
    version: Annotated[str, typer.Argument(help="The registered version to shadow-score with.")],
    alias: AliasOption = None,
) -> None:
    """Point the challenger alias at VERSION: the service scores PNEUMONIA_ZOO_SHADOW_SAMPLE of its
    champion answers with it too, off the answer path, and records them as kind shadow."""
    from pneumonia_zoo.workflows.rollout import start_shadow

    store, default = _rollout_store()
    typer.echo(start_shadow(store, version, alias or default).message(store.model_name))


@shadow.command("stop")
def shadow_stop(alias: AliasOption = None) -> None:
    """Remove the challenger alias: shadow scoring stops."""
    from pneumonia_zoo.workflows.rollout import stop_shadow

    store, default = _rollout_store()
    typer.echo(stop_shadow(store, alias or default).message(store.model_name))


@shadow.command("promote")
def shadow_promote(alias: AliasOption = None) -> None:
    """The challenger becomes the champion (the service swaps it in); the challenger alias is removed."""
    from pneumonia_zoo.workflows.rollout import promote_challenger

    store, default = _rollout_store()
    typer.echo(promote_challenger(store, alias or default).message(store.model_name))
