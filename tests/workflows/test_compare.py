"""The compare report: every registered version's tags, run metrics and timing, as table, JSON and charts."""

import json
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig
from pneumonia_zoo.workflows.compare import compare
from pneumonia_zoo.workflows.compare_report import sens_spec_figure
from pneumonia_zoo.workflows.train import train
from tests.cli.helpers import run_cli_here
from tests.conftest import registry_client, store_for, tiny_train_args
from tests.integration.test_train_register import cli
from tests.training.test_config import parse_train_command


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory, fixture_data: Path) -> str:
    """v1 small_cnn 32 px, v2 small_cnn 40 px on another split (so not ranked against v1); v1 promoted."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('compare-store') / 'mlflow.db'}"
    store = store_for(uri)
    train(TrainConfig.build(**tiny_train_args(fixture_data)), store, quiet=True)
    train(TrainConfig.build(**tiny_train_args(fixture_data, seed=7, image_size=40)), store, quiet=True)
    store.set_alias("1")
    return uri


def ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def test_report_matches_the_registry(
    two_versions: str, tmp_path: Path, fixture_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_for(two_versions)
    images = sorted((fixture_data / "test").rglob("*.jpeg"))[:2]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = compare(store, out=tmp_path / "report", images=images)
    assert list(scratch.iterdir()) == []  # timing downloads every version: none of the copies is left
    versions = store.versions()
    champion = store.champion_version()
    assert [row["version"] for row in result.rows] == [str(v.version) for v in versions] == ["1", "2"]

    lines = result.markdown.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:]
    }
    assert len(cells) == 2
    for version, row in zip(versions, result.rows, strict=True):
        metrics = registry_client(store).get_run(version.run_id).data.metrics
        assert row["val_auc"] == version.metric("val_auc")
        assert row["image_size"] == version.image_size
        assert row["epochs"] == metrics["epochs_run"] and row["parameters"] == metrics["parameters"]
        assert row["test_ece"] == metrics["test_ece"] and row["test_flag_rate"] == metrics["test_flag_rate"]
        table = dict(zip(header, cells[str(version.version)], strict=True))
        assert table["architecture"] == version.architecture
        assert table["image size"] == str(version.image_size)
        assert table["pretrained"] == version.pretrained_text
        assert table["schedule"] == registry_client(store).get_run(version.run_id).data.params["schedule"]
        assert table["val AUC"] == f"{version.metric('val_auc'):.3f}"
        for name, column in (("auc", "test AUC"), ("sensitivity", "test sensitivity"), ("f1", "test F1")):
            key = f"test_{name}"
            assert table[column] == ci(metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"])
        assert table["champion"] == ("★" if str(version.version) == champion else "")
        assert row["ms_per_image"] > 0 and table["ms/image"] == f"{row['ms_per_image']:.1f}"
        logged = Path(registry_client(store).download_artifacts(version.run_id, "config.json", str(tmp_path)))
        expected = TrainConfig.model_validate_json(logged.read_text()).model_copy(update={"run_name": None})
        assert parse_train_command(row["command"]) == expected

    figure = sens_spec_figure(result.rows)  # error bars span each version's 95% CI
    for container, row in zip(figure.axes[0].containers, result.rows, strict=True):
        x_bars, y_bars = container.lines[2]
        for bars, key, axis in ((x_bars, "test_specificity", 0), (y_bars, "test_sensitivity", 1)):
            (segment,) = bars.get_segments()
            assert sorted(segment[:, axis]) == pytest.approx([row[f"{key}_ci_low"], row[f"{key}_ci_high"]])

    report = tmp_path / "report"
    assert result.markdown in (report / "compare.md").read_text()
    summary = (report / "summary.md").read_text().splitlines()
    assert summary[0].split("|")[1].strip() == "version" and len(summary) == 2 + len(result.rows)
    champion_row = next(line for line in summary[2:] if "★" in line)
    assert champion_row.split("|")[1].strip() == next(
        row["version"] for row in result.rows if row["champion"]
    )
    saved = json.loads((report / "compare.json").read_text())
    assert saved["versions"] == result.rows
    for chart in ("test_auc.png", "sensitivity_specificity.png", "latency_vs_auc.png"):
        with Image.open(report / chart) as image:
            assert image.format == "PNG" and image.width > 300


def test_latest_per_arch_and_cli(two_versions: str, tmp_path: Path) -> None:
    rows = compare(store_for(two_versions), out=tmp_path / "latest", latest_per_arch=True).rows
    assert [row["version"] for row in rows] == ["2"] and rows[0]["ms_per_image"] is None

    result = cli("compare", "--no-timing", "--out", str(tmp_path / "cli"), store=two_versions)
    assert "| version" in result.stdout and "test AUC" in result.stdout
    assert f"report written to {tmp_path / 'cli' / 'compare.md'}" in result.stdout
    written = (tmp_path / "cli" / "compare.md").read_text()
    for version in ("1", "2"):  # each version's reproducing command, in the report's own section
        assert written.count(f"- v{version}: `pneumonia-zoo train --arch small_cnn") == 1


def test_empty_registry_is_a_user_error(
    tracking_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(UserError, match="no versions"):
        compare(store_for(tracking_store), out=tmp_path / "empty")
    result = run_cli_here(
        monkeypatch, capsys, tracking_store, "compare", "--no-timing", "--out", str(tmp_path)
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: no versions of 'pneumonia-classifier' in the registry (mlflow.db): train a model first "
        "(pneumonia-zoo train) or register the starter (pneumonia-zoo register-starter)"
    ]
