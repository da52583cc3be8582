"""Model cards: rendered from the registry (package, run, logged evaluations) by one template, for every
registered version and for the starter's MODEL_CARD.md."""

import os
import tempfile
from pathlib import Path

import pytest

from pneumonia_zoo.evaluation.robustness import ROBUSTNESS_LABELS
from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.tracking.cards import METRIC_ROWS, stored_card, version_card
from pneumonia_zoo.workflows.evaluate import log_evaluation, run_evaluation
from pneumonia_zoo.workflows.starter import MODEL_CARD, export_starter
from tests.conftest import FIXTURE_DATA, registry_client, store_for

VERSION_1 = "models:/pneumonia-classifier/1"


def ci(metrics: dict[str, float], key: str) -> str:
    return f"{metrics[key]:.3f} [{metrics[f'{key}_ci_low']:.3f}, {metrics[f'{key}_ci_high']:.3f}]"


def without_generation_time(card: str) -> list[str]:
    return [line for line in card.splitlines() if not line.startswith("Generated ")]


@pytest.fixture(scope="module")
def card(registered_store: str) -> str:
    return version_card(store_for(registered_store), "1")


@pytest.fixture(scope="module")
def logged(registered_store: str) -> dict[str, float]:
    """What the training run logged (the card's source), from the run, not from the package."""
    store = store_for(registered_store)
    return dict(registry_client(store).get_run(store.resolve(VERSION_1).run_id).data.metrics)


def test_test_metrics_appear_with_their_intervals_as_logged(card: str, logged: dict[str, float]) -> None:
    rows_with_intervals = 0
    for key, label in METRIC_ROWS:
        if f"test_{key}_ci_low" in logged:
            assert f"| {label} | {logged[f'val_{key}']:.3f} | {ci(logged, f'test_{key}')} |" in card
            rows_with_intervals += 1
    assert rows_with_intervals == len(METRIC_ROWS)  # every test metric was bootstrapped (--bootstrap 50)
    assert f"{int(logged['test_images'])} images of {int(logged['test_patients'])} patients" in card
    assert "BCa, 50 resamples" in card
    low, high = logged["test_sensitivity_wilson_low"], logged["test_sensitivity_wilson_high"]
    assert f"sensitivity [{low:.3f}, {high:.3f}]" in card


def test_every_operating_point_is_in_the_table(
    registered_store: str, card: str, logged: dict, tmp_path: Path
) -> None:
    config = store_for(registered_store).load(VERSION_1, destination=tmp_path)[1].config
    assert len(config.operating_points) == 4
    for name, point in config.operating_points.items():
        shown = f"**{name}** (default)" if name == config.default_operating_point else name
        row = f"| {shown} | {point.threshold:.4f} | {point.rule} | {point.val_sensitivity:.3f} |"
        assert row in card, name
        assert (
            f"| {logged[f'test/{name}/sensitivity']:.3f} | {logged[f'test/{name}/specificity']:.3f} |" in card
        )
    assert f"threshold {config.threshold:.4f}" in card


def test_calibration_temperature_and_ece(
    registered_store: str, card: str, logged: dict, tmp_path: Path
) -> None:
    config = store_for(registered_store).load(VERSION_1, destination=tmp_path)[1].config
    assert f"(T = {config.temperature:.3f})" in card
    assert f"| ECE | {logged['val_ece']:.3f} | {ci(logged, 'test_ece')} |" in card
    assert f"| Brier | {logged['val_brier']:.3f} | {ci(logged, 'test_brier')} |" in card


def test_robustness_rows(card: str, logged: dict) -> None:
    measured = [(p, label) for p, label in ROBUSTNESS_LABELS.items() if f"{p}_agreement" in logged]
    assert len(measured) >= 8  # JPEG qualities, scales, widths (no full-resolution originals by the fixtures)
    for prefix, label in measured:
        row = (
            f"| {label} | {int(logged[f'{prefix}_images'])} | {logged[f'{prefix}_agreement'] * 100:.1f}% | "
            f"{logged[f'{prefix}_mean_dp']:.4f} | {logged[f'{prefix}_max_dp']:.3f} |"
        )
        assert row in card
    assert "(not measured)" not in card


