"""`pneumonia-zoo`: train | sweep | ensemble | evaluate | split-manifest | adapt | promote | predict |
compare | card | register-starter | export-starter | backfill-guard | serve | ui | feedback export |
shadow start|stop|promote.

One module per group of commands (train.py, evaluate.py, site.py, predict.py, registry.py, service.py,
live.py); what they print is in output.py. Options are validated before torch or MLflow are imported
(they load inside the commands), so a typo is refused at once and `--help` is fast.
"""

import os
import signal
import warnings
from collections.abc import Callable

import typer

from pneumonia_zoo.cli import evaluate, live, predict, registry, service, site, train
from pneumonia_zoo.cli.common import one_line_errors

app = typer.Typer(
    help="Pneumonia Zoo: train, track, compare and serve chest X-ray classifiers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# (function, command name), in the order --help lists them.
COMMANDS: list[tuple[Callable[..., None], str]] = [
    (train.train, "train"),
    (train.sweep, "sweep"),
    (registry.ensemble, "ensemble"),
    (evaluate.evaluate, "evaluate"),
    (site.split_manifest, "split-manifest"),
    (site.adapt, "adapt"),
    (registry.promote, "promote"),
    (predict.predict, "predict"),
    (registry.compare, "compare"),
    (registry.card, "card"),
    (registry.register_starter, "register-starter"),
    (registry.export_starter, "export-starter"),
    (registry.backfill_guard, "backfill-guard"),
    (service.serve, "serve"),
    (service.ui, "ui"),
]
for function, name in COMMANDS:
    app.command(name)(one_line_errors(function))
# Sub-apps (name, group), listed after the commands.
GROUPS: list[tuple[str, typer.Typer]] = [("feedback", live.feedback), ("shadow", live.shadow)]
for name, group in GROUPS:
    app.add_typer(group, name=name)


def main() -> None:
    """Entry point: errors become one line on stderr and their exit code (`sys.exit`, through Click)."""
    # MLflow's INFO lines (table creation, monitor start) and library deprecation notices drown
    # the CLI's own output; users can still ask for them with MLFLOW_LOGGING_LEVEL=INFO.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # A parent that ignores SIGINT (a `cmd &` in a script, nohup, pytest-xdist workers) passes that on,
    # and Python then never raises KeyboardInterrupt: `kill -INT` could not end a run cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for module in (r"mlflow(\..*)?", r"sqlalchemy(\..*)?", r"alembic(\..*)?"):
        warnings.filterwarnings("ignore", module=module)
    app()


if __name__ == "__main__":
    main()
