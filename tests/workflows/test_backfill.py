"""`pneumonia-zoo backfill-guard`: a package made without the out-of-population guard gets one, fitted on
its own training split, thresholded on its own validation split; a registered version is never changed."""

import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from pneumonia_zoo.data.cache import decode_all
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.format import GUARD_FILE
from pneumonia_zoo.package.io import read_config, record_files
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.workflows.starter import export_starter
from tests.conftest import registry_client, store_for
from tests.integration.test_train_register import cli

FLAG_RATE = 0.05


@pytest.fixture(scope="module")
def unguarded(registered_store: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registered version exported, then stripped of its guard as packages made before it were."""
    directory = tmp_path_factory.mktemp("unguarded") / "package"
    export_starter(store_for(registered_store), "models:/pneumonia-classifier/1", directory)
    (directory / GUARD_FILE).unlink()
    config = read_config(directory)
    config.guard = None
    record_files(directory, config)  # model.json no longer lists guard.safetensors
    assert (
        GUARD_FILE not in read_config(directory).files and load_classifier(directory).members[0].guard is None
    )
    return directory


def validation_scores(classifier: Classifier, data: Path) -> np.ndarray:
    """The guard's Mahalanobis scores of the package's own validation split, recomputed here."""
    info = classifier.config.info
    _, val, _ = split_samples(data, info.val_fraction, info.seed, None)
    images = decode_all(val, Preprocessing(classifier.input_size), quiet=True)
    member = classifier.members[0]
    batch = member.preprocessing.batch([images.decoded(i) for i in range(len(images.labels))])
    with torch.inference_mode():
        _, features, _ = member.network(torch.from_numpy(batch))
    assert member.guard is not None
    return member.guard.score(features.numpy())


def test_a_package_folder_gets_its_guard(
    unguarded: Path, registered_store: str, fixture_data: Path, tmp_path: Path
) -> None:
    directory = shutil.copytree(unguarded, tmp_path / "package")
    result = cli("backfill-guard", "--dir", str(directory), "--data", str(fixture_data), "--flag-rate",
                 str(FLAG_RATE), "-q", store=registered_store)  # fmt: skip
    classifier = load_classifier(directory)  # every file's sha256 re-recorded, the guard's included
    config = classifier.config
    assert (directory / GUARD_FILE).is_file() and GUARD_FILE in config.files
    assert config.guard is not None and config.guard.val_flag_rate == FLAG_RATE
    assert config.info.guard == "backfilled"
    scores = validation_scores(classifier, fixture_data)
    assert len(scores) >= 4  # a handful of validation images: check the rule, not the rate
    assert config.guard.threshold == pytest.approx(float(np.quantile(scores, 1 - FLAG_RATE)), rel=1e-5)
    flagged = float((scores > config.guard.threshold).mean())
    (reported,) = re.findall(r"guard added, ([\d.]+)% of validation images flagged", result.stdout)
    assert float(reported) == pytest.approx(flagged * 100, abs=0.05)
    image = read_image(
        sorted((fixture_data / "test" / "NORMAL").iterdir())[0], min_side=classifier.input_size
    )
    assert np.isfinite(classifier.predict([image]).ood_scores).all()  # the guard now scores every image


def test_a_registered_version_gets_a_new_guarded_version(
    unguarded: Path, fixture_data: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = store_for(uri)
    store.activate()
    with mlflow.start_run(run_name="made-before-the-guard"):
        assert publish(store, unguarded) == "1"
    before = registry_client(store).get_model_version("pneumonia-classifier", "1")
    assert before.tags["guard"] == "False"

    result = cli("backfill-guard", "--model", "models:/pneumonia-classifier/1", "--data", str(fixture_data),
                 "-q", store=uri)  # fmt: skip
    assert result.stdout.strip().splitlines()[-1] == "registered version 2 (with its guard)"
    new = registry_client(store).get_model_version("pneumonia-classifier", "2")
    assert new.tags["backfilled_from"] == "1" and new.tags["guard"] == "True"
    assert registry_client(store).get_run(new.run_id).data.tags["backfilled_from"] == "1"
    _, guarded = store.load("models:/pneumonia-classifier/2", destination=tmp_path / "v2")
    assert guarded.members[0].guard is not None and guarded.config.guard is not None
    assert guarded.config.metrics["val_flag_rate"] == pytest.approx(
        float((validation_scores(guarded, fixture_data) > guarded.config.guard.threshold).mean())
    )
    # Version 1 is left as it was: same tags, same files, still no guard.
    after = registry_client(store).get_model_version("pneumonia-classifier", "1")
    assert after.tags == before.tags
    _, original = store.load("models:/pneumonia-classifier/1", destination=tmp_path / "v1")
    assert original.config.guard is None and original.config.files == read_config(unguarded).files