def test_reproducing_command_and_the_warning(registered_store: str, card: str) -> None:
    store = store_for(registered_store)
    # Written out from tiny_train_args (how the session's store trained version 1), not rebuilt by the
    # code the card uses: only the non-default options, in TrainConfig's order, data relative to here.
    data = os.path.relpath(FIXTURE_DATA)
    command = (
        f"pneumonia-zoo train --arch small_cnn --data {data} --epochs 1 --batch-size 8 --image-size 32 "
        "--threads 2 --bootstrap 50"
    )
    assert f"```bash\n{command}\n```" in card
    assert store.resolve(VERSION_1).run_id in card
    assert "**Research tool, not a diagnostic device.**" in card
    assert "None yet: `pneumonia-zoo evaluate --model models:/pneumonia-classifier/1" in card


def test_rendering_leaves_no_copy_of_the_model_behind(
    registered_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a forgotten download would stay
    assert "## Metrics" in version_card(store_for(registered_store), "1")
    assert list(tmp_path.iterdir()) == []


def test_cards_from_a_tracking_server_leave_no_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 22: a remote store (artifacts proxied by `mlflow server`) downloads into a folder that goes."""
    from pneumonia_zoo.resources import STARTER_DIR
    from pneumonia_zoo.workflows.starter import ensure_champion
    from tests.servers import mlflow_server

    with mlflow_server(
        f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", tmp_path / "log"
    ) as url:
        store = store_for(url)
        ensure_champion(store, STARTER_DIR)
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        for _ in range(3):  # what three requests for /api/v1/models/1/card do
            assert stored_card(store, "1") is not None and "## Metrics" in version_card(store, "1")
        assert list(scratch.iterdir()) == []


def test_the_card_logged_at_training_is_the_card_rendered_now(registered_store: str, card: str) -> None:
    logged_card = stored_card(store_for(registered_store), "1")
    assert logged_card is not None
    assert without_generation_time(logged_card) == without_generation_time(card)


def test_a_logged_evaluation_appears_in_the_card_and_the_version_tags(
    scratch_store: str, fixture_data: Path
) -> None:
    store = store_for(scratch_store)
    result = run_evaluation(store, VERSION_1, fixture_data / "test", bootstrap=50, quiet=True)
    assert result.data.context == "external"  # a flat NORMAL/ + PNEUMONIA/ folder, not a Kaggle split
    run_id = log_evaluation(store, result)
    metrics = registry_client(store).get_run(run_id).data.metrics
    version = registry_client(store).get_model_version("pneumonia-classifier", "1")
    assert float(version.tags["eval_external_auc"]) == pytest.approx(metrics["external_auc"], abs=1e-6)
    assert float(version.tags["eval_external_images"]) == 10

    rendered = version_card(store, "1")
    entry = next(line for line in rendered.splitlines() if f"(run `{run_id}`)" in line)
    assert entry.startswith("- **external** on `test/`")
    assert "10 images of 10 patients" in entry
    assert f"AUC {metrics['external_auc']:.3f}" in entry and f"ECE {metrics['external_ece']:.3f}" in entry
    assert f"flagged {metrics['external_flag_rate'] * 100:.1f}%" in entry
    assert "None yet" not in rendered
    logged_card = stored_card(store, "1")  # log_evaluation logged the re-rendered card with the version
    assert logged_card is not None and f"(run `{run_id}`)" in logged_card


def test_the_starters_card_is_the_versions_card(registered_store: str, card: str, tmp_path: Path) -> None:
    store = store_for(registered_store)
    out = export_starter(store, VERSION_1, tmp_path / "starter").directory
    starter_card = (out / MODEL_CARD).read_text()
    exported_line = next(line for line in starter_card.splitlines() if line.startswith("Generated "))
    assert exported_line.endswith("Exported from `models:/pneumonia-classifier/1`.")
    assert without_generation_time(starter_card) == without_generation_time(card)
    assert read_config(out).info.source_model == VERSION_1


def test_the_stamp_is_now_unless_source_date_epoch_pins_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime, timedelta

    from pneumonia_zoo.errors import InvalidInput
    from pneumonia_zoo.tracking.cards import generated_stamp

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    before = datetime.now(UTC).replace(second=0, microsecond=0)
    stamped = datetime.strptime(generated_stamp(), "%Y-%m-%d %H:%M UTC").replace(tzinfo=UTC)
    assert before <= stamped <= datetime.now(UTC) + timedelta(minutes=1)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert generated_stamp() == "1970-01-01 00:00 UTC"
    for malformed in ("", "1.5", "99999999999999999999"):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", malformed)
        with pytest.raises(InvalidInput, match="SOURCE_DATE_EPOCH"):
            generated_stamp()
