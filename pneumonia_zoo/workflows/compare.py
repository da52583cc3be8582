"""The zoo side by side: registered versions, their runs' metrics and measured inference time.

Reads only the registry (version tags) and each version's source run (params, metrics); writes a
report folder with `compare.md`, `compare.json` and PNG charts.
"""

import json
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from pneumonia_zoo.data.images import IMAGE_SUFFIXES  # noqa: E402
from pneumonia_zoo.errors import UserError  # noqa: E402
from pneumonia_zoo.tracking.cards import environment  # noqa: E402
from pneumonia_zoo.tracking.params import train_config_from_params  # noqa: E402
from pneumonia_zoo.tracking.store import Store  # noqa: E402

TEST_METRICS = ("accuracy", "sensitivity", "specificity", "f1", "auc")
WARMUP = 2
ROUNDS = 3


@dataclass
class CompareResult:
    rows: list[dict]
    markdown: str
    files: list[Path]


def _float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _row(store: Store, version: ModelVersion, champion: str | None) -> dict:
    """One version's values: tags first, then its source run's params and metrics."""
    tags = dict(version.tags)
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    if version.run_id:
        try:
            run = store.get_run(version.run_id)
            params, metrics = dict(run.data.params), dict(run.data.metrics)
        except MlflowException:  # the run was deleted: the tags still describe the version
            pass

    def metric(key: str) -> float | None:
        return _float(metrics.get(key, tags.get(key)))

    row = {
        "version": str(version.version),
        "architecture": tags.get("architecture", "unknown"),
        "parameters": metric("parameters"),
        "image_size": int(tags["image_size"]) if tags.get("image_size", "").isdigit() else None,
        "kind": tags.get("kind", "single"),
        "test_ece": metric("test_ece"),
        "test_flag_rate": metric("test_flag_rate"),
        "test_images": metric("test_images"),
        "robust_agreement": metric("robust_originals_agreement"),
        "epochs": metric("epochs_run"),
        "pretrained": tags.get("pretrained", "unknown"),
        "starter": tags.get("starter") == "true",
        "train_seconds": metric("train_seconds"),
        "val_auc": _float(tags.get("val_auc", metrics.get("val_auc"))),
        "threshold": _float(tags.get("threshold")),
        "schedule": params.get("schedule"),
        "run_id": version.run_id,
        "command": config.train_command() if (config := train_config_from_params(params)) else None,
        "champion": str(version.version) == champion,
        "ms_per_image": None,
    }
    for name in TEST_METRICS:
        key = f"test_{name}"
        row[key] = metric(key)
        row[f"{key}_ci_low"] = metric(f"{key}_ci_low")
        row[f"{key}_ci_high"] = metric(f"{key}_ci_high")
    return row


def collect(store: Store, latest_per_arch: bool = False) -> list[dict]:
    versions = store.versions()
    if not versions:
        raise UserError(
            f"no versions of '{store.model_name}' in the registry ({store.describe()}): train a model first "
            "(pneumonia-zoo train) or register the starter (pneumonia-zoo register-starter)"
        )
    if latest_per_arch:
        versions = sorted(store.latest_per_architecture(versions), key=lambda v: int(v.version))
    champion = store.champion_version()
    return [_row(store, version, champion) for version in versions]


def timing_images(directory: Path, count: int = 4) -> list[Path]:
    paths = sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UserError(f"no .jpeg/.jpg/.png images in {directory} to time inference on")
    return paths[:count]


def measure_ms_per_image(store: Store, model_uri: str, images: list[Path]) -> float:
    """Median milliseconds per image at batch 1 (decode, preprocessing and the package's default
    runtime included), after a warm-up."""
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-timing-") as tmp:  # not one copy per version left
        _, classifier = store.load(model_uri, destination=Path(tmp))
        classifier.warm_up()  # loads what predicting needs, so the downloaded folder may go
    files = [path.read_bytes() for path in images]
    from pneumonia_zoo.data.images import decode_image

    def once(data: bytes) -> None:
        classifier.predict([decode_image(data, min_side=classifier.input_size)])

    for data in files[:WARMUP] * WARMUP:
        once(data)
    timings = []
    for _ in range(ROUNDS):
        for data in files:
            start = time.perf_counter()
            once(data)
            timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


# --- rendering -----------------------------------------------------------------------------------


def _with_ci(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "–"
    low, high = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else f"{value:.3f}"


def _count(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1e6:.1f}M" if value >= 1e5 else f"{value / 1e3:.0f}k"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _plain(value: object, pattern: str = "{}") -> str:
    return "–" if value is None else pattern.format(value)


def display_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "version": row["version"] + (" (starter)" if row["starter"] else ""),
                "architecture": row["architecture"],
                "params": _count(row["parameters"]),
                "image size": _plain(row["image_size"]),
                "epochs": _plain(row["epochs"], "{:.0f}"),
                "schedule": _plain(row["schedule"]),
                "pretrained": row["pretrained"],
                "train time": _duration(row["train_seconds"]),
                "test images": _plain(row["test_images"], "{:.0f}"),
                "val AUC": _plain(row["val_auc"], "{:.3f}"),
                "test accuracy": _with_ci(row, "test_accuracy"),
                "test sensitivity": _with_ci(row, "test_sensitivity"),
                "test specificity": _with_ci(row, "test_specificity"),
                "test F1": _with_ci(row, "test_f1"),
                "test AUC": _with_ci(row, "test_auc"),
                "test ECE": _plain(row["test_ece"], "{:.3f}"),
                "test flagged": _plain(row["test_flag_rate"], "{:.1%}"),
                "full-res agreement": _plain(row["robust_agreement"], "{:.1%}"),
                "ms/image": _plain(row["ms_per_image"], "{:.1f}"),
                "champion": "★" if row["champion"] else "",
            }
            for row in rows
        ]
    )


