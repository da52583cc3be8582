"""Model cards: one Jinja2 template for every registered version and for the starter's MODEL_CARD.md.

A card is rendered from what the store knows about the version: its package's model.json, its run's
params and tags, and every evaluation logged against it (`pneumonia-zoo evaluate --log`).
"""

import math
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from mlflow.entities import Run

from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.package.io import read_config
from pneumonia_zoo.resources import REPORT_TEMPLATES_DIR
from pneumonia_zoo.tracking.params import train_config_from_params
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.zoo.architectures import ARCHITECTURES

CARD_ARTIFACT = "model_card.md"
EVALUATED_VERSION_TAG = "evaluated_model_version"
METRIC_ROWS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity (recall of PNEUMONIA)"),
    ("specificity", "specificity (recall of NORMAL)"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("auc", "ROC AUC"),
)
ROBUSTNESS_ROWS = (
    ("robust_originals", "full-resolution originals vs the dataset's 224 px copies"),
    ("robust_jpeg30", "test split re-encoded as JPEG quality 30"),
    ("robust_jpeg50", "test split re-encoded as JPEG quality 50"),
    ("robust_jpeg75", "test split re-encoded as JPEG quality 75"),
    ("robust_jpeg95", "test split re-encoded as JPEG quality 95"),
    ("robust_scale0.5", "test split at half size"),
    ("robust_scale2", "test split at double size"),
)


def _fmt(value: object, digits: int = 3) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"


def _pct(value: object) -> str:
    text = _fmt(value, 4)
    return "n/a" if text == "n/a" else f"{float(text) * 100:.1f}%"


def _with_ci(metrics: dict, key: str) -> str:
    value, low, high = metrics.get(key), metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if value is None:
        return "n/a"
    return (
        f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else _fmt(value)
    )


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(REPORT_TEMPLATES_DIR),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        autoescape=False,
    )  # Markdown, not HTML: nothing to escape, and values come from our own store
    env.filters |= {"fmt": _fmt, "pct": _pct, "with_ci": _with_ci}
    return env


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "n/a"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def logged_evaluations(store: Store, version: str) -> list[dict]:
    """Every `evaluate --log` run recorded against the version, oldest first."""
    experiments = [e.experiment_id for e in store.client.search_experiments()]
    if not experiments:
        return []
    runs = store.client.search_runs(
        experiments,
        f"tags.{EVALUATED_VERSION_TAG} = '{version}' and tags.evaluated_model = '{store.model_name}'",
    )
    found = []
    for run in sorted(runs, key=lambda r: r.info.start_time):
        context = run.data.tags.get("evaluation_context", "external")
        m = run.data.metrics
        found.append(
            {
                "context": context,
                "dataset": run.data.tags.get("evaluation_dataset", "n/a"),
                "date": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d"),
                "run_id": run.info.run_id,
                **{
                    key: m.get(f"{context}_{key}")
                    for key in ("images", "patients", "auc", "sensitivity", "specificity", "ece", "flag_rate")
                },
            }
        )
    return found


