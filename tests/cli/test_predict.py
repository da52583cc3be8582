"""`predict`: its refusals, and real predictions from a package folder and from the registry."""

import json
import re
from pathlib import Path

import pytest

from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR, STARTER_DIR
from tests.cli.helpers import invoke

SAMPLE = SAMPLE_IMAGES_DIR / "person38_virus_84.jpeg"
OTHER_SAMPLE = SAMPLE_IMAGES_DIR / "NORMAL2-IM-0058-0001.jpeg"
LINE = re.compile(
    r"^(?P<file>\S+): (?P<label>NORMAL|PNEUMONIA)( \(uncertain\))?  P\(PNEUMONIA\)=(?P<p>[01]\.\d{4}) "
    r"(?P<point>\w+) threshold [01]\.\d{3}  \[(?P<model>\S+) v(?P<version>\S+)\]"
)


def test_a_missing_file_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "predict", str(SAMPLE), str(tmp_path / "none.jpeg"))
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"error: {tmp_path / 'none.jpeg'} is not a file\n",
    )


def test_an_unknown_runtime_is_one_line(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "predict", str(SAMPLE), "--runtime", "tpu")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: unknown --runtime 'tpu': choose auto, onnx or torch\n",
    )


def test_without_a_champion_it_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "predict", str(SAMPLE))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: models:/pneumonia-classifier@champion does not exist in the registry"
    )
    assert len(result.stderr.splitlines()) == 1


def test_a_folder_that_is_no_package_is_refused(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "predict", str(SAMPLE), "--model", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"error: no model.json in {tmp_path.name}/: not a pneumonia-zoo model package\n"


def test_a_package_folder_predicts_without_the_registry(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str
) -> None:
    result = invoke(
        monkeypatch, tracking_store, "predict", str(SAMPLE), str(OTHER_SAMPLE), "--model", str(STARTER_DIR)
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    matches = [LINE.match(line) for line in lines]
    assert all(matches), lines
    assert [m["file"] for m in matches] == [str(SAMPLE), str(OTHER_SAMPLE)]  # type: ignore[index]
    assert {(m["model"], m["version"]) for m in matches} == {("starter", "local")}  # type: ignore[index]


def test_json_is_the_prediction_record(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    args = (
        "predict",
        str(SAMPLE),
        "--model",
        str(STARTER_DIR),
        "--json",
        "--operating-point",
        "sensitivity_95",
    )
    result = invoke(monkeypatch, tracking_store, *args)
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == {
        "name": "starter",
        "version": "local",
        "architecture": "ensemble",
        "runtime": "onnx",
    }
    assert record["filename"] == str(SAMPLE) and record["operating_point"]["name"] == "sensitivity_95"
    assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert record["label"] == (
        "PNEUMONIA" if record["probabilities"]["PNEUMONIA"] >= record["threshold"] else "NORMAL"
    )
    two = json.loads(invoke(monkeypatch, tracking_store, *args, str(OTHER_SAMPLE)).stdout)
    assert [r["filename"] for r in two] == [str(SAMPLE), str(OTHER_SAMPLE)]


def test_an_unknown_operating_point_fails_before_decoding(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.jpeg"
    not_an_image.write_text("not an image")
    args = ("predict", str(not_an_image), "--model", str(STARTER_DIR))
    result = invoke(monkeypatch, tracking_store, *args, "--operating-point", "lenient")
    assert result.exit_code == 2  # invalid input: the usage-error code, as Click gives a bad option
    assert result.stderr.startswith("error: unknown operating point 'lenient': choose one of ")
    result = invoke(monkeypatch, tracking_store, *args)  # with a known point, the file itself is refused
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {not_an_image}: ")
    assert len(result.stderr.splitlines()) == 1


def test_the_champion_predicts_by_default(monkeypatch: pytest.MonkeyPatch, starter_store: str) -> None:
    result = invoke(monkeypatch, starter_store, "predict", str(SAMPLE))
    assert result.exit_code == 0, result.stderr
    match = LINE.match(result.stdout)
    assert match and (match["model"], match["version"]) == ("pneumonia-classifier", "1")
    by_version = invoke(
        monkeypatch, starter_store, "predict", str(SAMPLE), "--model", "models:/pneumonia-classifier/1"
    )
    assert by_version.stdout == result.stdout  # the same version, the same line
    folder = invoke(monkeypatch, starter_store, "predict", str(SAMPLE), "--model", str(STARTER_DIR))
    assert LINE.match(folder.stdout)["p"] == match["p"]  # type: ignore[index]  # the registered starter is the shipped one
