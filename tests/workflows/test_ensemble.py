"""`pneumonia-zoo ensemble`: two registered versions become a third, with its own operating points and
guard chosen on the members' common validation split; every runtime and caller gives the same answer."""

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.evaluation.report import evaluate
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import WEIGHTS_FILE
from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.stats.operating_points import choose_operating_points
from pneumonia_zoo.tracking.cards import version_card
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.train import train
from tests.cli.helpers import run_cli_here
from tests.conftest import (
    FIXTURE_DATA,
    SCRATCH_SEED,
    copy_store,
    mlflow_globals,
    registry_client,
    store_for,
    tiny_train_args,
)
from tests.integration.test_train_register import cli

MEMBERS = ("models:/pneumonia-classifier/1", "models:/pneumonia-classifier/2")
FLAG_RATE = 0.02  # the ensemble command's default


@pytest.fixture(scope="module")
def ensemble_version(scratch_store: str, fixture_data: Path) -> str:
    before = store_for(scratch_store).versions()
    members = [word for uri in MEMBERS for word in ("--member", uri)]
    result = cli(
        "ensemble", *members, "--data", str(fixture_data), "--bootstrap", "50", "-q", store=scratch_store
    )
    (version,) = re.findall(r"^registered version (\d+)$", result.stdout, re.MULTILINE)
    assert version == str(len(before) + 1)
    return version