def markdown_table(rows: list[dict]) -> str:
    return display_table(rows).to_markdown(index=False, disable_numparse=True)


# The README's Results table: what a reader compares first (the full table is in compare.md).
SUMMARY_COLUMNS = [
    "version",
    "architecture",
    "image size",
    "epochs",
    "val AUC",
    "test accuracy",
    "test sensitivity",
    "test specificity",
    "test AUC",
    "test ECE",
    "test flagged",
    "full-res agreement",
    "champion",
]


def summary_table(rows: list[dict]) -> str:
    return display_table(rows)[SUMMARY_COLUMNS].to_markdown(index=False, disable_numparse=True)


def _label(row: dict) -> str:
    return f"v{row['version']} {row['architecture']}" + (" ★" if row["champion"] else "")


def _errors(rows: list[dict], key: str) -> list[list[float]]:
    """Asymmetric error bars (below, above) from the CI; zero where a version has none."""
    below, above = [], []
    for row in rows:
        value, low, high = row[key], row[f"{key}_ci_low"], row[f"{key}_ci_high"]
        below.append(value - low if low is not None else 0.0)
        above.append(high - value if high is not None else 0.0)
    return [below, above]


def auc_figure(rows: list[dict]) -> plt.Figure:
    shown = [row for row in rows if row["test_auc"] is not None]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(shown) + 2), 4))
    positions = range(len(shown))
    ax.errorbar(
        list(positions),
        [r["test_auc"] for r in shown],
        yerr=_errors(shown, "test_auc"),
        fmt="o",
        capsize=4,
        label="test AUC (95% CI)",
    )
    ax.scatter(
        list(positions),
        [r["val_auc"] if r["val_auc"] is not None else math.nan for r in shown],
        marker="x",
        color="tab:orange",
        label="val AUC",
        zorder=3,
    )
    ax.set_xticks(list(positions), [_label(r) for r in shown], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="ROC AUC", title="ROC AUC per registered version")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sens_spec_figure(rows: list[dict]) -> plt.Figure:
    shown = [r for r in rows if r["test_sensitivity"] is not None and r["test_specificity"] is not None]
    fig, ax = plt.subplots(figsize=(6, 5))
    for row in shown:
        ax.errorbar(
            row["test_specificity"],
            row["test_sensitivity"],
            xerr=_errors([row], "test_specificity"),
            yerr=_errors([row], "test_sensitivity"),
            fmt="o",
            capsize=3,
            label=_label(row),
        )
    ax.set(xlabel="test specificity", ylabel="test sensitivity", title="Sensitivity vs specificity (95% CI)")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def latency_figure(rows: list[dict]) -> plt.Figure:
    shown = [r for r in rows if r["ms_per_image"] is not None and r["test_auc"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for row in shown:
        ax.scatter(row["ms_per_image"], row["test_auc"], label=_label(row))
    ax.set(xlabel="ms per image (batch 1, CPU)", ylabel="test AUC", title="Accuracy vs inference time")
    ax.grid(alpha=0.3)
    if shown:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_report(rows: list[dict], out: Path, name: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    figures = {"test_auc.png": auc_figure(rows), "sensitivity_specificity.png": sens_spec_figure(rows)}
    if any(row["ms_per_image"] is not None for row in rows):
        figures["latency_vs_auc.png"] = latency_figure(rows)
    files = []
    for file_name, figure in figures.items():
        figure.savefig(out / file_name, dpi=110)
        files.append(out / file_name)
    plt.close("all")
    generated = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    (out / "compare.md").write_text(
        environment()
        .get_template("compare.md.j2")
        .render(name=name, generated=generated, table=markdown_table(rows), rows=rows, charts=files)
    )
    (out / "summary.md").write_text(summary_table(rows) + "\n")
    (out / "compare.json").write_text(
        json.dumps({"registered_model": name, "generated": generated, "versions": rows}, indent=2)
    )
    return [out / "compare.md", out / "summary.md", out / "compare.json", *files]


def compare(
    store: Store,
    out: Path = Path("reports/compare"),
    latest_per_arch: bool = False,
    images: list[Path] | None = None,
) -> CompareResult:
    """Collect, time (when `images` are given) and write the report."""
    rows = collect(store, latest_per_arch)
    if images:
        for row in rows:
            try:
                row["ms_per_image"] = measure_ms_per_image(
                    store, f"models:/{store.model_name}/{row['version']}", images
                )
            except UserError:  # a version whose weights were left out of a shipped store
                row["ms_per_image"] = None
    files = write_report(rows, out, store.model_name)
    return CompareResult(rows, markdown_table(rows), files)
