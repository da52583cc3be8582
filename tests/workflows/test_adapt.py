"""`adapt`: a new version fitted on a site's FIT images only, registered with its lineage, the champion
untouched; a full package (ONNX, guard, calibration) served and explained like any other; every bad input
refused in one line with nothing registered; nothing of a holdout reaches fitting."""

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.data.discovery import read_manifest
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.errors import InvalidInput, UserError
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import ONNX_FILE, SITE_HEAD_FILE, WEIGHTS_FILE
from pneumonia_zoo.package.io import load_site_head, read_config, sha256_file
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.stats.calibration import apply_temperature
from pneumonia_zoo.workflows.adapt import ADAPT_EXPERIMENT, MIN_IMAGES_PER_CLASS, adapt, read_images
from tests.conftest import FIXTURE_DATA, copy_store, registry_client, store_for
from tests.site_helpers import site_images, write_rows

STARTER = read_config(STARTER_DIR)


def network_dir(member: int | None) -> Path:
    """The site store's champion is the starter: an ensemble is adapted through one member's network."""
    return STARTER_DIR / STARTER.members[member].path if member is not None else STARTER_DIR


def test_after_a_site_version_became_champion_promote_asks_for_a_version(site_store, tmp_path: Path) -> None:
    """The site version has no validation split: no other version's Brier is comparable to it."""
    store = store_for(copy_store(site_store.uri, tmp_path / "mlflow.db"))
    store.set_alias("2")
    with pytest.raises(UserError) as refused:
        store.promote()
    assert str(refused.value) == (
        "no version with a 'val_brier' shares the validation split of the champion (version 2: not recorded, "
        "as for a site version); choose one with --version N"
    )
    assert store.champion_version() == "2"


def test_a_new_version_with_its_lineage_and_the_champion_unmoved(site_store) -> None:
    store = store_for(site_store.uri)
    result = site_store.result
    assert result["version"] == "2" and store.champion_version() == "1"
    parent = dict(result["parent"])
    member = parent.pop("member")
    assert parent == {"version": "1", "uri": "models:/pneumonia-classifier/1"}
    # An ensemble: every member fitted on the same folds, the lowest out-of-fold log loss kept.
    losses = result["member_cv_log_loss"]
    if STARTER.is_ensemble:
        assert sorted(losses) == [str(i) for i in range(len(STARTER.members))]
        assert member == int(min(losses, key=losses.__getitem__))
        assert losses[str(member)] == pytest.approx(result["chosen_by"]["site_head_cv_log_loss"])
        assert len(set(losses.values())) == len(losses)  # different networks, different features
    else:
        assert member is None and losses == {}
    assert result["fit"]["images"] == 84 and result["fit"]["per_class"] == {"NORMAL": 42, "PNEUMONIA": 42}
    assert result["fit"]["sha256"] == read_images(site_store.fit, "FIT").sha256
    assert result["features"] == "both" and result["model"] == "models:/pneumonia-classifier/2"
    record = store.resolve("models:/pneumonia-classifier/2")
    lineage = record.lineage
    assert lineage.site == "fixture-site" and lineage.parent == "1" and lineage.adapted
    assert lineage.fit_digest == result["fit"]["sha256"] and lineage.fit_images == 84
    tags = registry_client(store).get_model_version("pneumonia-classifier", "2").tags
    assert tags["parent_version"] == "1" and tags["adapted"] == "true" and tags["fit_images"] == "84"
    assert float(tags["site_head_C"]) == pytest.approx(result["chosen_by"]["site_head_C"])
    assert record.metric("val_auc") is None  # the parent's validation figure does not describe it
    assert (
        store.validation_split(record) is None
        and "validation_split" in registry_client(store).get_model_version("pneumonia-classifier", "1").tags
    )  # nor does the parent's validation split
    assert record.temperature == pytest.approx(result["chosen_by"]["site_temperature"], abs=1e-4)


