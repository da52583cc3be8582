"""What the CLI prints: JSON (NaN and infinities as null) and the renderings people read."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.cli import output


def test_json_turns_undefined_numbers_into_null_at_any_depth() -> None:
    value = {
        "specificity": math.nan,
        "ci95": {"auc": (0.5, math.inf), "f1": [-math.inf, 0.25]},
        "count": 3,
        "name": "nan",
    }
    text = output.to_json(value)
    assert json.loads(text) == {
        "specificity": None,
        "ci95": {"auc": [0.5, None], "f1": [None, 0.25]},
        "count": 3,
        "name": "nan",
    }
    assert "NaN" not in text and "Infinity" not in text


def test_json_writes_numpy_numbers_as_numbers() -> None:
    assert json.loads(output.to_json({"auc": np.float32(0.75), "tp": np.int64(4)})) == {"auc": 0.75, "tp": 4}


def evaluation(**overrides: object) -> dict:
    result = {
        "model": {"name": "pneumonia-classifier", "version": "2", "architecture": "small_cnn"},
        "data": {"source": "chest_xray/test", "context": "test", "images": 10, "patients": 9},
        "operating_point": {"name": "balanced", "threshold": 0.41234},
        "metrics": {
            "accuracy": 0.8,
            "sensitivity": 1.0,
            "specificity": math.nan,
            "precision": 0.75,
            "f1": 0.857142,
            "auc": 0.9,
            "tn": 0,
            "fp": 2,
            "fn": 0,
            "tp": 8,
        },
        "ci95": {"accuracy": (0.6, 0.95), "specificity": (math.nan, math.nan)},
        "calibration": {"ece": 0.05, "brier": 0.125},
        "out_of_population": {"flag_rate": 0.1},
        "robustness": {"robust_jpeg30_agreement": 0.95, "robust_jpeg30_images": 10.0},
    }
    return result | overrides


def test_evaluation_text() -> None:
    assert output.render_evaluation(evaluation()).splitlines() == [
        "pneumonia-classifier v2 (small_cnn) on chest_xray/test (test): 10 images of 9 patients; "
        "operating point balanced (threshold 0.412)",
        "  accuracy     0.8000  [0.6000, 0.9500]",
        "  sensitivity  1.0000",
        "  specificity  n/a",
        "  precision    0.7500",
        "  f1           0.8571",
        "  auc          0.9000",
        "  confusion    tn 0  fp 2  fn 0  tp 8",
        "  calibration  ECE 0.0500  Brier 0.1250",
        "  flagged      10.0% out of population",
        "  robust_jpeg30_agreement            0.9500",
    ]


def test_evaluation_text_names_the_logged_run() -> None:
    assert output.render_evaluation(evaluation(logged_run="abc123")).endswith("\nlogged as run abc123")


def prediction(**overrides: object) -> dict:
    record = {
        "label": "PNEUMONIA",
        "probabilities": {"NORMAL": 0.3, "PNEUMONIA": 0.7},
        "threshold": 0.5,
        "operating_point": {"name": "balanced", "threshold": 0.5, "rule": "..."},
        "uncertain": False,
        "out_of_population": {"flagged": False, "score": 0.2, "reasons": [], "warning": None},
        "model": {
            "name": "pneumonia-classifier",
            "version": "3",
            "architecture": "small_cnn",
            "runtime": "onnx",
        },
        "latency_ms": 12.5,
        "filename": "a.jpeg",
    }
    return record | overrides


def test_prediction_lines() -> None:
    assert output.render_prediction(prediction()) == (
        "a.jpeg: PNEUMONIA  P(PNEUMONIA)=0.7000 balanced threshold 0.500  [pneumonia-classifier v3]"
    )
    flagged = prediction(
        uncertain=True,
        out_of_population={"flagged": True, "score": 2.0, "reasons": ["one", "two"], "warning": "w"},
    )
    assert output.render_prediction(flagged) == (
        "a.jpeg: PNEUMONIA (uncertain)  P(PNEUMONIA)=0.7000 balanced threshold 0.500  "
        "[pneumonia-classifier v3]  OUT OF POPULATION: one; two"
    )


@pytest.mark.parametrize("count", [1, 2])
def test_predictions_as_json_are_one_object_or_a_list(count: int, capsys: pytest.CaptureFixture) -> None:
    records = [prediction(filename=f"{i}.jpeg") for i in range(count)]
    output.show_predictions(records, as_json=True)
    printed = json.loads(capsys.readouterr().out)
    assert printed == (records[0] if count == 1 else records)


def test_run_summary_shows_the_metrics_it_has_and_the_version() -> None:
    metrics = {"val_auc": 0.91234, "test_accuracy": 0.8, "test_ece": 0.0312, "other": 1.0}
    assert output.render_run("r1", metrics, output.TRAIN_SUMMARY_METRICS, "4") == (
        "run r1: val_auc 0.9123, test_accuracy 0.8000, test_ece 0.0312\nregistered version 4"
    )
    assert output.render_run("r1", {}, output.ENSEMBLE_SUMMARY_METRICS, None) == "run r1: "


def test_starter_export_lines() -> None:
    assert (
        output.render_starter_written(Path("out"), 13_600_000, True, None, 0)
        == "wrote out: 13.6 MB (float16)"
    )
    assert output.render_starter_written(Path("out"), 27_200_000, False, 1.5e-7, 8).splitlines() == [
        "wrote out: 27.2 MB (as registered)",
        "largest change in a probability on 8 sample images: 1.50e-07",
    ]


def test_errors_are_one_line_on_stderr(capsys: pytest.CaptureFixture) -> None:
    output.show_error(ValueError("no such thing"))
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "error: no such thing\n")
