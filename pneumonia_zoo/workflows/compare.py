"""`pneumonia-zoo compare`: the zoo side by side, top to bottom: collect the registered versions' records
and their runs' metrics, time each version's inference (batch 1), write the report (compare_report.py).
"""

import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pneumonia_zoo.data.images import IMAGE_SUFFIXES, decode_image
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.tracking.params import train_command
from pneumonia_zoo.tracking.records import RunRecord, VersionRecord
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.workflows.compare_report import markdown_table, write_report

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


def _trained_on(tags: dict[str, str]) -> str | None:
    """The GPU's name for a CUDA run (its `device_name` tag), `cpu` for a CPU one, None when untagged."""
    device = tags.get("device")
    if device == "cuda":
        return tags.get("device_name") or device
    return device


def _row(record: VersionRecord, run: RunRecord | None, champion: str | None) -> dict:
    """One version's values: its run's metrics first, then the version's own (its tags)."""
    params = run.params if run else {}
    metrics = run.metrics if run else {}

    def metric(key: str) -> float | None:
        return _float(metrics.get(key, record.metric(key)))

    row = {
        "version": record.version,
        "architecture": record.architecture,
        "parameters": metric("parameters"),
        "image_size": record.image_size,
        "kind": record.kind,
        "test_ece": metric("test_ece"),
        "test_flag_rate": metric("test_flag_rate"),
        "test_images": metric("test_images"),
        "robust_agreement": metric("robust_originals_agreement"),
        "epochs": metric("epochs_run"),
        "pretrained": record.pretrained_text,
        "starter": record.lineage.starter,
        "train_seconds": metric("train_seconds"),
        "val_auc": record.metric("val_auc") if record.metric("val_auc") is not None else metric("val_auc"),
        "val_brier": metric("val_brier"),  # the champion rule's score (tracking/champion.py)
        "trained_on": _trained_on(run.tags if run else {}),
        # val_* figures compare only within one split (Store.ranking)
        "validation_split": record.validation_split_given(run),
        "threshold": record.threshold,
        "schedule": params.get("schedule"),
        "run_id": record.run_id,
        "command": train_command(params),
        "champion": record.version == champion,
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
    return [_row(version, store.find_run(version.run_id), champion) for version in versions]


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
                row["ms_per_image"] = measure_ms_per_image(store, store.version_uri(row["version"]), images)
            except UserError:  # a version whose weights were left out of a shipped store
                row["ms_per_image"] = None
    files = write_report(rows, out, store.model_name)
    return CompareResult(rows, markdown_table(rows), files)