def test_the_package_is_the_parents_network_with_the_sites_head(site_store, tmp_path: Path) -> None:
    store = store_for(site_store.uri)
    directory = store.download_package("2", tmp_path)
    config = read_config(directory)
    parent_dir = network_dir(site_store.result["parent"]["member"])
    parent = read_config(parent_dir)
    # The network and its ONNX graph are the parent's, byte for byte; the head, guard and calibration are new.
    for name in (WEIGHTS_FILE, ONNX_FILE):
        assert config.files[name] == parent.files[name]
    assert SITE_HEAD_FILE in config.files and config.guard is not None
    assert config.info.site == "fixture-site" and config.info.parent_version == "1"
    assert config.temperature == pytest.approx(site_store.result["chosen_by"]["site_temperature"])
    assert config.default_operating_point == "balanced"
    assert config.threshold == pytest.approx(site_store.result["operating_points"]["balanced"])
    weight, bias = load_site_head(directory / SITE_HEAD_FILE)
    assert weight.shape == (2, sum(config.guard.part_dims))
    # What it serves: softmax(site head(features) / T) on the parent's features, on both runtimes.
    classifier = load_classifier(directory)
    parent_classifier = load_classifier(parent_dir)
    images = [read_image(s.path, min_side=224) for s in read_manifest(site_store.test)]
    _, features = parent_classifier.members[0].runner(
        parent_classifier.members[0].preprocessing.batch(images)
    )
    expected = apply_temperature(features.astype(np.float64) @ weight.T + bias, config.temperature)
    scores = classifier.predict(images)
    np.testing.assert_allclose(scores.probabilities, expected, atol=1e-6)
    torch_scores = load_classifier(directory, runtime="torch").predict(images)
    np.testing.assert_allclose(torch_scores.probabilities, scores.probabilities, atol=1e-4)
    assert not np.allclose(scores.probabilities, parent_classifier.predict(images).probabilities, atol=1e-3)
    # The explanation reads the site head's weights on the penultimate features.
    member = classifier.members[0]
    assert member.linear_cam and np.array_equal(member.head_weights, weight)
    activations = member.runner.activations(member.preprocessing.batch([images[0]]))[0]
    for class_index in (0, 1):  # the rows are opposite: one class's evidence is the other's absence
        raw = np.maximum(
            np.tensordot(weight[class_index][: activations.shape[0]], activations, axes=(0, 0)), 0
        )
        expected_map = (raw - raw.min()) / (raw.max() - raw.min()) if raw.max() > raw.min() else raw * 0
        np.testing.assert_allclose(
            member.class_activation_map(images[0], class_index), expected_map, atol=1e-6
        )
    assert any(member.class_activation_map(images[0], k).max() > 0 for k in (0, 1))


def test_the_card_says_it_is_adapted_to_one_site(site_store) -> None:
    from pneumonia_zoo.tracking.cards import stored_card

    card = stored_card(store_for(site_store.uri), "2")
    assert card is not None
    assert "Adapted to one site: `fixture-site`" in card and "## Site adaptation" in card
    assert site_store.result["fit"]["sha256"] in card
    assert "Adapted to one site" not in (stored_card(store_for(site_store.uri), "1") or "")


