"""Recording each answer before it is sent: request ids, the audit record, the policy when the database
fails, and the hand-off to the shadow challenger.

A request's answer waits for its record's commit (the writer thread batches concurrent answers into one
transaction), so an answer that was sent has its record, whatever happens to the process afterwards.
When the commit fails or takes longer than PNEUMONIA_ZOO_AUDIT_TIMEOUT_S, PNEUMONIA_ZOO_AUDIT_ON_ERROR
decides: `serve` answers anyway (the writer logs an error line, the metric counts the answer), `refuse`
answers 503.

Request ids: a single image's is the request's X-Request-ID when the service made it; a batch's images,
and a request whose caller sent its own X-Request-ID, get fresh ones (a caller's id may repeat, a
record's may not). The caller's id is kept with the record for the log lines.
"""

import asyncio
import logging
import uuid
from typing import Annotated

from fastapi import Depends, Request

from pneumonia_zoo.audit.records import PredictionRecord
from pneumonia_zoo.audit.schema import CHAMPION, PINNED
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import AuditUnavailable
from pneumonia_zoo.serving.holder import LoadedModel
from pneumonia_zoo.serving.inference import Outcome
from pneumonia_zoo.serving.live_metrics import LiveMetrics
from pneumonia_zoo.serving.logs import REQUEST_ID_HEADER, request_id
from pneumonia_zoo.serving.shadow import ShadowScorer
from pneumonia_zoo.serving.uploads import UploadedFile

log = logging.getLogger(__name__)

API, PAGE, EXPLAIN = "api", "page", "explain"  # channels


def new_request_ids(request: Request, count: int) -> list[str]:
    current = request_id.get()
    made_here = current != "-" and request.headers.get(REQUEST_ID_HEADER) != current
    if count == 1 and made_here:
        return [current]
    return [uuid.uuid4().hex for _ in range(count)]


def record_of(
    prediction: dict, model: LoadedModel, kind: str, channel: str, http_request_id: str | None
) -> PredictionRecord:
    """The audit record of one answered prediction, exactly as the answer states it."""
    point = prediction["operating_point"]
    guard = prediction["out_of_population"]
    return PredictionRecord(
        request_id=prediction["request_id"],
        kind=kind,
        channel=channel,
        model_name=model.name,
        version=model.version,
        architecture=model.architecture,
        runtime=model.classifier.runtime,
        operating_point=point["name"],
        threshold=float(point["threshold"]),
        p_pneumonia=float(prediction["probabilities"]["PNEUMONIA"]),
        label=prediction["label"],
        uncertain=bool(prediction["uncertain"]),
        guard_score=guard["score"],
        flagged=bool(guard["flagged"]),
        reasons=list(guard["reasons"]),
        latency_ms=prediction.get("latency_ms"),
        http_request_id=http_request_id,
    )


def reference_of(model: LoadedModel) -> dict | None:
    reference = model.classifier.config.reference
    return reference.model_dump() if reference is not None else None


class Recorder:
    def __init__(
        self,
        settings: Settings,
        trail: AuditTrail | None,
        shadow: ShadowScorer | None,
        metrics: LiveMetrics,
    ) -> None:
        self.settings, self.trail, self.shadow, self.metrics = settings, trail, shadow, metrics
        self._versions: set[str] = set()

    async def record(
        self,
        request: Request,
        model: LoadedModel,
        outcome: Outcome,
        uploads: list[UploadedFile],
        predictions: list[dict],
        pinned: bool,
        channel: str = API,
    ) -> None:
        """Give each prediction its request_id and commit its record before the answer leaves."""
        for prediction, rid in zip(predictions, new_request_ids(request, len(predictions)), strict=True):
            prediction["request_id"] = rid
        if self.trail is None:
            return
        if model.version not in self._versions:
            self.trail.remember_version(model.name, model.version, model.architecture, reference_of(model))
            self._versions.add(model.version)
        kind = PINNED if pinned else CHAMPION
        records = []
        for prediction, upload, image in zip(predictions, uploads, outcome.images, strict=True):
            record = record_of(prediction, model, kind, channel, request_id.get())
            record.data, record.input_format = upload.data, image.format
            records.append(record)
        try:
            async with asyncio.timeout(self.settings.audit_timeout_s):
                await asyncio.wrap_future(self.trail.submit(records))
        except (AuditUnavailable, TimeoutError) as exc:
            self._failed(len(records), exc)
            return
        if kind == CHAMPION and self.shadow is not None:
            self.shadow.offer(model, records, outcome.images, uploads)

    def _failed(self, count: int, exc: Exception) -> None:
        if isinstance(exc, TimeoutError):  # the writer is alive but slow: say so here, it may commit later
            log.error(
                "an answer's audit record was not committed within %.0f s", self.settings.audit_timeout_s
            )
        if self.settings.audit_on_error == "refuse":
            self.metrics.refused_answers.inc(count)
            raise AuditUnavailable(
                "the answer could not be recorded, and this service answers only what it records: "
                "try again shortly"
            ) from None
        self.metrics.unrecorded_answers.inc(count)


def get_recorder(request: Request) -> Recorder:
    return request.app.state.live.recorder


RecorderDep = Annotated[Recorder, Depends(get_recorder)]
