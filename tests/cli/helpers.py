"""Helpers of the CLI tests: the real app run in this process, through Typer's CliRunner or main()."""

import logging
import subprocess
import sys

import pytest
from typer.testing import CliRunner, Result

from pneumonia_zoo.config import get_settings
from tests.conftest import mlflow_globals, use_store


def invoke(monkeypatch: pytest.MonkeyPatch, store: str, *args: str) -> Result:
    """`pneumonia-zoo ARGS` against the store `store`, in this process through Typer's CliRunner: option
    parsing, the command and its error line and exit code, as a user gets them."""
    from pneumonia_zoo.cli import app

    use_store(monkeypatch, store)
    monkeypatch.setenv("COLUMNS", "200")  # Rich's boxes wrap at the terminal's width: no line is cut here
    # main() quiets MLflow's INFO lines through the environment, read when MLflow is first imported; in
    # this process it may have been imported already, so its logger is set for the command too.
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    mlflow_logger = logging.getLogger("mlflow")
    level = mlflow_logger.level
    mlflow_logger.setLevel(logging.WARNING)
    # A new process's MLflow globals follow MLFLOW_TRACKING_URI; here an earlier test may have moved them.
    with mlflow_globals(store):
        try:
            return CliRunner().invoke(app, list(args), catch_exceptions=False)
        finally:
            get_settings.cache_clear()  # the next command reads the environment afresh
            mlflow_logger.setLevel(level)


def run_cli_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, store: str, *args: str
) -> subprocess.CompletedProcess:
    """`pneumonia-zoo ARGS` through the real entry point (option parsing, ZooError -> one line and an
    exit code), in this process: for refusals, where a subprocess would only add seconds of imports."""
    from pneumonia_zoo.cli import main

    use_store(monkeypatch, store)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # main() sets it; restored after the test
    monkeypatch.setattr(sys, "argv", ["pneumonia-zoo", *args])
    capsys.readouterr()  # only this command's output
    # A new process's MLflow globals follow MLFLOW_TRACKING_URI; here an earlier test may have moved them.
    with mlflow_globals(store):
        try:
            main()
            code = 0
        except SystemExit as exit:
            code = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(["pneumonia-zoo", *args], code, captured.out, captured.err)


def flat(text: str) -> str:
    """Rich's boxed text as one line of words (box borders and wrapping removed)."""
    return " ".join(text.translate(str.maketrans("│╭╮╰╯─", "      ")).split())