@pytest.fixture(scope="module")
def ensemble_dir(scratch_store: str, ensemble_version: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return store_for(scratch_store).download_package(ensemble_version, tmp_path_factory.mktemp("ensemble"))


def validation_images(fixture_data: Path, size: int):
    """The members' validation split, rebuilt from their seed (0.15 of the patients, as trained)."""
    _, val, _ = split_samples(fixture_data, 0.15, SCRATCH_SEED, None)
    return decode_all(val, Preprocessing(size), quiet=True)


def test_the_ensemble_is_registered_with_two_members(
    scratch_store: str, ensemble_version: str, ensemble_dir: Path, tmp_path: Path
) -> None:
    store = store_for(scratch_store)
    ensemble = load_classifier(ensemble_dir)
    assert ensemble.config.is_ensemble and [m.path for m in ensemble.config.members] == [
        "members/0",
        "members/1",
    ]
    for index, uri in enumerate(MEMBERS):  # each member is the registered package, byte for byte
        _, member = store.load(uri, destination=tmp_path / str(index))
        assert ensemble.members[index].config.files[WEIGHTS_FILE] == member.config.files[WEIGHTS_FILE]
        assert ensemble.members[index].config.temperature == member.config.temperature
    version = registry_client(store).get_model_version("pneumonia-classifier", ensemble_version)
    assert version.tags["kind"] == "ensemble" and version.tags["architecture"] == "ensemble"
    assert version.tags["members"] == "small_cnn,small_cnn" and version.tags["guard"] == "True"
    # The members' input size (both members have the same): the tag once held their architectures.
    member_size = ensemble.members[0].preprocessing.image_size
    assert version.tags["image_size"] == str(member_size)
    assert store.resolve(store.version_uri(ensemble_version)).image_size == member_size
    run = registry_client(store).get_run(version.run_id)
    assert run.data.tags["ensemble"] == "true" and run.data.params["members"] == ",".join(MEMBERS)
    card = version_card(store, ensemble_version)
    assert f"version {ensemble_version} (ensemble of small_cnn, small_cnn)" in card
    assert f"pneumonia-zoo ensemble --member {MEMBERS[0]} --member {MEMBERS[1]} --data" in card


def test_operating_points_and_guard_are_its_own_chosen_on_validation(
    ensemble_dir: Path, fixture_data: Path
) -> None:
    ensemble = load_classifier(ensemble_dir)
    config = ensemble.config
    val = predict_images(ensemble, validation_images(fixture_data, ensemble.input_size))
    prior = float(np.mean([m.config.info.prior for m in ensemble.members]))
    expected = choose_operating_points(val.labels, val.probs, prior)
    assert set(config.operating_points) == set(expected)
    for name, point in expected.items():
        assert config.operating_points[name].threshold == pytest.approx(point.threshold, abs=1e-6), name
    # The guard's threshold on the largest member ratio flags FLAG_RATE of validation: in the ensemble's
    # own score (ratio / threshold) the (1 - rate) quantile of validation is therefore 1.
    assert config.guard is not None and config.guard.val_flag_rate == FLAG_RATE
    assert np.quantile(val.ood_scores, 1 - FLAG_RATE) == pytest.approx(1.0, rel=1e-5)
    # Its metrics are its own: recomputed on validation, and the test split was bootstrapped.
    assert config.metrics["val_auc"] == pytest.approx(
        evaluate("val", val, config, bootstrap=0).metrics["auc"]
    )
    assert config.metrics["val_images"] == len(val.labels) and config.metrics["test_images"] == 10
    assert (
        config.metrics["test_auc_ci_low"] <= config.metrics["test_auc"] <= config.metrics["test_auc_ci_high"]
    )
    assert config.metrics["members"] == 2


def test_onnx_and_torch_runtimes_agree(ensemble_dir: Path, originals: Path) -> None:
    by_runtime = {runtime: load_classifier(ensemble_dir, runtime) for runtime in ("onnx", "torch")}
    assert {runtime: c.runtime for runtime, c in by_runtime.items()} == {"onnx": "onnx", "torch": "torch"}
    size = by_runtime["onnx"].input_size
    images = [read_image(path, min_side=size) for path in sorted(originals.iterdir())]
    onnx, torch = (by_runtime[runtime].predict(images) for runtime in ("onnx", "torch"))
    np.testing.assert_allclose(onnx.probabilities, torch.probabilities, atol=1e-4)
    np.testing.assert_allclose(onnx.ood_scores, torch.ood_scores, rtol=1e-3)
    np.testing.assert_array_equal(onnx.ood_flags, torch.ood_flags)


def test_members_that_preprocess_alike_share_one_input(ensemble_dir: Path, originals: Path) -> None:
    """Both members take the same preprocessing: each image is resized and normalised once, the one array
    read by both networks, and the answer is the average of each member's own prediction."""
    from pneumonia_zoo.serving.inference import input_bytes

    ensemble = load_classifier(ensemble_dir)
    first, second = ensemble.members
    assert first.preprocessing == second.preprocessing and ensemble.views == ["identity"]
    images = [read_image(path, min_side=ensemble.input_size) for path in sorted(originals.iterdir())]
    batches = ensemble.preprocess(images)
    assert len(batches) == 2 and batches[0] is batches[1]
    assert input_bytes(ensemble) == 4 * 3 * first.preprocessing.image_size**2
    alone = [load_classifier(member.directory).predict(images).probabilities for member in ensemble.members]
    expected = sum(w * p for w, p in zip(ensemble.weights, alone, strict=True))
    np.testing.assert_allclose(ensemble.predict(images).probabilities, expected, atol=1e-6)


def test_predict_json_and_the_pyfunc_agree(
    scratch_store: str, ensemble_version: str, originals: Path
) -> None:
    uri = f"models:/pneumonia-classifier/{ensemble_version}"
    paths = sorted(originals.iterdir())
    records = json.loads(
        cli("predict", *map(str, paths), "--model", uri, "--json", store=scratch_store).stdout
    )
    assert [r["model"]["version"] for r in records] == [ensemble_version] * len(paths)
    with mlflow_globals(scratch_store):
        model = mlflow.pyfunc.load_model(uri)
    frame = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in paths]}))
    np.testing.assert_allclose(
        frame["PNEUMONIA"].to_numpy(), [r["probabilities"]["PNEUMONIA"] for r in records], atol=1e-4
    )
    assert list(frame["label"]) == [r["label"] for r in records]


