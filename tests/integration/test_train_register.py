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

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows import train as recipe
from pneumonia_zoo.workflows.train import train
from tests.conftest import mlflow_globals, registry_client, store_for, tiny_train_args
from tests.servers import stop

CLI = [sys.executable, "-m", "pneumonia_zoo"]


def cli(*args: str, store: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    env = os.environ | {"MLFLOW_TRACKING_URI": store}
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}")
    return result


def test_cli_train_promote_predict(
    tracking_store: str, fixture_data: Path, originals: Path, tmp_path: Path
) -> None:
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
    assert "already exists" not in out.stdout + out.stderr  # a brand-new store has no registered model yet
    store = store_for(tracking_store)
    client = registry_client(store)
    (run,) = client.search_runs([client.get_experiment_by_name("pneumonia-zoo").experiment_id])
    assert run.info.status == "FINISHED"
    for key in (
        "val_auc",
        "test_auc",
        "test_sensitivity_ci_low",
        "test_auc_ci_high",
        "threshold",
        "temperature",
        "test_ece",
        "test_brier",
        "val_ece",
        "test_flag_rate",
        "val_flag_rate",
        "test_images",
        "robust_jpeg30_agreement",
        "robust_scale0.5_mean_dp",
        "robust_width1.25_agreement",
        "test/sensitivity_95/sensitivity",
    ):
        assert key in run.data.metrics, key
    assert run.data.tags["architecture"] == "small_cnn" and run.data.params["image_size"] == "32"
    assert run.data.params["aug_jpeg_p"] == "0.75"  # the augmentation is logged, option by option
    history = client.get_metric_history(run.info.run_id, "val_auc")
    assert [m.step for m in history] == [0, 1, 2]  # two epochs, then the final value of the packaged model
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "splits")}
    assert artifacts == {"splits/train.csv", "splits/val.csv", "splits/test.csv"}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {
        "plots/curves.png",
        "plots/test_roc_pr.png",
        "plots/test_misclassified.png",
        "plots/test_reliability.png",
        "plots/val_reliability.png",
    } <= plots
    assert "model_card.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert run.inputs.dataset_inputs[0].dataset.name == "chest_xray"
    version = client.get_model_version("pneumonia-classifier", "1")
    assert version.tags["architecture"] == "small_cnn" and "val_auc" in version.tags
    assert version.tags["guard"] == "True" and version.tags["operating_point"] == "balanced"

    # The split CSVs logged with the run put no patient on two sides (downloaded into the test's folder:
    # without a destination MLflow makes a temporary folder it never removes).
    splits = {
        name: pd.read_csv(client.download_artifacts(run.info.run_id, f"splits/{name}.csv", str(tmp_path)))
        for name in ("train", "val")
    }
    assert not set(splits["train"]["patient"]) & set(splits["val"]["patient"])

    assert "version 1 is now @champion" in cli("promote", store=tracking_store).stdout
    image = originals / "IM-0061-0001.jpeg"
    predicted = json.loads(cli("predict", str(image), "--json", store=tracking_store).stdout)
    assert sum(predicted["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert predicted["model"] == {
        "name": "pneumonia-classifier",
        "version": "1",
        "architecture": "small_cnn",
        "runtime": "torch",
    }
    assert predicted["filename"] == str(image) and predicted["label"] in ("NORMAL", "PNEUMONIA")
    assert {"operating_point", "uncertain", "out_of_population", "threshold"} <= set(predicted)

    evaluated = json.loads(
        cli(
            "evaluate", "--data", str(fixture_data), "--json", "--bootstrap", "50", store=tracking_store
        ).stdout
    )
    assert evaluated["data"]["images"] == 10 and evaluated["model"]["version"] == "1"
    # The same package on the same split gives the metrics the training run logged. Brier and ECE, which
    # move continuously with the probabilities: this 2-epoch model scores every image about 0.504, so
    # float noise of 1e-7 between two processes can reorder images and move the AUC of 10 by a lot.
    assert evaluated["calibration"]["brier"] == pytest.approx(run.data.metrics["test_brier"], abs=1e-6)
    assert evaluated["calibration"]["ece"] == pytest.approx(run.data.metrics["test_ece"], abs=1e-6)
    assert evaluated["robustness"]["robust_jpeg30_agreement"] == pytest.approx(
        run.data.metrics["robust_jpeg30_agreement"], abs=1e-9
    )
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
    on_val_brier = json.loads(on_val.stdout)["calibration"]["brier"]
    assert on_val_brier == pytest.approx(run.data.metrics["val_brier"], abs=1e-6)  # the package's own split


def test_cli_bad_data_path_is_one_line_and_nothing_is_logged(tracking_store: str) -> None:
    result = cli("train", "--arch", "small_cnn", "--data", "/nonexistent", store=tracking_store, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: data folder /nonexistent does not exist"]
    store = store_for(tracking_store)
    assert (
        registry_client(store).search_runs(
            [e.experiment_id for e in registry_client(store).search_experiments()]
        )
        == []
    )
    assert store.versions() == []


def test_a_typo_is_refused_before_torch_or_mlflow_load(tracking_store: str) -> None:
    code = """
import sys
from pneumonia_zoo.cli import main
sys.argv = ["pneumonia-zoo", "train", "--arch", "resnet5", "--data", "."]
try:
    main()
except SystemExit as exit:
    print(exit.code, "torch" in sys.modules, "mlflow" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False", "False"]
    assert "resnet5" in result.stderr


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

    monkeypatch.setattr(recipe, "write_single", broken_export)  # fault injection at the packaging stage
    store = store_for(tracking_store)
    with pytest.raises(RuntimeError, match="disk full"):
        train(TrainConfig.build(**tiny_train_args(fixture_data)), store, quiet=True)
    (run,) = registry_client(store).search_runs(
        [registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id]
    )
    assert run.info.status == "FAILED"
    assert store.versions() == []


def test_ctrl_c_stops_cleanly_and_registers_nothing(tracking_store: str, fixture_data: Path) -> None:
    env = os.environ | {"MLFLOW_TRACKING_URI": tracking_store}
    command = [
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
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    try:
        lines = []
        deadline = time.monotonic() + 180
        assert process.stdout is not None
        for line in process.stdout:  # wait until two epochs have been logged
            lines.append(line)
            if sum("val_auc" in x for x in lines) >= 2 or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=120)
    finally:
        stop(process)  # the whole process group, whatever happened above
    assert process.returncode == 130, "".join(lines) + rest
    assert "marked KILLED, no version registered" in rest
    store = store_for(tracking_store)
    (run,) = registry_client(store).search_runs(
        [registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id]
    )
    assert run.info.status == "KILLED" and run.data.tags["interrupted"] == "true"
    assert len(registry_client(store).get_metric_history(run.info.run_id, "val_auc")) >= 2
    assert store.versions() == []


def test_pyfunc_loads_by_alias_without_pickles(
    registered_store: str, monkeypatch, originals: Path, tmp_path: Path
) -> None:
    with mlflow_globals(registered_store):  # MLflow's fluent API is global; the registry follows it
        model = mlflow.pyfunc.load_model("models:/pneumonia-classifier@champion")
    images = [p.read_bytes() for p in sorted(originals.iterdir())]
    frame = model.predict(pd.DataFrame({"image": images}), params={"operating_point": "sensitivity_95"})
    assert list(frame.columns) == [
        "NORMAL",
        "PNEUMONIA",
        "label",
        "operating_point",
        "threshold",
        "uncertain",
        "ood_score",
        "out_of_population",
    ]
    assert frame[["NORMAL", "PNEUMONIA"]].sum(axis=1).round(6).tolist() == [1.0, 1.0]
    assert set(frame["operating_point"]) == {"sensitivity_95"}
    store = store_for(registered_store)
    resolved, classifier = store.load(
        "models:/pneumonia-classifier@champion", destination=tmp_path / "champion"
    )
    assert resolved.aliases == ["champion"] and classifier.members[0].onnx_path is not None
    assert not list(classifier.directory.parent.parent.rglob("*.pkl"))


def test_promote_picks_best_validation_auc_never_test(tracking_store: str, fixture_data: Path) -> None:
    store = store_for(tracking_store)
    for lr in (1e-3, 2e-3, 3e-3):  # one validation split: versions on different ones are not ranked together
        train(TrainConfig.build(**tiny_train_args(fixture_data, lr=lr, bootstrap=0)), store, quiet=True)
    client = registry_client(store)
    client.set_model_version_tag("pneumonia-classifier", "1", "val_auc", "0.9")
    client.set_model_version_tag("pneumonia-classifier", "2", "val_auc", "0.9")
    client.set_model_version_tag("pneumonia-classifier", "3", "val_auc", "0.8")
    client.set_model_version_tag("pneumonia-classifier", "1", "val_loss", "0.5")
    client.set_model_version_tag("pneumonia-classifier", "2", "val_loss", "0.4")
    client.set_model_version_tag("pneumonia-classifier", "3", "test_auc", "0.99")
    assert str(store.promote("val_auc").version) == "2"  # tie on val_auc broken by the lower val_loss
    assert store.champion_version() == "2"
    # The default rule: the lowest validation Brier score (a proper score of the calibrated model).
    client.set_model_version_tag("pneumonia-classifier", "1", "val_brier", "0.020000")
    client.set_model_version_tag("pneumonia-classifier", "2", "val_brier", "0.030000")
    client.set_model_version_tag("pneumonia-classifier", "3", "val_brier", "0.010000")
    assert store.promote().version == "3" and store.champion_version() == "3"
    with pytest.raises(UserError, match="validation metric"):
        store.promote("test_auc")


def test_promote_ranks_only_versions_validated_on_the_champions_split(
    tracking_store: str, fixture_data: Path
) -> None:
    store = store_for(tracking_store)
    for split in ("random", "earliest", "earliest"):
        config = TrainConfig.build(**tiny_train_args(fixture_data, val_split=split, bootstrap=0))
        train(config, store, quiet=True)
    client = registry_client(store)
    for version, brier in (("1", "0.001"), ("2", "0.030"), ("3", "0.020")):
        client.set_model_version_tag("pneumonia-classifier", version, "val_brier", brier)
    # Version 1 registered before the tag existed: its run's parameters say which split it was.
    client.delete_model_version_tag("pneumonia-classifier", "1", "validation_split")
    assert [store.validation_split(v) for v in store.versions()] == [
        "random 0.15 seed 42",
        "earliest 0.15",
        "earliest 0.15",
    ]
    # No champion and two splits: the lowest Brier (version 1) is on other images, so nothing is chosen.
    refused = cli("promote", store=tracking_store, check=False)
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        "error: the versions were validated on different splits (earliest 0.15, random 0.15 seed 42): their "
        "val_brier values are not comparable; choose one with --version N (later promotions rank the "
        "versions validated on its split)"
    ]
    assert store.champion_version() is None
    cli("promote", "--version", "2", store=tracking_store)
    moved = cli("promote", store=tracking_store)
    assert moved.stdout.splitlines() == [
        "pneumonia-classifier version 3 is now @champion (val_brier 0.020000)",
        "ranked 2 version(s) on validation split earliest 0.15",
        "1 version(s) validated on other splits not compared (promote --version N moves to one of them)",
    ]
    assert store.champion_version() == "3"


def test_the_package_logged_is_the_package_that_loads(registered_store: str, tmp_path: Path) -> None:
    """The run's metrics were measured on the package as registered (its own files, its runtime)."""
    store = store_for(registered_store)
    resolved, classifier = store.load(
        "models:/pneumonia-classifier@champion", destination=tmp_path / "champion"
    )
    run = registry_client(store).get_run(resolved.run_id)
    assert classifier.config.metrics["test_auc"] == pytest.approx(run.data.metrics["test_auc"])
    assert load_classifier(classifier.directory).config.operating_points == classifier.config.operating_points


def test_train_seed_reruns_on_the_same_validation_patients(
    tracking_store: str, fixture_data: Path, tmp_path: Path
) -> None:
    """--train-seed changes what training draws (initialisation, batches, augmentation) and nothing of the
    split: the rerun is validated on the same images, so promote ranks it with the first; the same value
    as --seed is the first run again, to the last digit."""
    store = store_for(tracking_store)
    runs = {}
    for name, train_seed in (("first", None), ("rerun", 7), ("same", 42)):
        config = TrainConfig.build(
            **tiny_train_args(fixture_data, bootstrap=0, seed=42, train_seed=train_seed)
        )
        runs[name] = train(config, store, quiet=True)
    client = registry_client(store)
    val_files = {
        name: Path(
            client.download_artifacts(outcome.run_id, "splits/val.csv", str(tmp_path / name))
        ).read_text()
        for name, outcome in runs.items()
    }
    assert val_files["first"] == val_files["rerun"] == val_files["same"]
    metrics = {name: outcome.metrics for name, outcome in runs.items()}
    assert metrics["same"]["val_loss"] == metrics["first"]["val_loss"]
    assert metrics["rerun"]["val_loss"] != metrics["first"]["val_loss"]
    assert {store.validation_split(v) for v in store.versions()} == {"random 0.15 seed 42"}
    assert (
        "--train-seed 7" in TrainConfig.build(**tiny_train_args(fixture_data, train_seed=7)).train_command()
    )
