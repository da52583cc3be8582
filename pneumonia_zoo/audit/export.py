"""`pneumonia-zoo feedback export`: the labelled answers as a manifest that `evaluate --manifest` and
`adapt --manifest` read (data/discovery.read_manifest), from the kept inputs.

One row per input (its sha256), with the most recent label fed back for any request of it, the patient
when feedback gave one (else the input itself is its own patient), and request_id, version, source and
time as extra columns (subgroups can group by them). Inputs whose bytes are not kept (keeping is off,
or the retention deleted them) cannot be a manifest row: without any kept input the file is the
labelled records themselves, and the result says why there are no paths.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.audit.database import audit_url, migrate, open_engine, safe_url
from pneumonia_zoo.audit.records import prediction_view
from pneumonia_zoo.audit.schema import ANSWERED, FeedbackRow, PredictionRow
from pneumonia_zoo.data.discovery import Sample
from pneumonia_zoo.data.manifests import write_manifest
from pneumonia_zoo.errors import NotFound, RegistryUnavailable, UserError

MANIFEST, RECORDS = "manifest", "records"
RECORD_COLUMNS = (
    "request_id",
    "time",
    "version",
    "kind",
    "predicted",
    "p_pneumonia",
    "label",
    "source",
    "patient",
    "input_sha256",
    "input_bytes",
)


def recorded_database(configured: str | None, tracking_uri: str) -> str:
    """The audit database the service records into (`configured`, else beside the MLflow store);
    NotFound when recording is off or nothing was recorded there yet."""
    from sqlalchemy.engine import make_url

    url = audit_url(configured, tracking_uri)
    if url is None:
        raise NotFound("recording is off (PNEUMONIA_ZOO_AUDIT_URL=off): there is no audit database to export")
    try:
        parsed = make_url(url)
    except Exception:
        raise UserError("PNEUMONIA_ZOO_AUDIT_URL is not a database URL") from None
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and not Path(database).is_file():
        raise NotFound(f"no audit database at {database}: the service has recorded nothing there yet")
    return url


def export_recorded(url: str, out_path: Path, model_name: str, keeping_inputs: bool) -> "ExportResult":
    """export_feedback on the recorded database, brought up to date first (idempotent migration)."""
    engine = open_engine(url)
    try:
        migrate(engine)
        return export_feedback(engine, out_path, model_name, keeping_inputs=keeping_inputs)
    except UserError:
        raise
    except Exception as exc:
        raise RegistryUnavailable(
            f"the audit database {safe_url(url)} could not be read ({type(exc).__name__})"
        ) from None
    finally:
        engine.dispose()


@dataclass
class ExportResult:
    path: Path
    kind: str  # manifest (paths to kept inputs) or records (no paths): one row per labelled request
    rows: int
    labelled_inputs: int
    without_input: int  # labelled inputs left out of a manifest: their bytes are not kept
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "rows": self.rows,
            "without_input": self.without_input,
            "message": self.message(),
        }

    def message(self) -> str:
        if self.kind == MANIFEST:
            text = f"wrote a manifest of {self.rows} labelled input(s) to {self.path}"
            if self.without_input:
                text += f"; {self.without_input} labelled input(s) left out: {'; '.join(self.reasons)}"
            return text
        why = "; ".join(self.reasons) or "nothing is labelled yet"
        return f"wrote {self.rows} labelled record(s) without image paths to {self.path}: {why}"


def _labelled(engine: Engine, model_name: str | None) -> list[tuple[PredictionRow, FeedbackRow]]:
    """Every answered record with its request's most recent label."""
    query = (
        select(PredictionRow, FeedbackRow)
        .join(FeedbackRow, FeedbackRow.request_id == PredictionRow.request_id)
        .where(PredictionRow.kind.in_(ANSWERED))
        .order_by(FeedbackRow.updated_ms)
    )
    if model_name is not None:
        query = query.where(PredictionRow.model_name == model_name)
    latest: dict[str, tuple[PredictionRow, FeedbackRow]] = {}
    with Session(engine) as session:
        for prediction, feedback in session.execute(query).tuples():
            latest[prediction.request_id] = (prediction, feedback)  # ordered: the last label wins
        session.expunge_all()
    return list(latest.values())


def _sample(prediction: PredictionRow, feedback: FeedbackRow) -> Sample:
    assert prediction.input_path is not None
    return Sample(
        Path(prediction.input_path),
        CLASS_NAMES.index(feedback.label),
        feedback.patient or f"input-{prediction.input_sha256[:16]}",
        {
            "request_id": prediction.request_id,
            "version": prediction.version,
            "source": feedback.source,
            "answered_at": prediction_view(prediction)["time"],
        },
    )


def _write_records(pairs: list[tuple[PredictionRow, FeedbackRow]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RECORD_COLUMNS)
        for prediction, feedback in pairs:
            writer.writerow(
                [
                    prediction.request_id,
                    prediction_view(prediction)["time"],
                    prediction.version,
                    prediction.kind,
                    prediction.label,
                    prediction.p_pneumonia,
                    feedback.label,
                    feedback.source,
                    feedback.patient or "",
                    prediction.input_sha256,
                    prediction.input_bytes,
                ]
            )


def export_feedback(
    database: str | Engine, out_path: Path, model_name: str | None = None, keeping_inputs: bool = True
) -> ExportResult:
    """Write the labelled answers to `out_path`: a manifest of the kept inputs, or the records.

    `database`: the audit database's URL (or an engine); `keeping_inputs`: whether the operator keeps
    inputs now (only for the message of why there are no paths)."""
    engine = open_engine(database) if isinstance(database, str) else database
    try:
        pairs = _labelled(engine, model_name)
    finally:
        if isinstance(database, str):
            engine.dispose()
    by_input: dict[str, tuple[PredictionRow, FeedbackRow]] = {}
    for prediction, feedback in sorted(pairs, key=lambda pair: pair[1].updated_ms):
        by_input[prediction.input_sha256] = (prediction, feedback)
    kept = [pair for pair in by_input.values() if pair[0].input_path and Path(pair[0].input_path).is_file()]
    never = sum(1 for prediction, _ in by_input.values() if not prediction.input_path)
    gone = len(by_input) - len(kept) - never
    reasons = []
    if never:
        reasons.append(
            f"{never} input(s) were never kept"
            + ("" if keeping_inputs else " (PNEUMONIA_ZOO_KEEP_INPUTS_DIR is not set)")
        )
    if gone:
        reasons.append(f"{gone} kept input(s) are gone (past PNEUMONIA_ZOO_KEEP_INPUTS_DAYS, or deleted)")
    out_path = Path(out_path)
    if kept:
        write_manifest([_sample(*pair) for pair in kept], out_path)
        return ExportResult(out_path, MANIFEST, len(kept), len(by_input), never + gone, reasons)
    _write_records(sorted(pairs, key=lambda pair: pair[0].created_ms), out_path)
    return ExportResult(out_path, RECORDS, len(pairs), len(by_input), never + gone, reasons)