def test_nothing_of_the_holdout_reaches_fitting(site_store, tmp_path: Path) -> None:
    # A copy: the adapt below registers a version, and other test files share the session's site store.
    store = store_for(copy_store(site_store.uri, tmp_path / "mlflow.db"))
    # 1. The holdout's files are not images at all, yet adapt succeeded: they were never decoded.
    holdout = read_manifest(site_store.holdout)
    assert all(not path.read_bytes().startswith(b"\xff\xd8") for path in (s.path for s in holdout))
    # 2. What FIT held, as recorded with the run, has no holdout patient and no holdout file.
    run_id = site_store.result["run_id"]
    table = Path(registry_client(store).download_artifacts(run_id, "adaptation/fit_files.csv", str(tmp_path)))
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == site_store.result["fit"]["images"]
    assert not {r["patient"] for r in rows} & {s.patient for s in holdout}
    assert not {r["sha256"] for r in rows} & {sha256_file(s.path) for s in holdout}
    lines = sorted(f"{r['sha256']},{r['label']},{r['patient']}" for r in rows)
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == site_store.result["fit"]["sha256"]
    # 3. The fit does not depend on the holdout: without one, the same head, temperature and guard.
    again = adapt(
        store, "models:/pneumonia-classifier/1", "fixture-site", manifest=site_store.fit, quiet=True
    )
    first = store.download_package("2", tmp_path / "with")
    second = store.download_package(again.version, tmp_path / "without")
    for name in (SITE_HEAD_FILE, "guard.safetensors"):
        assert sha256_file(first / name) == sha256_file(second / name)
    assert read_config(first).temperature == read_config(second).temperature
    assert store.champion_version() == "1"


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """FIT sets that must be refused."""
    root = tmp_path_factory.mktemp("bad-fit")
    rows = site_images(root / "images", FIXTURE_DATA / "train")
    normal = [r for r in rows if r["label"] == "NORMAL"]
    pneumonia = [r for r in rows if r["label"] == "PNEUMONIA"]
    one_class = root / "one_class"
    (one_class / "NORMAL").mkdir(parents=True)
    for row in normal:
        shutil.copy(row["path"], one_class / "NORMAL")
    unreadable = root / "unreadable.jpeg"
    unreadable.write_bytes(b"\xff\xd8 truncated")
    return {
        "one_class_folder": one_class,
        "one_class_manifest": write_rows(root / "one_class.csv", normal),
        "too_few": write_rows(root / "too_few.csv", normal + pneumonia[: MIN_IMAGES_PER_CLASS - 1]),
        "unreadable": write_rows(
            root / "unreadable.csv",
            [*normal, *pneumonia, {"path": str(unreadable), "label": "NORMAL", "patient": "x", "view": "AP"}],
        ),
        "fit": write_rows(root / "fit.csv", rows),
        "shares_patients": write_rows(root / "shares_patients.csv", [dict(rows[0], path=rows[0]["path"])]),
        "shares_files": write_rows(root / "shares_files.csv", [dict(rows[5], patient="someone-else")]),
    }


@pytest.mark.parametrize(
    ("fit", "holdout", "message"),
    [
        ("one_class_folder", None, "has only NORMAL images: adapt needs both"),
        ("one_class_manifest", None, "has only NORMAL images"),
        (
            "too_few",
            None,
            f"has {MIN_IMAGES_PER_CLASS - 1} PNEUMONIA images: at least {MIN_IMAGES_PER_CLASS}",
        ),
        ("unreadable", None, "1 FIT image(s) could not be read, e.g. unreadable.jpeg"),
        ("fit", "shares_patients", "shares 1 patient(s) with the holdout"),
        ("fit", "shares_files", "share 1 identical image file(s)"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_nothing_is_registered(
    site_store, bad: dict[str, Path], fit: str, holdout: str | None, message: str
) -> None:
    store = store_for(site_store.uri)
    versions = len(store.versions())
    runs = _adapt_runs(store)
    folder = bad[fit].is_dir()
    with pytest.raises(InvalidInput) as refused:
        adapt(
            store,
            store.champion_uri,
            "site",
            manifest=None if folder else bad[fit],
            data=bad[fit] if folder else None,
            holdout=bad[holdout] if holdout else None,
            quiet=True,
        )
    text = str(refused.value)
    assert message in text and "\n" not in text
    assert (
        len(store.versions()) == versions and _adapt_runs(store) == runs and store.champion_version() == "1"
    )


def _adapt_runs(store) -> int:
    experiment = registry_client(store).get_experiment_by_name(ADAPT_EXPERIMENT)
    return len(registry_client(store).search_runs([experiment.experiment_id])) if experiment else 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"site": "a site/with slashes"}, "site name"),
        ({"flag_rate": 0.9}, "flag rate"),
        ({"feature_set": "all"}, "unknown feature set"),
        ({"manifest": None}, "either a manifest or a NORMAL/PNEUMONIA folder"),
        ({"member": 7}, "--member 7: the "),
        ({"member": -1}, "--member -1: the "),
    ],
)
def test_bad_options_are_refused(site_store, kwargs: dict, message: str) -> None:
    store = store_for(site_store.uri)
    options = {"site": "site", "manifest": site_store.fit, "quiet": True} | kwargs
    with pytest.raises(InvalidInput, match=message):
        adapt(store, store.champion_uri, **options)


