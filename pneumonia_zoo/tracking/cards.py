"""Model cards: one Jinja2 template for every registered version and for the starter's MODEL_CARD.md.

A card is rendered from what the store knows about the version: its package's model.json, its run's
params and tags, and every evaluation logged against it (`pneumonia-zoo evaluate --log`).
"""

import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.evaluation.robustness import ROBUSTNESS_LABELS
from pneumonia_zoo.package.format import PackageConfig
from pneumonia_zoo.package.io import member_configs, read_config
from pneumonia_zoo.resources import REPORT_TEMPLATES_DIR
from pneumonia_zoo.tracking.params import train_command
from pneumonia_zoo.tracking.records import EvaluationRecord, RunRecord, VersionRecord
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.zoo.architectures import ARCHITECTURES

CARD_ARTIFACT = "model_card.md"
METRIC_ROWS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity (recall of PNEUMONIA)"),
    ("specificity", "specificity (recall of NORMAL)"),
    ("precision", "precision"),
    ("f1", "F1"),
    ("auc", "ROC AUC"),
)


def generated_stamp() -> str:
    """When a card or report says it was generated: now, or SOURCE_DATE_EPOCH when set.

    SOURCE_DATE_EPOCH (reproducible-builds.org) pins the stamp, so rendering the same registry twice gives
    the same bytes: committed reports diff only where the registry changed, and two renders never differ
    because a minute turned between them.
    """
    pinned = os.environ.get("SOURCE_DATE_EPOCH")
    if pinned is None:
        return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    try:
        moment = datetime.fromtimestamp(int(pinned), UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidInput(
            f"SOURCE_DATE_EPOCH={pinned!r} is not a whole number of seconds since 1970-01-01 UTC"
        ) from None
    return f"{moment:%Y-%m-%d %H:%M} UTC"


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


def evaluation_rows(evaluations: list[EvaluationRecord]) -> list[dict]:
    """The card's table of logged evaluations."""
    return [
        {"context": e.context, "dataset": e.dataset, "date": e.date, "run_id": e.run_id, **e.metrics}
        | {"subgroup_auc": e.subgroup_auc, "paired": e.paired}
        for e in evaluations
    ]


def card_context(
    config: PackageConfig,
    name: str,
    version: str,
    run: RunRecord | None,
    members: list[dict],
    evaluations: list[EvaluationRecord],
    source_model: str | None = None,
    record: VersionRecord | None = None,
) -> dict:
    params = run.params if run else {}
    tags = run.tags if run else {}
    metrics = (run.metrics if run else {}) | config.metrics  # the package's final values win
    info = config.info
    command = train_command(params)
    if command is None:
        command = (
            info.command or "# see the members' own cards"
            if config.is_ensemble
            else "# not recorded: the run logged no training params"
        )
    pre = config.preprocessing
    arch = ARCHITECTURES.get(config.architecture)
    robustness = [
        {
            "label": label,
            **{k: metrics.get(f"{prefix}_{k}") for k in ("images", "agreement", "mean_dp", "max_dp")},
        }
        for prefix, label in ROBUSTNESS_LABELS.items()
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
        "generated": generated_stamp(),
        "run_id": run.run_id if run else None,
        "git_commit": tags.get("git_commit"),
        "source_model": source_model,
        "members": members,
        "tta": config.tta,
        "explain_member": config.explain_member,
        "architecture": config.architecture,
        "parameters": metrics.get("parameters"),
        "weights_source": arch.weights if arch else "n/a",
        "pretrained": _text(info.pretrained),
        "freeze": _text(info.freeze),
        "image_size": pre.image_size if pre else None,
        "mean": list(pre.mean) if pre else None,
        "std": list(pre.std) if pre else None,
        "epochs_run": int(metrics["epochs_run"]) if "epochs_run" in metrics else "n/a",
        "best_epoch": int(best_epoch) + 1 if best_epoch is not None else "n/a",
        "schedule": params.get("schedule", _text(info.schedule)),
        "lr": params.get("lr", "n/a"),
        "train_time": _duration(metrics.get("train_seconds")),
        "weights_dtype": info.weights_dtype,
        "n_train": params.get("n_train", "n/a"),
        "n_val": params.get("n_val", "n/a"),
        "n_test": params.get("n_test", "n/a"),
        "val_fraction": info.val_fraction,
        "val_split": info.val_split,
        "seed": info.seed,
        "limit": info.limit,
        "bootstrap": params.get("bootstrap", "n/a"),
        "default_point": config.default_operating_point,
        "threshold": config.threshold,
        "test_images": metrics.get("test_images", 0),
        "test_patients": metrics.get("test_patients", 0),
        "metric_rows": METRIC_ROWS,
        "metrics": metrics,
        "wilson_rows": wilson_rows,
        "temperature": config.temperature,
        "logit_bias": config.logit_bias,
        "points": list(config.operating_points.values()),
        "prior": f"{info.prior:.6f}" if info.prior is not None else "n/a",
        "robustness": robustness,
        "guard": config.guard,
        "evaluations": evaluation_rows(evaluations),
        "lineage": record.lineage if record else None,
        "command": command,
        "site": site_context(config),
    }


def site_context(config: PackageConfig) -> dict | None:
    """What a site-adapted version was made from and chosen by (None for any other version)."""
    info = config.info
    if not info.adapted:
        return None
    keys = ("site", "parent_version", "parent_model", "fit_sha256", "fit_images", "fit_patients")
    return {key: _text(getattr(info, key)) for key in keys} | {
        "features": _text(info.head_features),
        "figures": {k: v for k, v in config.metrics.items() if k.startswith("site_")},
    }


def member_rows(config: PackageConfig, directory: Path) -> list[dict]:
    rows = []
    for member in member_configs(directory, config):
        rows.append(
            {
                "architecture": member.architecture,
                "image_size": member.preprocessing.image_size if member.preprocessing else None,
                "pretrained": _text(member.info.pretrained),
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
    run: RunRecord | None,
    evaluations: list[EvaluationRecord],
    source_model: str | None = None,
    record: VersionRecord | None = None,
) -> str:
    context = card_context(
        config, name, version, run, member_rows(config, directory), evaluations, source_model, record
    )
    return environment().get_template("model_card.md.j2").render(**context)


def version_card(store: Store, version: str) -> str:
    """Render the card of a registered version from the store (downloads only its package's files)."""
    record = store.resolve(store.version_uri(version))
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-card-") as tmp:  # every render, no copy left
        directory = store.download_package(record.version, Path(tmp))
        config = read_config(directory)
        return render_card(
            config,
            directory,
            store.model_name,
            record.version,
            store.find_run(record.run_id),
            store.evaluations(record.version),
            record=record,
        )


def log_model_card(store: Store, version: str) -> str:
    """Render the version's card and log it to the version's run as `model_card.md`."""
    card = version_card(store, version)
    record = store.resolve(store.version_uri(version))
    if record.run_id:
        store.log_text(record.run_id, card, CARD_ARTIFACT)
    return card


def stored_card(store: Store, version: str) -> str | None:
    """The card logged with the version's run, if any (what /models links to)."""
    record = store.resolve(store.version_uri(version))
    return store.read_text_artifact(record.run_id, CARD_ARTIFACT) if record.run_id else None


def _text(value: object) -> str:
    """A card cell: n/a for what the package did not record."""
    return "n/a" if value is None else str(value)
