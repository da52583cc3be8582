"""train -> register -> promote -> load by alias -> predict, against real MLflow stores."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking import experiment
from pneumonia_zoo.tracking.experiment import train
from pneumonia_zoo.tracking.registry import list_versions, load_version, promote
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import tiny_train_args

CLI = [sys.executable, "-m", "pneumonia_zoo"]


def cli(*args: str, store: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = os.environ | {"MLFLOW_TRACKING_URI": store}
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}")
    return result


def test_cli_train_promote_predict(tracking_store: str, fixture_data: Path, originals: Path) -> None:
    out = cli(
        "train",
        "--arch",
        "small_cnn",
        "--data",
        str(fixture_data),
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--batch-size",
        "8",
        "--bootstrap",
        "100",
        "--no-onnx",
        "-q",
        store=tracking_store,
    )
    assert "registered version 1" in out.stdout
    client = MlflowClient(tracking_store)
    (run,) = client.search_runs([client.get_experiment_by_name("pneumonia-zoo").experiment_id])
    assert run.info.status == "FINISHED"
    for key in ("val_auc", "test_auc", "test_sensitivity_ci_low", "test_auc_ci_high", "threshold"):
        assert key in run.data.metrics, key
    assert run.data.tags["architecture"] == "small_cnn" and run.data.params["image_size"] == "32"
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert [m.step for m in history] == [0, 1, 2]  # two epochs, then the final value of the best model
    assert history[-1].value == run.data.metrics["val_auc"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "splits")}
    assert artifacts == {"splits/train.csv", "splits/val.csv", "splits/test.csv"}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/curves.png", "plots/test_roc_pr.png", "plots/test_misclassified.png"} <= plots
    assert run.inputs.dataset_inputs[0].dataset.name == "chest_xray"
    version = client.get_model_version("pneumonia-classifier", "1")
    assert version.tags["architecture"] == "small_cnn" and "val_auc" in version.tags

    assert "version 1 is now @champion" in cli("promote", store=tracking_store).stdout
    predicted = json.loads(
        cli("predict", str(originals / "IM-0061-0001.jpeg"), "--json", store=tracking_store).stdout
    )
    assert sum(predicted["probabilities"].values()) == pytest.approx(1, abs=1e-6)
    assert predicted["model"] == {"name": "pneumonia-classifier", "version": "1", "architecture": "small_cnn"}
    assert predicted["label"] in ("NORMAL", "PNEUMONIA")

    evaluated = json.loads(
        cli(
            "evaluate", "--data", str(fixture_data), "--json", "--bootstrap", "50", store=tracking_store
        ).stdout
    )
    assert evaluated["images"] == 10 and evaluated["model"]["version"] == "1"
    # The same model on the same split gives the metric the training run logged.
    assert evaluated["metrics"]["auc"] == pytest.approx(run.data.metrics["test_auc"], abs=1e-6)
    on_val = cli(
        "evaluate",
        "--data",
        str(fixture_data),
        "--split",
        "val",
        "--json",
        "--bootstrap",
        "0",
        store=tracking_store,
    )
    assert json.loads(on_val.stdout)["metrics"]["auc"] == pytest.approx(run.data.metrics["val_auc"], abs=1e-6)


def test_cli_bad_data_path_is_one_line_and_nothing_is_logged(tracking_store: str) -> None:
    result = cli("train", "--arch", "small_cnn", "--data", "/nonexistent", store=tracking_store, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: data folder /nonexistent does not exist"]
    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []
    assert list_versions() == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"arch": "inception"}, "invalid --arch: unknown architecture 'inception': choose one of vgg16,"),
        ({"epochs": 0}, "invalid --epochs: Input should be greater than or equal to 1"),
        ({"lr": -1}, "invalid --lr: Input should be greater than 0"),
        ({"schedule": "linear"}, "invalid --schedule: unknown schedule 'linear'"),
        ({"val_fraction": 0.9}, "invalid --val-fraction: Input should be less than 0.5"),
    ],
)
def test_bad_settings_are_one_clear_line(fixture_data: Path, overrides: dict, message: str) -> None:
    with pytest.raises(UserError) as caught:
        TrainConfig.build(**tiny_train_args(fixture_data, **overrides))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_cli_predict_without_champion_says_so(tracking_store: str, originals: Path) -> None:
    result = cli("predict", str(originals / "IM-0061-0001.jpeg"), store=tracking_store, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: models:/pneumonia-classifier@champion does not exist")


def test_failed_run_is_marked_failed_and_registers_nothing(
    tracking_store: str, fixture_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_export(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(experiment, "save_package", broken_export)  # fault injection at the last stage
    with pytest.raises(RuntimeError, match="disk full"):
        train(TrainConfig.build(**tiny_train_args(fixture_data)), quiet=True)
    (run,) = mlflow.search_runs(experiment_names=["pneumonia-zoo"], output_format="list")
    assert run.info.status == "FAILED"
    assert list_versions() == []


def test_ctrl_c_stops_cleanly_and_registers_nothing(tracking_store: str, fixture_data: Path) -> None:
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_store}
    process = subprocess.Popen(
        [
            *CLI,
            "train",
            "--arch",
            "small_cnn",
            "--data",
            str(fixture_data),
            "--epochs",
            "500",
            "--patience",
            "500",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--no-onnx",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines = []
    deadline = time.monotonic() + 180
    for line in process.stdout:  # wait until two epochs have been logged
        lines.append(line)
        if sum("val_auc" in x for x in lines) >= 2 or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(lines) + rest
    assert "marked KILLED, no version registered" in rest
    (run,) = mlflow.search_runs(experiment_names=["pneumonia-zoo"], output_format="list")
    assert run.info.status == "KILLED" and run.data.tags["interrupted"] == "true"
    assert len(MlflowClient().get_metric_history(run.info.run_id, "val_auc")) >= 2
    assert list_versions() == []


def test_pyfunc_loads_by_alias_without_pickles(registered_store: str, monkeypatch, originals: Path) -> None:
    from tests.conftest import use_store

    use_store(monkeypatch, registered_store)
    model = mlflow.pyfunc.load_model("models:/pneumonia-classifier@champion")
    images = [p.read_bytes() for p in sorted(originals.iterdir())]
    frame = model.predict(pd.DataFrame({"image": images}))
    assert list(frame.columns) == ["NORMAL", "PNEUMONIA", "label"]
    assert frame[["NORMAL", "PNEUMONIA"]].sum(axis=1).round(6).tolist() == [1.0, 1.0]
    resolved, package = load_version("models:/pneumonia-classifier@champion")
    assert resolved.aliases == ("champion",) and package.onnx_path is not None
    assert not list(package.directory.parent.parent.rglob("*.pkl"))


def test_promote_picks_best_validation_auc_never_test(tracking_store: str, fixture_data: Path) -> None:
    for seed in (1, 2, 3):
        train(TrainConfig.build(**tiny_train_args(fixture_data, seed=seed, bootstrap=0)), quiet=True)
    client = MlflowClient()
    client.set_model_version_tag("pneumonia-classifier", "1", "val_auc", "0.9")
    client.set_model_version_tag("pneumonia-classifier", "2", "val_auc", "0.9")
    client.set_model_version_tag("pneumonia-classifier", "3", "val_auc", "0.8")
    client.set_model_version_tag("pneumonia-classifier", "1", "val_loss", "0.5")
    client.set_model_version_tag("pneumonia-classifier", "2", "val_loss", "0.4")
    client.set_model_version_tag("pneumonia-classifier", "3", "test_auc", "0.99")
    assert str(promote().version) == "2"  # tie on val_auc broken by the lower val_loss
    assert str(client.get_model_version_by_alias("pneumonia-classifier", "champion").version) == "2"
