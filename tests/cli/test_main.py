"""The app: its commands and their --help, errors as one line and an exit code, and a start that
imports neither torch nor MLflow."""

import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

import pneumonia_zoo
from pneumonia_zoo.cli import COMMANDS, GROUPS, one_line_errors
from pneumonia_zoo.errors import InvalidInput, RegistryUnavailable
from tests.cli.helpers import flat, invoke

# Each command with an option its --help must show (one the README uses where there is one).
HELP_SHOWS = {
    "train": "--aug-jpeg-quality-min",
    "sweep": "--max-concurrent",
    "ensemble": "--tta",
    "evaluate": "--split",
    "split-manifest": "--test-fraction",
    "adapt": "--holdout",
    "promote": "--metric",
    "predict": "--runtime",
    "compare": "--latest-per-arch",
    "card": "--log",
    "register-starter": "--dir",
    "export-starter": "--fp16",
    "backfill-guard": "--flag-rate",
    "serve": "--port",
    "ui": "--port",
}


def test_the_app_lists_every_command_in_order(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "--help")
    assert result.exit_code == 0
    listed = [line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines() if line.startswith("│ ")]
    assert listed == ["--help", *(name for _, name in COMMANDS), *(name for name, _ in GROUPS)]
    assert set(HELP_SHOWS) == {name for _, name in COMMANDS}


@pytest.mark.parametrize("command", list(HELP_SHOWS))
def test_each_command_has_help(command: str, monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, command, "--help")
    assert result.exit_code == 0, result.stderr
    function = next(function for function, name in COMMANDS if name == command)
    assert flat(function.__doc__ or "") in flat(result.stdout)  # the docstring is the command's help
    assert HELP_SHOWS[command] in result.stdout


def test_the_help_texts_show_the_declared_choices(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str
) -> None:
    assert "auto | onnx | torch" in flat(invoke(monkeypatch, tracking_store, "predict", "--help").stdout)
    assert "train | val | test" in flat(invoke(monkeypatch, tracking_store, "evaluate", "--help").stdout)
    assert "identity, zoom_in" in flat(invoke(monkeypatch, tracking_store, "ensemble", "--help").stdout)
    assert "sequential | ray" in flat(invoke(monkeypatch, tracking_store, "sweep", "--help").stdout)
    card = flat(invoke(monkeypatch, tracking_store, "card", "--help").stdout)
    assert "models:/NAME@ALIAS or models:/NAME/VERSION" in card


@pytest.mark.parametrize(
    ("error", "code"),
    [(RegistryUnavailable("the registry at x is down"), 1), (InvalidInput("bad value"), 2)],
)
def test_any_zoo_error_is_one_line_and_its_exit_code(error: Exception, code: int) -> None:
    def failing() -> None:
        """Fail."""
        raise error

    app = typer.Typer()
    app.command()(one_line_errors(failing))
    result = CliRunner().invoke(app, [], catch_exceptions=False)
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", f"error: {error}\n")


def test_other_exceptions_are_not_swallowed() -> None:
    def broken() -> None:
        """Break."""
        raise RuntimeError("a bug")

    app = typer.Typer()
    app.command()(one_line_errors(broken))
    with pytest.raises(RuntimeError, match="a bug"):
        CliRunner().invoke(app, [], catch_exceptions=False)


def test_the_entry_point_refuses_before_torch_or_mlflow_load(tracking_store: str) -> None:
    """A fresh interpreter: importing the CLI, every --help and a refusal load neither torch nor MLflow."""
    code = """
import sys
from pneumonia_zoo.cli import COMMANDS, main
heavy = [m for m in ("torch", "mlflow") if m in sys.modules]
for args in [["--help"], *[[name, "--help"] for _, name in COMMANDS], ["predict", "/nonexistent.jpeg"]]:
    sys.argv = ["pneumonia-zoo", *args]
    try:
        main()
    except SystemExit as exit:
        print("exit", exit.code, file=sys.stderr)
import pneumonia_zoo
print(pneumonia_zoo.__file__, heavy, [m for m in ("torch", "mlflow") if m in sys.modules])
"""
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_store}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.stdout.splitlines()[-1] == f"{pneumonia_zoo.__file__} [] []"
    assert result.stderr.splitlines()[-2:] == ["error: /nonexistent.jpeg is not a file", "exit 1"]
