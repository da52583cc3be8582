"""Labels fed back for answered requests, and a request's record read back.

Feedback is keyed by (request, source): posting the same label again changes nothing ("unchanged"),
another label from the same source replaces it ("updated", a correction), another source adds its own.
The monitor takes a request's most recent label, whichever source gave it. By sha256, the label goes
to every answered request of that input (the same image sent several times).
"""

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, ScalarSelect, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.audit.records import epoch_ms, feedback_view, now, prediction_view
from pneumonia_zoo.audit.schema import ANSWERED, SHADOW, FeedbackRow, PredictionRow
from pneumonia_zoo.errors import InvalidInput, NotFound

DEFAULT_SOURCE = "unspecified"
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class FeedbackOutcome:
    label: str
    source: str
    statuses: dict[str, str]  # request_id -> created, updated or unchanged

    @property
    def created(self) -> bool:
        return CREATED in self.statuses.values()

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "source": self.source,
            "labelled": [{"request_id": rid, "status": status} for rid, status in self.statuses.items()],
        }


def answered_requests(engine: Engine, request_id: str | None, sha256: str | None) -> list[str]:
    """The answered request ids that a request id or an input's sha256 names (empty: none)."""
    query = select(PredictionRow.request_id).where(PredictionRow.kind.in_(ANSWERED))
    if request_id is not None:
        query = query.where(PredictionRow.request_id == request_id)
    elif sha256 is not None:
        query = query.where(PredictionRow.input_sha256 == sha256.lower())
    else:
        raise InvalidInput("give a request_id or the input's sha256")
    with engine.connect() as connection:
        return sorted({row[0] for row in connection.execute(query)})


def add_feedback(
    engine: Engine,
    label: str,
    request_id: str | None = None,
    sha256: str | None = None,
    source: str | None = None,
    patient: str | None = None,
) -> FeedbackOutcome:
    if label not in CLASS_NAMES:
        raise InvalidInput(f"label must be one of {', '.join(CLASS_NAMES)}")
    source = (source or "").strip() or DEFAULT_SOURCE
    targets = answered_requests(engine, request_id, sha256)
    if not targets:
        what = f"request {request_id}" if request_id is not None else f"an input with sha256 {sha256}"
        raise NotFound(f"no answered prediction is recorded for {what}")
    return FeedbackOutcome(
        label, source, {rid: _label_one(engine, rid, label, source, patient) for rid in targets}
    )


def _label_one(engine: Engine, request_id: str, label: str, source: str, patient: str | None) -> str:
    moment = now()
    key = (FeedbackRow.request_id == request_id, FeedbackRow.source == source)
    for _ in range(2):  # an insert that loses a race with the same request and source becomes an update
        with engine.begin() as connection:
            existing = connection.execute(select(FeedbackRow.label, FeedbackRow.patient).where(*key)).first()
            if existing is None:
                try:
                    connection.execute(
                        insert(FeedbackRow),
                        [
                            {
                                "request_id": request_id,
                                "source": source,
                                "label": label,
                                "patient": patient,
                                "created_at": moment,
                                "updated_at": moment,
                                "updated_ms": epoch_ms(moment),
                            }
                        ],
                    )
                except IntegrityError:
                    connection.rollback()
                    continue
                _set_truth(connection, request_id, label)
                return CREATED
            if existing.label == label and (patient is None or existing.patient == patient):
                return UNCHANGED
            changes = {"label": label, "updated_at": moment, "updated_ms": epoch_ms(moment)}
            if patient is not None:
                changes["patient"] = patient
            connection.execute(update(FeedbackRow).where(*key).values(**changes))
            if existing.label == label:
                return UNCHANGED
            _set_truth(connection, request_id, label)
            return UPDATED
    return UNCHANGED


def _set_truth(connection: Connection, request_id: str, label: str) -> None:
    """The label just given is the request's most recent: its records (shadow ones too) carry it."""
    connection.execute(
        update(PredictionRow).where(PredictionRow.request_id == request_id).values(truth=label)
    )


def latest_label() -> ScalarSelect:
    """The most recent label fed back for the outer query's prediction row's request."""
    return (
        select(FeedbackRow.label)
        .where(FeedbackRow.request_id == PredictionRow.request_id)
        .order_by(FeedbackRow.updated_ms.desc())
        .limit(1)
        .scalar_subquery()
    )


def prediction_record(engine: Engine, request_id: str) -> dict:
    """An answered request's record, with its shadow scores and the labels fed back; NotFound if none."""
    with Session(engine) as session:
        rows = list(session.scalars(select(PredictionRow).where(PredictionRow.request_id == request_id)))
        labels = list(
            session.scalars(
                select(FeedbackRow)
                .where(FeedbackRow.request_id == request_id)
                .order_by(FeedbackRow.updated_ms)
            )
        )
        answered = [row for row in rows if row.kind != SHADOW]
        if not answered:
            raise NotFound(f"no answered prediction is recorded for request {request_id}")
        view = prediction_view(answered[0])
        view["shadow"] = [prediction_view(row) for row in rows if row.kind == SHADOW]
        view["feedback"] = [feedback_view(row) for row in labels]
    return view
