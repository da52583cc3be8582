"""`evaluate` on a real store: its refusals, JSON with undefined metrics as null, and the text summary."""

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import invoke


@pytest.fixture(scope="module")
def pneumonia_only(tmp_path_factory: pytest.TempPathFactory, fixture_data: Path) -> Path:
    """An external set of one class: specificity is undefined (no NORMAL image)."""
    folder = tmp_path_factory.mktemp("external") / "PNEUMONIA"
    folder.mkdir()
    for image in sorted((fixture_data / "test" / "PNEUMONIA").glob("*.jpeg"))[:3]:
        shutil.copy(image, folder / image.name)
    return folder.parent


@pytest.mark.parametrize("option", ["--data", "--manifest"])
def test_a_missing_path_is_one_line(
    option: str, monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "evaluate", option, str(tmp_path / "nowhere"))
    assert (result.exit_code, result.stderr) == (1, f"error: {tmp_path / 'nowhere'} does not exist\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either --data (a folder) or --manifest (a CSV of path,label[,patient])"),
        (("--split", "dev"), "unknown split 'dev': choose one of train, val, test"),
    ],
)
def test_data_refusals(
    args: tuple, message: str, monkeypatch: pytest.MonkeyPatch, starter_store: str, fixture_data: Path
) -> None:
    data = ("--data", str(fixture_data)) if args else ()
    result = invoke(monkeypatch, starter_store, "evaluate", *data, *args)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_json_has_null_for_an_undefined_metric(
    monkeypatch: pytest.MonkeyPatch, starter_store: str, pneumonia_only: Path
) -> None:
    result = invoke(
        monkeypatch, starter_store, "evaluate", "--data", str(pneumonia_only), "--bootstrap", "20", "--json"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(
        result.stdout
    )  # strict JSON: Python's parser would also accept NaN, so check the text
    assert "NaN" not in result.stdout
    assert report["metrics"]["specificity"] is None and report["metrics"]["sensitivity"] is not None
    assert report["model"] == {
        "name": "pneumonia-classifier",
        "version": "1",
        "architecture": "ensemble",
    }
    assert report["data"]["images"] == 3 and report["data"]["context"] == "external"
    assert "logged_run" not in report


def test_text_summary(monkeypatch: pytest.MonkeyPatch, starter_store: str, pneumonia_only: Path) -> None:
    result = invoke(
        monkeypatch, starter_store, "evaluate", "--data", str(pneumonia_only), "--bootstrap", "0", "-q"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"pneumonia-classifier v1 (ensemble) on {pneumonia_only.name}/ (external): 3 images of "
    )
    assert "  specificity  n/a" in lines
    assert [line.split()[0] for line in lines[1:]] == [
        "accuracy",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "auc",
        "confusion",
        "calibration",
        "flagged",
    ]
