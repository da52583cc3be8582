"""Helpers of the tracking tests: the CLI's real entry point run in this process."""

import subprocess
import sys

import pytest

from tests.conftest import mlflow_globals, use_store


def run_cli_here(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, store: str, *args: str
) -> subprocess.CompletedProcess:
    """`pneumonia-zoo ARGS` through the real entry point (option parsing, UserError -> one line and an
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
