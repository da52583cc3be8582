"""The starter model: exported from a registered version (package + card), registered as champion only
when the registry has none, and never registered twice."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.format import CONFIG_FILE, GUARD_FILE, ONNX_FILE, WEIGHTS_FILE
from pneumonia_zoo.package.io import read_config, record_files, sha256_file
from pneumonia_zoo.tracking.params import train_command, train_config_from_params
from pneumonia_zoo.tracking.records import PACKAGE_SHA_TAG
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.starter import MODEL_CARD, add_reference, ensure_champion, export_starter
from tests.conftest import all_runs, registry_client, store_for
from tests.integration.test_train_register import cli
from tests.training.test_config import parse_train_command

CHAMPION = "models:/pneumonia-classifier@champion"


def check_images(fixture_data: Path) -> list[Path]:
    return sorted((fixture_data / "test").rglob("*.jpeg"))[:4]


def probabilities(classifier: Classifier, paths: list[Path]) -> np.ndarray:
    return classifier.predict([read_image(p, min_side=classifier.input_size) for p in paths]).probabilities


def fresh_store(tmp_path: Path, name: str) -> Store:
    return store_for(f"sqlite:///{tmp_path / name / 'mlflow.db'}")


@pytest.fixture(scope="module")
def exported(registered_store: str, tmp_path_factory: pytest.TempPathFactory, fixture_data: Path) -> Path:
    """The registered store's champion exported as a starter folder (float32)."""
    out = tmp_path_factory.mktemp("exported") / "starter"
    result = export_starter(
        store_for(registered_store), CHAMPION, out, check_images=check_images(fixture_data)
    )
    assert result.max_probability_change == 0.0  # float32 weights: the very same model
    return result.directory


def test_export_writes_a_verified_package_and_a_model_card(
    exported: Path, registered_store: str, tmp_path: Path
) -> None:
    store = store_for(registered_store)
    resolved, source = store.load(CHAMPION, destination=tmp_path)
    assert {p.name for p in exported.iterdir()} == {
        CONFIG_FILE,
        WEIGHTS_FILE,
        ONNX_FILE,
        GUARD_FILE,
        MODEL_CARD,
    }
    for copied in (ONNX_FILE, WEIGHTS_FILE, GUARD_FILE):  # copied as they are
        assert sha256_file(exported / copied) == source.config.files[copied]
    package = load_classifier(exported)
    assert package.config.metrics == source.config.metrics
    assert package.config.operating_points == source.config.operating_points
    assert package.config.info.source_model == f"models:/{resolved.name}/{resolved.version}"

    card = (exported / MODEL_CARD).read_text()
    run = registry_client(store).get_run(source.config.info.run_id)
    metrics = source.config.metrics
    auc = f"{metrics['test_auc']:.3f} [{metrics['test_auc_ci_low']:.3f}, {metrics['test_auc_ci_high']:.3f}]"
    assert f"| ROC AUC | {metrics['val_auc']:.3f} | {auc} |" in card
    default = source.config.default_operating_point
    assert f"| **{default}** (default) | {source.config.threshold:.4f} |" in card
    assert f"| sensitivity_95 | {source.config.operating_points['sensitivity_95'].threshold:.4f} |" in card
    assert f"| test | {run.data.params['n_test']} |" in card
    assert f"Exported from `models:/{resolved.name}/{resolved.version}`." in card
    assert "not a diagnostic device" in card
    command = train_command(run.data.params)
    assert f"```bash\n{command}\n```" in card


def test_train_command_parses_back_to_the_runs_params(registered_store: str) -> None:
    store = store_for(registered_store)
    (run,) = registry_client(store).search_runs(
        [registry_client(store).get_experiment_by_name("pneumonia-zoo").experiment_id]
    )
    logged = train_config_from_params(run.data.params)
    rebuilt = parse_train_command(logged.train_command())
    assert rebuilt == logged.model_copy(update={"run_name": None, "data": logged.data.resolve()})
    # Every field is a param (None ones are not logged: they are the defaults), augmentation included.
    for key, value in rebuilt.model_copy(update={"data": logged.data}).flat().items():
        if key == "run_name" or value is None:
            assert key not in run.data.params or key == "run_name", key
            continue
        assert key in run.data.params, f"{key} is not logged as a param"
        assert run.data.params[key] == str(value), key


