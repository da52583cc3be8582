"""Everything the CLI prints: JSON for machines, one rendering per result for people, and the error line.

Commands hand their results here; the `render_*` functions return text (so tests read it without a
terminal) and `show` / `show_json` / `show_error` print it.
"""

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # the workflow (MLflow) loads only when a command runs
    from pneumonia_zoo.workflows.promote import Promotion

TRAIN_SUMMARY_METRICS = ("val_auc", "test_auc", "test_accuracy", "test_ece")
ENSEMBLE_SUMMARY_METRICS = ("val_auc", "test_auc", "test_accuracy")
EVALUATION_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def show(text: str, err: bool = False) -> None:
    typer.echo(text, err=err)


def show_error(message: object) -> None:
    """One line on stderr, never a traceback."""
    typer.echo(f"error: {message}", err=True)


# -- JSON ---------------------------------------------------------------------------------------------


def finite_or_null(value: Any) -> Any:
    """NaN (an undefined metric: specificity without NORMAL images) and infinities are not JSON; null is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def to_json(value: Any) -> str:
    """Indented JSON; NumPy scalars as numbers, non-finite numbers as null."""
    return json.dumps(finite_or_null(value), indent=2, default=float, allow_nan=False)


def show_json(value: Any) -> None:
    show(to_json(value))


# -- training and registry ----------------------------------------------------------------------------


def render_run(
    run_id: str | None, metrics: Mapping[str, float], names: Iterable[str], version: str | None
) -> str:
    """A finished run: the chosen metrics it has, and the version it registered (if any)."""
    summary = ", ".join(f"{name} {metrics[name]:.4f}" for name in names if name in metrics)
    lines = [f"run {run_id}: {summary}"]
    if version:
        lines.append(f"registered version {version}")
    return "\n".join(lines)


def render_interrupted(run_id: str | None) -> str:
    return f"interrupted: run {run_id} marked KILLED, no version registered"


def render_sweep(table: str, parent_run_id: str, best_run_id: str | None) -> str:
    return f"{table}\nparent run {parent_run_id}; best run {best_run_id}"


def render_promotion(name: str, promotion: "Promotion") -> str:
    version, metric = promotion.version, promotion.metric
    if metric is None:
        why = "given by number"
    else:
        value = version.metric(metric)
        why = f"{metric} {value:.6f}" if value is not None else metric
    lines = [f"{name} version {version.version} is now @{promotion.alias} ({why})"]
    if (ranking := promotion.ranking) is not None:
        split = f"validation split {ranking.split}" if ranking.split else "an unrecorded validation split"
        lines.append(f"ranked {len(ranking.versions)} version(s) on {split}")
        if ranking.left_out:
            lines.append(
                f"{ranking.left_out} version(s) validated on other splits not compared "
                "(promote --version N moves to one of them)"
            )
    for comparison in (promotion.comparison, promotion.better):
        if comparison is not None:
            lines += comparison.lines()
    return "\n".join(lines)


def render_manifest_split(split: Mapping[str, Any]) -> str:
    parts = [
        f"{name.upper()} {part['path']}: {part['images']} images of {part['patients']} patients "
        f"({', '.join(f'{label} {count}' for label, count in part['per_class'].items())})"
        for name, part in (("fit", split["fit"]), ("test", split["test"]))
    ]
    return "\n".join(parts + [f"split by patient, seed {split['seed']}: no patient is in both"])


def _through_member(member: int | None, losses: Mapping[str, float]) -> str:
    if member is None:
        return ""
    if len(losses) < 2:
        return f" through its member {member} (as asked)"
    compared = ", ".join(f"{index}: {loss:.3f}" for index, loss in losses.items())
    return f" through its member {member} (lowest out-of-fold log loss on FIT; {compared})"


def render_adapted(result: Mapping[str, Any]) -> str:
    fit, chosen = result["fit"], result["chosen_by"]
    c, cv_auc, temperature = chosen["site_head_C"], chosen["site_head_cv_auc"], chosen["site_temperature"]
    through = _through_member(result["parent"].get("member"), result.get("member_cv_log_loss") or {})
    return "\n".join(
        [
            f"registered version {result['version']}: {result['parent']['uri']}{through} adapted to site "
            f"'{result['site']}' ({result['features']} features), the champion unchanged",
            f"  learnt from {fit['images']} images of {fit['patients']} patients "
            f"(sha256 {fit['sha256'][:12]}...)",
            f"  C {c:.4g} by patient-grouped CV (out-of-fold AUC {cv_auc:.3f}), T {temperature:.3f}",
            f"  judge it on other patients: pneumonia-zoo evaluate --model {result['model']} "
            "--manifest TEST.csv --against the champion",
        ]
    )


def render_alias(name: str, alias: str, version: str) -> str:
    return f"{name}@{alias} is version {version}"


def render_starter_written(
    out: Path, total_bytes: int, float16: bool, max_change: float | None, checked: int
) -> str:
    lines = [f"wrote {out}: {total_bytes / 1e6:.1f} MB ({'float16' if float16 else 'as registered'})"]
    if max_change is not None:
        lines.append(f"largest change in a probability on {checked} sample images: {max_change:.2e}")
    return "\n".join(lines)


def render_guard_added(directory: Path, flag_rate: float) -> str:
    return f"{directory}: guard added, {flag_rate:.1%} of validation images flagged"


def render_guarded_version(version: str) -> str:
    return f"registered version {version} (with its guard)"


def render_report(markdown: str, path: Path) -> str:
    return f"{markdown}\nreport written to {path}"


def render_ui(port: int, uri: str) -> str:
    return (
        f"MLflow UI on http://127.0.0.1:{port} (store {uri}); training runs are under Experiments -> "
        "pneumonia-zoo (MLflow 3 may open on its GenAI view: choose 'Machine learning' at the top)"
    )


# -- evaluation and predictions -----------------------------------------------------------------------


def _defined(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def render_evaluation(result: Mapping[str, Any]) -> str:
    """`evaluate`'s result (`EvaluationResult.to_dict()`, plus `logged_run` when logged) for people."""
    model, data, point = result["model"], result["data"], result["operating_point"]
    lines = [
        f"{model['name']} v{model['version']} ({model['architecture']}) on {data['source']} "
        f"({data['context']}): {data['images']} images of {data['patients']} patients; "
        f"operating point {point['name']} (threshold {point['threshold']:.3f})"
    ]
    for name in EVALUATION_METRICS:
        low, high = result["ci95"].get(name, (None, None))
        ci = f"  [{low:.4f}, {high:.4f}]" if _defined(low) else ""
        value = result["metrics"][name]
        lines.append(f"  {name:<12} {value:.4f}{ci}" if _defined(value) else f"  {name:<12} n/a")
    m, calibration = result["metrics"], result["calibration"]
    lines.append(f"  confusion    tn {m['tn']}  fp {m['fp']}  fn {m['fn']}  tp {m['tp']}")
    lines.append(f"  calibration  ECE {calibration['ece']:.4f}  Brier {calibration['brier']:.4f}")
    lines.append(f"  flagged      {result['out_of_population']['flag_rate']:.1%} out of population")
    for key, value in result.get("robustness", {}).items():
        if key.endswith(("_agreement", "_mean_dp")):
            lines.append(f"  {key:<34} {value:.4f}")
    if "logged_run" in result:
        lines.append(f"logged as run {result['logged_run']}")
    return "\n".join(lines)


def render_prediction(record: Mapping[str, Any]) -> str:
    """One prediction record (`package.prediction.prediction_record`) as one line."""
    ood = record["out_of_population"]
    flag = "  OUT OF POPULATION: " + "; ".join(ood["reasons"]) if ood["flagged"] else ""
    unsure = " (uncertain)" if record["uncertain"] else ""
    model = record["model"]
    return (
        f"{record['filename']}: {record['label']}{unsure}  "
        f"P(PNEUMONIA)={record['probabilities']['PNEUMONIA']:.4f} "
        f"{record['operating_point']['name']} threshold {record['threshold']:.3f}  "
        f"[{model['name']} v{model['version']}]{flag}"
    )


def show_predictions(records: list[dict], as_json: bool) -> None:
    """JSON: the record itself for one image, a list for several; else a line per image."""
    if as_json:
        show_json(records[0] if len(records) == 1 else records)
    else:
        show("\n".join(render_prediction(record) for record in records))