def card_context(
    config: PackageConfig,
    name: str,
    version: str,
    run: Run | None,
    members: list[dict],
    evaluations: list[dict],
    source_model: str | None = None,
) -> dict:
    params = dict(run.data.params) if run else {}
    tags = dict(run.data.tags) if run else {}
    metrics = (dict(run.data.metrics) if run else {}) | config.metrics  # the package's final values win
    train_config = train_config_from_params(params)
    if train_config is not None:
        command = train_config.train_command()
    elif config.is_ensemble:
        command = config.info.get("command", "# see the members' own cards")
    else:
        command = "# not recorded: the run logged no training params"
    pre = config.preprocessing
    arch = ARCHITECTURES.get(config.architecture)
    robustness = [
        {
            "label": label,
            **{k: metrics.get(f"{prefix}_{k}") for k in ("images", "agreement", "mean_dp", "max_dp")},
        }
        for prefix, label in ROBUSTNESS_ROWS
        if f"{prefix}_agreement" in metrics
    ]
    wilson_rows = [
        (key, metrics[f"test_{key}_wilson_low"], metrics[f"test_{key}_wilson_high"])
        for key in ("sensitivity", "specificity")
        if f"test_{key}_wilson_low" in metrics
    ]
    title = (
        "ensemble of " + ", ".join(m["architecture"] for m in members)
        if members
        else (f"{config.architecture}, {pre.image_size} px" if pre else config.architecture)
    )
    best_epoch = metrics.get("best_epoch")
    return {
        "name": name,
        "version": version,
        "title": title,
        "generated": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "run_id": run.info.run_id if run else None,
        "git_commit": tags.get("git_commit"),
        "source_model": source_model,
        "members": members,
        "tta": config.tta,
        "explain_member": config.explain_member,
        "architecture": config.architecture,
        "parameters": metrics.get("parameters"),
        "weights_source": arch.weights if arch else "n/a",
        "pretrained": config.info.get("pretrained", "n/a"),
        "freeze": config.info.get("freeze", "n/a"),
        "image_size": pre.image_size if pre else None,
        "mean": list(pre.mean) if pre else None,
        "std": list(pre.std) if pre else None,
        "epochs_run": int(metrics["epochs_run"]) if "epochs_run" in metrics else "n/a",
        "best_epoch": int(best_epoch) + 1 if best_epoch is not None else "n/a",
        "schedule": params.get("schedule", config.info.get("schedule", "n/a")),
        "lr": params.get("lr", "n/a"),
        "train_time": _duration(metrics.get("train_seconds")),
        "weights_dtype": config.info.get("weights_dtype", "float32"),
        "n_train": params.get("n_train", config.info.get("n_train", "n/a")),
        "n_val": params.get("n_val", config.info.get("n_val", "n/a")),
        "n_test": params.get("n_test", config.info.get("n_test", "n/a")),
        "val_fraction": config.info.get("val_fraction", "n/a"),
        "seed": config.info.get("seed", "n/a"),
        "limit": config.info.get("limit"),
        "bootstrap": params.get("bootstrap", config.info.get("bootstrap", "n/a")),
        "default_point": config.default_operating_point,
        "threshold": config.threshold,
        "test_images": metrics.get("test_images", 0),
        "test_patients": metrics.get("test_patients", 0),
        "metric_rows": METRIC_ROWS,
        "metrics": metrics,
        "wilson_rows": wilson_rows,
        "temperature": config.temperature,
        "points": list(config.operating_points.values()),
        "prior": config.info.get("prior", "n/a"),
        "robustness": robustness,
        "guard": config.guard,
        "evaluations": evaluations,
        "command": command,
    }


def member_rows(config: PackageConfig, directory: Path) -> list[dict]:
    rows = []
    for ref in config.members:
        member = read_config(directory / ref.path)
        rows.append(
            {
                "architecture": member.architecture,
                "image_size": member.preprocessing.image_size if member.preprocessing else None,
                "pretrained": member.info.get("pretrained", "n/a"),
                "temperature": member.temperature,
                "val_auc": member.metrics.get("val_auc"),
            }
        )
    return rows


def render_card(
    config: PackageConfig,
    directory: Path,
    name: str,
    version: str,
    run: Run | None,
    evaluations: list[dict],
    source_model: str | None = None,
) -> str:
    context = card_context(
        config, name, version, run, member_rows(config, directory), evaluations, source_model
    )
    return environment().get_template("model_card.md.j2").render(**context)


def version_card(store: Store, version: str) -> str:
    """Render the card of a registered version from the store (downloads only its package's files)."""
    resolved = store.resolve(f"models:/{store.model_name}/{version}")
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-card-") as tmp:  # every render, no copy left
        directory = store.download_package(resolved.version, Path(tmp))
        config = read_config(directory)
        run = store.get_run(resolved.run_id) if resolved.run_id else None
        return render_card(
            config, directory, store.model_name, version, run, logged_evaluations(store, version)
        )


def log_model_card(store: Store, version: str) -> str:
    """Render the version's card and log it to the version's run as `model_card.md`."""
    card = version_card(store, version)
    resolved = store.resolve(f"models:/{store.model_name}/{version}")
    if resolved.run_id:
        store.client.log_text(resolved.run_id, card, CARD_ARTIFACT)
    return card


def stored_card(store: Store, version: str) -> str | None:
    """The card logged with the version's run, if any (what /models links to)."""
    resolved = store.resolve(f"models:/{store.model_name}/{version}")
    if not resolved.run_id:
        return None
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=resolved.run_id, artifact_path=CARD_ARTIFACT, tracking_uri=store.uri
        )
    except Exception:  # not logged (an older version) or the store refused: render instead
        return None
    return Path(path).read_text()
