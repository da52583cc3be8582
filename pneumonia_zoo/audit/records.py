"""What one recorded prediction holds, as the service hands it over and as the API shows it back."""

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pneumonia_zoo.audit.schema import SHADOW, FeedbackRow, PredictionRow


def now() -> datetime:
    return datetime.now(UTC)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass
class PredictionRecord:
    """One image's prediction. `data` (the uploaded bytes) is hashed and, only when keeping inputs is
    on, written to the kept-inputs folder by the writer; it is never a column."""

    request_id: str
    kind: str  # champion, pinned, shadow
    channel: str  # api, page, explain
    model_name: str
    version: str
    architecture: str
    runtime: str
    operating_point: str
    threshold: float
    p_pneumonia: float
    label: str
    uncertain: bool
    guard_score: float | None
    flagged: bool
    reasons: list[str]
    latency_ms: float | None
    created_at: datetime = field(default_factory=now)
    http_request_id: str | None = None
    input_sha256: str | None = None  # set by the writer from `data` when not given (a shadow copies it)
    input_bytes: int | None = None
    input_format: str | None = None  # JPEG, PNG, DICOM: the kept file's suffix
    input_path: str | None = None
    champion_version: str | None = None  # a shadow record's champion answer
    champion_label: str | None = None
    data: bytes | bytearray | memoryview | None = field(default=None, repr=False)

    def row(self) -> dict:
        assert self.input_sha256 is not None and self.input_bytes is not None, "hashed before it is written"
        return {
            "request_id": self.request_id,
            "kind": self.kind,
            "channel": self.channel,
            "created_at": self.created_at,
            "created_ms": epoch_ms(self.created_at),
            "http_request_id": self.http_request_id,
            "model_name": self.model_name,
            "version": self.version,
            "architecture": self.architecture,
            "runtime": self.runtime,
            "operating_point": self.operating_point,
            "threshold": self.threshold,
            "p_pneumonia": self.p_pneumonia,
            "label": self.label,
            "uncertain": self.uncertain,
            "guard_score": self.guard_score,
            "flagged": self.flagged,
            "flag_reasons": list(self.reasons),
            "latency_ms": self.latency_ms,
            "input_sha256": self.input_sha256,
            "input_bytes": self.input_bytes,
            "input_path": self.input_path,
            "champion_version": self.champion_version,
            "champion_label": self.champion_label,
        }


def _iso(moment: datetime) -> str:
    # SQLite hands back naive datetimes (it stores no zone): they were written in UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def prediction_view(row: PredictionRow) -> dict:
    """A record as GET /api/v1/predictions/{id} shows it: no server paths, no client file name."""
    view = {
        "request_id": row.request_id,
        "time": _iso(row.created_at),
        "kind": row.kind,
        "model": {
            "name": row.model_name,
            "version": row.version,
            "architecture": row.architecture,
            "runtime": row.runtime,
        },
        "label": row.label,
        "probabilities": {"NORMAL": round(1 - row.p_pneumonia, 6), "PNEUMONIA": row.p_pneumonia},
        "operating_point": {"name": row.operating_point, "threshold": row.threshold},
        "uncertain": row.uncertain,
        "out_of_population": {"flagged": row.flagged, "score": row.guard_score, "reasons": row.flag_reasons},
    }
    if row.kind != SHADOW:
        view |= {
            "channel": row.channel,
            "latency_ms": row.latency_ms,
            "input": {
                "sha256": row.input_sha256,
                "bytes": row.input_bytes,
                "kept": row.input_path is not None,
            },
        }
    return view


def feedback_view(row: FeedbackRow) -> dict:
    return {"label": row.label, "source": row.source, "time": _iso(row.updated_at)}