def test_ensure_champion_registers_the_starter_once_and_never_overrides(
    exported: Path, tmp_path: Path, fixture_data: Path
) -> None:
    store = fresh_store(tmp_path, "fresh")
    config = json.loads((exported / CONFIG_FILE).read_text())

    assert ensure_champion(store, exported) == "1"
    assert store.champion_version() == "1"
    (version,) = store.versions()
    assert version.lineage.starter is True
    assert version.lineage.package_sha256 == sha256_file(exported / CONFIG_FILE)
    raw = registry_client(store).get_model_version("pneumonia-classifier", "1").tags
    assert raw[PACKAGE_SHA_TAG] == version.lineage.package_sha256 and raw["starter"] == "true"
    assert raw["val_auc"] == f"{config['metrics']['val_auc']:.6f}"
    assert version.architecture == config["architecture"]
    assert version.image_size == config["preprocessing"]["image_size"]
    assert version.onnx is True and version.guard is True
    (run,) = all_runs(store)
    assert run.data.tags["starter"] == "true" and run.info.run_id == version.run_id
    _, served = store.load(CHAMPION, destination=tmp_path / "served")
    paths = check_images(fixture_data)
    np.testing.assert_array_equal(
        probabilities(served, paths), probabilities(load_classifier(exported), paths)
    )

    assert ensure_champion(store, exported) == "1"  # idempotent: nothing new
    assert len(store.versions()) == 1 and len(all_runs(store)) == 1

    registry_client(store).delete_registered_model_alias("pneumonia-classifier", "champion")
    assert ensure_champion(store, exported) == "1"  # no champion: the same starter version is reused
    assert store.champion_version() == "1" and len(store.versions()) == 1 and len(all_runs(store)) == 1


def test_fp16_export_is_smaller_and_predicts_the_same(
    registered_store: str, tmp_path: Path, fixture_data: Path
) -> None:
    source = store_for(registered_store)
    full = export_starter(source, CHAMPION, tmp_path / "full")
    half = export_starter(
        source, CHAMPION, tmp_path / "half", float16=True, check_images=check_images(fixture_data)
    )
    assert half.float16 and not full.float16
    weights = {
        name: (result.directory / WEIGHTS_FILE).stat().st_size
        for name, result in (("full", full), ("half", half))
    }
    assert weights["half"] < 0.6 * weights["full"] and half.total_bytes < full.total_bytes
    with safe_open(str(half.directory / WEIGHTS_FILE), "pt") as handle:
        dtypes = {str(handle.get_tensor(k).dtype) for k in handle.keys()}  # noqa: SIM118
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    assert half.max_probability_change is not None and half.max_probability_change < 1e-2
    assert load_classifier(half.directory).config.info.weights_dtype == "float16"

    # On a fresh store: a champion is kept; a different starter registers only without one.
    store = fresh_store(tmp_path, "fresh")
    assert ensure_champion(store, full.directory) == "1"
    assert ensure_champion(store, half.directory) == "1"
    assert len(store.versions()) == 1
    registry_client(store).delete_registered_model_alias("pneumonia-classifier", "champion")
    assert ensure_champion(store, half.directory) == "2"
    assert store.champion_version() == "2" and len(store.versions()) == 2


def test_a_trained_champion_is_never_overridden(exported: Path, registered_store: str) -> None:
    store = store_for(registered_store)
    before = [(v.version, tuple(v.aliases)) for v in store.versions()]
    champion = store.champion_version()
    assert ensure_champion(store, exported) == champion
    assert [(v.version, tuple(v.aliases)) for v in store.versions()] == before


def test_no_starter_shipped_registers_nothing(registered_store: str, tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("pneumonia_zoo.workflows.starter")
    logger.addHandler(handler)
    store = store_for(registered_store)
    before = [str(v.version) for v in store.versions()]
    try:
        assert ensure_champion(store, tmp_path / "missing") is None
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "no starter model is shipped" in records[0].getMessage()
    assert [str(v.version) for v in store.versions()] == before


def test_register_starter_cli(exported: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'cli' / 'mlflow.db'}"
    result = cli("register-starter", "--dir", str(exported), store=uri)
    assert "pneumonia-classifier@champion is version 1" in result.stdout
    assert store_for(uri).champion_version() == "1"


def test_a_package_without_a_drift_reference_gets_the_one_training_would_have_kept(
    exported: Path, tmp_path: Path, fixture_data: Path
) -> None:
    """add_reference rebuilds the validation split from the package's own seed and scores it as served:
    the distributions training keeps, up to the decoding path (training's cache vs a fresh decode: P
    differs by a few thousandths)."""
    kept = read_config(exported).reference
    assert kept is not None
    package = tmp_path / "package"
    shutil.copytree(exported, package, ignore=shutil.ignore_patterns(MODEL_CARD))
    config = read_config(package)
    config.reference = None
    record_files(package, config)
    add_reference(package, fixture_data)
    rebuilt = read_config(package).reference
    assert rebuilt is not None and kept.guard_score is not None and rebuilt.guard_score is not None
    for new, old in ((rebuilt.p_pneumonia, kept.p_pneumonia), (rebuilt.guard_score, kept.guard_score)):
        assert new.n == old.n > 0
        assert new.edges == pytest.approx(old.edges, abs=0.02)
        assert new.proportions == pytest.approx(old.proportions, abs=1.01 / old.n)
    load_classifier(package)  # every hash still matches