@pytest.mark.skipif(not STARTER.is_ensemble, reason="the starter is one network: no member to choose")
def test_each_member_asked_for_is_fitted_as_in_the_comparison(site_store, tmp_path: Path) -> None:
    """`--member` forces one: its head's out-of-fold log loss is the one the automatic choice compared
    (same folds), and the version is that member's network."""
    store = store_for(copy_store(site_store.uri, tmp_path / "mlflow.db"))
    compared = site_store.result["member_cv_log_loss"]
    for index in range(len(STARTER.members)):
        result = adapt(
            store, "models:/pneumonia-classifier/1", "site", manifest=site_store.fit, quiet=True, member=index
        )
        assert result.parent_member == index and result.to_dict()["member_cv_log_loss"] == {
            str(index): pytest.approx(compared[str(index)])
        }
        directory = store.download_package(result.version, tmp_path / f"member{index}")
        assert (
            read_config(directory).files[WEIGHTS_FILE] == read_config(network_dir(index)).files[WEIGHTS_FILE]
        )
    assert store.champion_version() == "1"


def test_penultimate_features_write_the_head_into_the_network(tmp_path: Path) -> None:
    """The other feature set: an ordinary package (no site head), its ONNX graph re-exported from the
    network with the site's head, stored in float16 like its parent."""
    from safetensors.numpy import load_file

    from pneumonia_zoo.tracking.publish import register_package
    from tests.package.helpers import make_package

    store = store_for(f"sqlite:///{tmp_path / 'mlflow.db'}")
    make_package(tmp_path / "parent", float16=True)
    register_package(store, tmp_path / "parent", "parent", alias="champion")
    fit = write_rows(tmp_path / "fit.csv", site_images(tmp_path / "fit", FIXTURE_DATA / "train"))
    result = adapt(store, store.champion_uri, "small", manifest=fit, feature_set="penultimate", quiet=True)
    assert store.champion_version() == "1" and result.version == "2"
    directory = store.download_package("2", tmp_path / "adapted")
    config = read_config(directory)
    assert SITE_HEAD_FILE not in config.files and ONNX_FILE in config.files
    assert config.info.weights_dtype == "float16" and config.info.head_features == "penultimate"
    parent_weights = load_file(str(tmp_path / "parent" / WEIGHTS_FILE))
    weights = load_file(str(directory / WEIGHTS_FILE))
    changed = {k for k in weights if not np.array_equal(weights[k], parent_weights[k])}
    assert changed == {"classifier.2.weight", "classifier.2.bias"}
    np.testing.assert_array_equal(weights["classifier.2.weight"].astype(np.float64), result.model.head.weight)
    # Served: the network's own logits are now the site head's, calibrated with the site's temperature.
    parent = load_classifier(tmp_path / "parent")
    images = [read_image(s.path, min_side=48) for s in read_manifest(fit)[:12]]
    _, features = parent.members[0].runner(parent.members[0].preprocessing.batch(images))
    penultimate = features[:, : config.guard.part_dims[0]]
    expected = apply_temperature(result.model.head.logits(penultimate), result.model.temperature)
    onnx = load_classifier(directory).predict(images).probabilities
    np.testing.assert_allclose(onnx, expected, atol=1e-4)
    np.testing.assert_allclose(
        load_classifier(directory, runtime="torch").predict(images).probabilities, onnx, atol=1e-4
    )
    # The site guard scores every image (a float16 precision matrix could overflow to inf and nan).
    scores = load_classifier(directory).predict(images).ood_scores
    assert np.isfinite(scores).all() and (scores < 1).mean() > 0.5
