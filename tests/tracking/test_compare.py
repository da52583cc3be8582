import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from pneumonia_zoo.cli import app
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.compare import compare, sens_spec_figure
from pneumonia_zoo.tracking.experiment import train
from pneumonia_zoo.tracking.registry import list_versions, promote
from pneumonia_zoo.training.config import TrainConfig
from tests.conftest import tiny_train_args
from tests.training.test_config import parse_train_command


@pytest.fixture
def two_versions(tracking_store: str, fixture_data: Path) -> str:
    train(TrainConfig.build(**tiny_train_args(fixture_data)), quiet=True)
    train(TrainConfig.build(**tiny_train_args(fixture_data, seed=7, image_size=40)), quiet=True)
    promote()
    return tracking_store


def ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def test_report_matches_the_registry(two_versions: str, tmp_path: Path, fixture_data: Path) -> None:
    images = sorted((fixture_data / "test").rglob("*.jpeg"))[:2]
    result = compare(out=tmp_path / "report", images=images)
    versions = list_versions()
    champion = MlflowClient().get_model_version_by_alias("pneumonia-classifier", "champion").version
    assert [row["version"] for row in result.rows] == [str(v.version) for v in versions] == ["1", "2"]

    lines = result.markdown.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in lines[2:]
    }
    assert len(cells) == 2
    for version, row in zip(versions, result.rows, strict=True):
        metrics = MlflowClient().get_run(version.run_id).data.metrics
        assert row["val_auc"] == float(version.tags["val_auc"])
        assert row["image_size"] == int(version.tags["image_size"])
        assert row["epochs"] == metrics["epochs_run"] and row["parameters"] == metrics["parameters"]
        table = dict(zip(header, cells[str(version.version)], strict=True))
        assert table["architecture"] == version.tags["architecture"]
        assert table["image size"] == version.tags["image_size"]
        assert table["pretrained"] == version.tags["pretrained"]
        assert table["val AUC"] == f"{float(version.tags['val_auc']):.3f}"
        for name, column in (("auc", "test AUC"), ("sensitivity", "test sensitivity"), ("f1", "test F1")):
            key = f"test_{name}"
            assert table[column] == ci(metrics[key], metrics[f"{key}_ci_low"], metrics[f"{key}_ci_high"])
        assert table["champion"] == ("★" if str(version.version) == str(champion) else "")
        assert row["ms_per_image"] > 0 and table["ms/image"] == f"{row['ms_per_image']:.1f}"
        logged = Path(MlflowClient().download_artifacts(version.run_id, "config.json", str(tmp_path)))
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
    saved = json.loads((report / "compare.json").read_text())
    assert saved["versions"] == result.rows
    for chart in ("test_auc.png", "sensitivity_specificity.png", "latency_vs_auc.png"):
        with Image.open(report / chart) as image:
            assert image.format == "PNG" and image.width > 300


def test_latest_per_arch_and_cli(two_versions: str, tmp_path: Path) -> None:
    rows = compare(out=tmp_path / "latest", latest_per_arch=True).rows
    assert [row["version"] for row in rows] == ["2"] and rows[0]["ms_per_image"] is None

    result = CliRunner().invoke(app, ["compare", "--no-timing", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "| version" in result.output and "test AUC" in result.output
    assert (tmp_path / "cli" / "compare.md").is_file()


def test_empty_registry_is_a_user_error(tracking_store: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no versions"):
        compare(out=tmp_path / "empty")
