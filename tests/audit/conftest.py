"""Audit fixtures: a real SQLite audit database in tmp_path, and records made as the service makes them."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pneumonia_zoo.audit.records import PredictionRecord
from pneumonia_zoo.audit.trail import AuditTrail

MODEL = "pneumonia-classifier"


def record(
    request_id: str,
    label: str = "PNEUMONIA",
    p: float = 0.9,
    *,
    version: str = "1",
    kind: str = "champion",
    data: bytes | None = None,
    guard: float | None = 0.5,
    flagged: bool = False,
    age: timedelta = timedelta(0),
    **extra,
) -> PredictionRecord:
    values = {
        "request_id": request_id,
        "kind": kind,
        "channel": "api",
        "model_name": MODEL,
        "version": version,
        "architecture": "small_cnn",
        "runtime": "onnx",
        "operating_point": "balanced",
        "threshold": 0.5,
        "p_pneumonia": p,
        "label": label,
        "uncertain": False,
        "guard_score": guard,
        "flagged": flagged,
        "reasons": ["guard"] if flagged else [],
        "latency_ms": 12.5,
        "created_at": datetime.now(UTC) - age,
        "data": data if data is not None else f"image of {request_id}".encode(),
        "input_format": "JPEG",
    }
    return PredictionRecord(**(values | extra))


def write(trail: AuditTrail, *records: PredictionRecord) -> None:
    trail.submit(list(records)).result(timeout=30)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[AuditTrail]:
    audit = AuditTrail(f"sqlite:///{tmp_path / 'audit.db'}")
    audit.start()
    yield audit
    audit.stop()


@pytest.fixture
def keeping_trail(tmp_path: Path) -> Iterator[AuditTrail]:
    audit = AuditTrail(f"sqlite:///{tmp_path / 'audit.db'}", keep_dir=tmp_path / "kept", keep_days=7)
    audit.start()
    yield audit
    audit.stop()
