"""`train` and `sweep` refuse bad options at once: Click's choices for registry values, one error line
for everything else, and nothing is logged."""

from pathlib import Path

import pytest

from pneumonia_zoo.training.schedules import SCHEDULE_NAMES
from pneumonia_zoo.zoo.architectures import ARCHITECTURES
from tests.cli.helpers import flat, invoke
from tests.conftest import client_for, store_for

TINY = ("--arch", "small_cnn", "--image-size", "32", "--epochs", "1")


REGISTRY_VALUES = [("--arch", "resnet5", tuple(ARCHITECTURES)), ("--freeze", "all", ("none", "backbone"))]
SCHEDULE_VALUE = ("--schedule", "linear", SCHEDULE_NAMES)  # a sweep takes --schedules (checked below)


@pytest.mark.parametrize(
    ("command", "option", "value", "allowed"),
    [("train", *case) for case in [*REGISTRY_VALUES, SCHEDULE_VALUE]]
    + [("sweep", *case) for case in REGISTRY_VALUES],
)
def test_an_unknown_registry_value_is_refused_with_the_choices(
    command: str,
    option: str,
    value: str,
    allowed: tuple,
    monkeypatch: pytest.MonkeyPatch,
    tracking_store: str,
    fixture_data: Path,
) -> None:
    args = ["--arch", "small_cnn", "--data", str(fixture_data), option, value]
    result = invoke(monkeypatch, tracking_store, command, *args)
    assert result.exit_code == 2 and result.stdout == ""
    error = flat(result.stderr)
    assert f"Invalid value for '{option}'" in error and f"'{value}' is not one of" in error
    assert all(f"'{name}'" in error for name in allowed)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--epochs", "0"), "invalid --epochs: Input should be greater than or equal to 1"),
        (("--val-fraction", "0.9"), "invalid --val-fraction: Input should be less than 0.5"),
        (("--aug-jpeg-p", "2"), "invalid --aug-jpeg-p: Input should be less than or equal to 1"),
        (
            ("--aug-jpeg-quality-min", "90", "--aug-jpeg-quality-max", "10"),
            "invalid --config: --aug-jpeg-quality-min must not exceed --aug-jpeg-quality-max",
        ),
        (
            ("--probe-epochs", "1"),
            "invalid --config: --probe-epochs must be fewer than --epochs, with --freeze none",
        ),
    ],
)
def test_a_value_out_of_range_is_one_line(
    args: tuple, message: str, monkeypatch: pytest.MonkeyPatch, tracking_store: str, fixture_data: Path
) -> None:
    result = invoke(monkeypatch, tracking_store, "train", *TINY, "--data", str(fixture_data), *args)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: {message}\n")


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_missing_data_folder_is_one_line_and_nothing_is_logged(
    command: str, monkeypatch: pytest.MonkeyPatch, tracking_store: str, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    result = invoke(monkeypatch, tracking_store, command, *TINY, "--data", str(missing))
    assert (result.exit_code, result.stderr) == (1, f"error: data folder {missing} does not exist\n")
    assert client_for(tracking_store).search_experiments(filter_string="name = 'pneumonia-zoo'") == []
    assert store_for(tracking_store).versions() == []


def test_a_linear_probe_of_random_features_is_refused_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, fixture_data: Path
) -> None:
    args = ("--arch", "small_cnn", "--image-size", "32", "--epochs", "2", "--probe-epochs", "1")
    result = invoke(monkeypatch, tracking_store, "train", *args, "--data", str(fixture_data))
    expected = (
        "error: invalid --config: --probe-epochs needs pretrained weights, and this small_cnn has none\n"
    )
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", expected)
    assert client_for(tracking_store).search_experiments(filter_string="name = 'pneumonia-zoo'") == []


def test_a_required_option_is_asked_for(monkeypatch: pytest.MonkeyPatch, tracking_store: str) -> None:
    result = invoke(monkeypatch, tracking_store, "train", "--data", ".")
    assert result.exit_code == 2 and "Missing option '--arch'" in flat(result.stderr)


def test_sweep_refuses_learning_rates_that_are_not_numbers(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, fixture_data: Path
) -> None:
    result = invoke(
        monkeypatch, tracking_store, "sweep", *TINY, "--data", str(fixture_data), "--lrs", "1e-3,fast"
    )
    assert (result.exit_code, result.stderr) == (
        1,
        "error: invalid --lrs '1e-3,fast': give numbers separated by commas\n",
    )


def test_a_sweep_checks_its_backend_and_every_schedule_before_any_run(
    monkeypatch: pytest.MonkeyPatch, tracking_store: str, fixture_data: Path
) -> None:
    data = ("--data", str(fixture_data))
    result = invoke(monkeypatch, tracking_store, "sweep", *TINY, *data, "--backend", "slurm")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: unknown --backend 'slurm': choose one of sequential, ray\n",
    )
    result = invoke(monkeypatch, tracking_store, "sweep", *TINY, *data, "--schedules", "cosine,linear")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: invalid --schedule: unknown schedule 'linear': choose one of constant,"
    )
    assert client_for(tracking_store).search_experiments(filter_string="name = 'pneumonia-zoo'") == []
