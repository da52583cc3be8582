import json
import logging
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from safetensors import safe_open

from pneumonia_zoo.cli import app
from pneumonia_zoo.config import get_settings
from pneumonia_zoo.tracking.package import CONFIG_FILE, ONNX_FILE, WEIGHTS_FILE, load_package, sha256_file
from pneumonia_zoo.tracking.registry import list_versions, load_version
from pneumonia_zoo.tracking.starter import MODEL_CARD, ensure_champion, export_starter
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import use_store
from tests.training.test_config import parse_train_command

CHAMPION = "models:/pneumonia-classifier@champion"


def check_images(fixture_data: Path) -> list[Path]:
    return sorted((fixture_data / "test").rglob("*.jpeg"))[:4]


def champion_version() -> str:
    settings = get_settings()
    return str(MlflowClient().get_model_version_by_alias(settings.registered_model_name, "champion").version)


def runs() -> list:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


def predictions(package, paths: list[Path]) -> np.ndarray:
    return package.predict_proba([Image.open(p).convert("RGB") for p in paths])


@pytest.fixture
def exported(registered_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_data) -> Path:
    """The registered store's champion exported as a starter folder (float32)."""
    use_store(monkeypatch, registered_store)
    result = export_starter(CHAMPION, tmp_path / "starter", check_images=check_images(fixture_data))
    assert result.max_probability_change == 0.0  # float32 weights: the very same model
    return result.directory


def test_export_writes_a_verified_package_and_a_model_card(
    exported: Path, registered_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, registered_store)
    resolved, source = load_version(CHAMPION)
    assert {p.name for p in exported.iterdir()} == {CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, MODEL_CARD}
    assert sha256_file(exported / ONNX_FILE) == source.config.files[ONNX_FILE]  # copied as is
    package = load_package(exported)
    assert package.config.metrics == source.config.metrics
    assert package.config.info["source_model"] == f"models:/{resolved.name}/{resolved.version}"

    card = (exported / MODEL_CARD).read_text()
    run = MlflowClient().get_run(source.config.info["run_id"])
    metrics = source.config.metrics
    auc = f"{metrics['test_auc']:.3f} [{metrics['test_auc_ci_low']:.3f}, {metrics['test_auc_ci_high']:.3f}]"
    assert auc in card
    assert f"**{source.config.threshold:.4f}**" in card
    assert f"{source.config.threshold_sensitivity_95:.4f}" in card
    assert f"| test | {run.data.params['n_test']} |" in card
    assert "not a diagnostic device" in card
    command = TrainConfig.from_params(run.data.params).train_command()
    assert f"```bash\n{command}\n```" in card


def test_train_command_parses_back_to_the_runs_params(
    registered_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, registered_store)
    run = mlflow.search_runs(search_all_experiments=True, output_format="list")[0]
    logged = TrainConfig.from_params(run.data.params)
    rebuilt = parse_train_command(logged.train_command())
    assert rebuilt == logged.model_copy(update={"run_name": None, "data": logged.data.resolve()})
    for key, value in rebuilt.model_dump(mode="json").items():
        if key in run.data.params and key not in ("run_name", "data"):
            assert str(value) == run.data.params[key], key


def test_ensure_champion_registers_the_starter_once_and_never_overrides(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_data: Path
) -> None:
    use_store(monkeypatch, f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}")
    config = json.loads((exported / CONFIG_FILE).read_text())

    assert ensure_champion(exported) == "1"
    assert champion_version() == "1"
    (version,) = list_versions()
    assert version.tags["starter"] == "true"
    assert version.tags["weights_sha256"] == sha256_file(exported / WEIGHTS_FILE)
    assert version.tags["val_auc"] == f"{config['metrics']['val_auc']:.6f}"
    assert version.tags["architecture"] == config["architecture"]
    assert version.tags["image_size"] == str(config["preprocessing"]["image_size"])
    assert version.tags["onnx"] == "True"
    (run,) = runs()
    assert run.data.tags["starter"] == "true" and run.info.run_id == version.run_id
    _, served = load_version(CHAMPION)
    paths = check_images(fixture_data)
    np.testing.assert_array_equal(predictions(served, paths), predictions(load_package(exported), paths))

    assert ensure_champion(exported) == "1"  # idempotent: nothing new
    assert len(list_versions()) == 1 and len(runs()) == 1

    MlflowClient().delete_registered_model_alias("pneumonia-classifier", "champion")
    assert ensure_champion(exported) == "1"  # no champion: the same starter version is reused
    assert champion_version() == "1" and len(list_versions()) == 1 and len(runs()) == 1


def test_fp16_export_is_smaller_and_predicts_the_same(
    registered_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_data: Path
) -> None:
    use_store(monkeypatch, registered_store)
    full = export_starter(CHAMPION, tmp_path / "full")
    half = export_starter(CHAMPION, tmp_path / "half", fp16=True, check_images=check_images(fixture_data))
    assert half.weights_bytes < 0.6 * full.weights_bytes
    with safe_open(str(half.directory / WEIGHTS_FILE), "pt") as handle:
        dtypes = {str(handle.get_tensor(k).dtype) for k in handle.keys()}  # noqa: SIM118
    assert "torch.float16" in dtypes and "torch.float32" not in dtypes
    assert half.max_probability_change is not None and half.max_probability_change < 1e-2
    assert load_package(half.directory).config.info["weights_dtype"] == "float16"

    # On a fresh store: a champion is kept; a different starter registers only without one.
    use_store(monkeypatch, f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}")
    assert ensure_champion(full.directory) == "1"
    assert ensure_champion(half.directory) == "1"
    assert len(list_versions()) == 1
    MlflowClient().delete_registered_model_alias("pneumonia-classifier", "champion")
    assert ensure_champion(half.directory) == "2"
    assert champion_version() == "2" and len(list_versions()) == 2


def test_a_trained_champion_is_never_overridden(
    exported: Path, registered_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_store(monkeypatch, registered_store)
    before = [(v.version, tuple(v.aliases)) for v in list_versions()]
    champion = champion_version()
    assert ensure_champion(exported) == champion
    assert [(v.version, tuple(v.aliases)) for v in list_versions()] == before


def test_no_starter_shipped_registers_nothing(tracking_store: str, tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("pneumonia_zoo.tracking.starter")
    logger.addHandler(handler)
    try:
        assert ensure_champion(tmp_path / "missing") is None
    finally:
        logger.removeHandler(handler)
    assert len(records) == 1 and "no starter model is shipped" in records[0].getMessage()
    assert list_versions() == []


def test_register_starter_cli(exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    use_store(monkeypatch, f"sqlite:///{tmp_path / 'cli' / 'mlflow.db'}")
    result = CliRunner().invoke(app, ["register-starter", "--dir", str(exported)])
    assert result.exit_code == 0, result.output
    assert "pneumonia-classifier@champion is version 1" in result.output
    assert champion_version() == "1"
