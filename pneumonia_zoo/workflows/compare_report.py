"""The compare report: a Markdown table, the README's summary, JSON and PNG charts, from compare's rows."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from pneumonia_zoo.tracking.cards import environment, generated_stamp  # noqa: E402


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
                "trained on": _plain(row["trained_on"]),
                "validation": _plain(row["validation_split"]).split(" ")[0],
                "val AUC": _plain(row["val_auc"], "{:.3f}"),
                "val Brier": _plain(row["val_brier"], "{:.4f}"),
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
    "trained on",
    "validation",
    "val AUC",
    "val Brier",
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
    generated = generated_stamp()
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