def ensemble_runs(scratch_store: str) -> list:
    store = store_for(scratch_store)
    experiment = registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id
    return registry_client(store).search_runs([experiment], "tags.ensemble = 'true'")


@pytest.mark.parametrize(
    ("change", "differing"), [({"seed": 7}, "seed"), ({"val_split": "earliest"}, "val_split")]
)
def test_members_trained_on_different_splits_are_refused(
    scratch_store: str,
    fixture_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    change: dict,
    differing: str,
) -> None:
    store = store_for(scratch_store)
    other_split = train(
        TrainConfig.build(**tiny_train_args(fixture_data, bootstrap=0, **change)), store, quiet=True
    ).version
    versions, runs = len(store.versions()), len(ensemble_runs(scratch_store))
    members = ["--member", MEMBERS[0], "--member", f"models:/pneumonia-classifier/{other_split}"]
    result = run_cli_here(
        monkeypatch, capsys, scratch_store, "ensemble", *members, "--data", str(fixture_data), "-q"
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: the members were trained on different validation splits ({differing} differ): an ensemble's "
        "validation numbers would include images some members trained on"
    ]
    assert len(store.versions()) == versions and len(ensemble_runs(scratch_store)) == runs


def test_a_single_member_is_refused(
    scratch_store: str, fixture_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    versions = len(store_for(scratch_store).versions())
    result = run_cli_here(
        monkeypatch, capsys, scratch_store, "ensemble", "--member", MEMBERS[0], "--data", str(fixture_data)
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: an ensemble needs at least two --member versions"]
    assert len(store_for(scratch_store).versions()) == versions


def test_an_ensemble_is_adapted_through_the_member_the_site_fits_best(
    scratch_store: str, ensemble_version: str, ensemble_dir: Path, tmp_path: Path
) -> None:
    """The champion may be an ensemble (promote ranks it with the rest): adapt fits the site on each
    member's features and registers the member with the lowest out-of-fold log loss, with the site's head
    (it refused ensembles, then always took the member the ensemble explains with)."""
    from pneumonia_zoo.workflows.adapt import adapt
    from tests.site_helpers import site_images, write_rows

    store = store_for(copy_store(scratch_store, tmp_path / "mlflow.db"))
    fit = write_rows(tmp_path / "fit.csv", site_images(tmp_path / "fit", FIXTURE_DATA / "train"))
    uri = f"models:/pneumonia-classifier/{ensemble_version}"
    result = adapt(store, uri, "site-a", manifest=fit, quiet=True)
    ensemble = read_config(ensemble_dir)
    losses = result.member_cv_log_loss
    assert sorted(losses) == list(range(len(ensemble.members)))
    chosen = min(losses, key=losses.__getitem__)
    member = read_config(ensemble_dir / ensemble.members[chosen].path)
    assert result.parent.version == ensemble_version and result.parent_member == chosen
    assert result.to_dict()["parent"] == {"version": ensemble_version, "uri": uri, "member": chosen}
    logged = registry_client(store).get_run(result.run_id).data
    assert logged.params["parent_member"] == str(chosen)
    assert {k: v for k, v in logged.metrics.items() if k.startswith("site_member")} == pytest.approx(
        {f"site_member{i}_cv_log_loss": loss for i, loss in losses.items()}
    )
    directory = store.download_package(result.version, tmp_path / "adapted")
    adapted = read_config(directory)
    assert not adapted.is_ensemble and adapted.architecture == member.architecture
    assert adapted.info.parent_version == ensemble_version and adapted.info.head_features == "both"
    assert adapted.files[WEIGHTS_FILE] == member.files[WEIGHTS_FILE]  # that member's network, unchanged
    images = [
        read_image(path, min_side=member.preprocessing.image_size)
        for path in sorted(FIXTURE_DATA.rglob("*.jpeg"))[:4]
    ]
    assert load_classifier(directory).predict(images).probabilities.shape == (4, 2)
