"""The shadow challenger: when the alias `challenger` (PNEUMONIA_ZOO_CHALLENGER_ALIAS) names a version,
a sampled share of champion answers is scored by it too, after the answer, and recorded as kind shadow.

Off the answer path by construction: an answer is recorded (and may already be on its way) before its
job is offered; offering never waits (a full queue drops the job and counts it); the challenger runs in
its own thread at the lowest CPU priority (nice 19), loaded there with one ONNX Runtime thread, so the
champion's batcher and decoding threads always come first. Its result is never part of any answer.

The challenger sees the champion's decoded images when they are large enough for its input (the
usual case), and decodes the upload again at its own size otherwise.
"""

import contextlib
import logging
import os
import queue
import random
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pneumonia_zoo.audit.records import PredictionRecord
from pneumonia_zoo.audit.schema import SHADOW
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.images import DecodedImage, decode_image
from pneumonia_zoo.errors import NotFound
from pneumonia_zoo.package.prediction import prediction_record
from pneumonia_zoo.serving.holder import LoadedModel, load_trusted
from pneumonia_zoo.serving.live_metrics import LiveMetrics
from pneumonia_zoo.serving.uploads import UploadedFile
from pneumonia_zoo.tracking import uris
from pneumonia_zoo.tracking.store import Store

log = logging.getLogger(__name__)

NO_RECHECK_S = 300.0  # with PNEUMONIA_ZOO_RELOAD_INTERVAL_S=0 the alias is still re-read this often


@dataclass
class ShadowJob:
    answered: list[PredictionRecord]  # the champion's committed records (ids, input hash and size)
    images: list[DecodedImage] | None  # the champion's decoded images, when large enough
    data: list[bytes] | None  # else the uploads, decoded again at the challenger's size


def _lowest_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # this thread only (Linux)


class ShadowScorer:
    def __init__(self, settings: Settings, store: Store, trail: AuditTrail, metrics: LiveMetrics) -> None:
        self.settings, self.store, self.trail, self.metrics = settings, store, trail, metrics
        self.challenger: LoadedModel | None = None
        self.error: str | None = None
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=settings.shadow_queue)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def alias(self) -> str:
        return self.settings.challenger_alias

    def status(self) -> dict:
        challenger = self.challenger
        return {
            "alias": self.alias,
            "version": challenger.version if challenger is not None else None,
            "sample": self.settings.shadow_sample,
            "queued": self._queue.qsize(),
            "error": self.error,
        }

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self.settings.shadow_sample <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="shadow-challenger", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            self._thread.join(timeout=10)
            self._thread = None

    # -- the answer path's side: never waits --------------------------------------------------------

    def offer(
        self,
        champion: LoadedModel,
        answered: list[PredictionRecord],
        images: list[DecodedImage],
        uploads: list[UploadedFile],
    ) -> None:
        challenger = self.challenger
        if challenger is None or challenger.version == champion.version:
            return
        if random.random() >= self.settings.shadow_sample:
            return
        large_enough = all(min(image.image.size) >= challenger.classifier.input_size for image in images)
        job = ShadowJob(
            answered,
            images if large_enough else None,
            None if large_enough else [bytes(upload.data) for upload in uploads],
        )
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.metrics.shadow_outcome("dropped")

    # -- the challenger's thread --------------------------------------------------------------------

    def _run(self) -> None:
        _lowest_priority()
        recheck = self.settings.reload_interval_s or NO_RECHECK_S
        checked = float("-inf")
        while not self._stop.is_set():
            if time.monotonic() - checked >= recheck:
                checked = time.monotonic()
                self._refresh()
            try:
                job = self._queue.get(timeout=min(recheck, 5.0))
            except queue.Empty:
                continue
            if job is None:
                return
            self._score(job)

    def _refresh(self) -> None:
        """Follow the alias: load its version when it changed, drop the challenger when it is gone."""
        try:
            resolved = self.store.resolve(uris.alias_uri(self.store.model_name, self.alias))
        except NotFound:
            if self.challenger is not None:
                log.info("no @%s any more: shadow scoring stops", self.alias)
            self.challenger, self.error = None, None
            return
        except Exception as exc:
            self.error = f"the registry could not be read ({type(exc).__name__})"
            return
        if self.challenger is not None and self.challenger.version == resolved.version:
            return
        try:
            with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-shadow-") as tmp:
                # Trusted digests apply to the challenger too: it runs on every sampled upload.
                _, classifier, _ = load_trusted(
                    self.store, self.settings, resolved.uri, Path(tmp), onnx_threads=1
                )
                classifier.warm_up()
        except Exception as exc:
            self.error = f"version {resolved.version} could not be loaded ({type(exc).__name__})"
            log.warning("shadow challenger @%s: %s", self.alias, self.error)
            return
        self.challenger = challenger = LoadedModel(self.store.model_name, resolved.version, classifier)
        self.error = None
        reference = classifier.config.reference
        self.trail.remember_version(
            challenger.name,
            challenger.version,
            challenger.architecture,
            reference.model_dump() if reference is not None else None,
        )
        log.info(
            "shadow-scoring %.0f%% of champion answers with @%s version %s",
            100 * self.settings.shadow_sample,
            self.alias,
            resolved.version,
        )

    def _score(self, job: ShadowJob) -> None:
        challenger = self.challenger
        if challenger is None:
            return
        started = time.perf_counter()
        try:
            images = job.images or [
                decode_image(data, self.settings.max_image_pixels, challenger.classifier.input_size)
                for data in job.data or []
            ]
            scores = challenger.classifier.predict(images)
        except Exception as exc:
            self.metrics.shadow_outcome("failed")
            log.warning("shadow scoring failed (%s)", type(exc).__name__)
            return
        latency = (time.perf_counter() - started) * 1000
        records = []
        for row, answered in enumerate(job.answered):
            prediction = prediction_record(challenger.classifier.config, scores, row, challenger.info)
            record = _shadow_record(prediction, challenger, answered, latency)
            records.append(record)
        self.trail.submit(records).add_done_callback(
            lambda done: self.metrics.shadow_outcome("failed" if done.exception() else "scored")
        )


def _shadow_record(
    prediction: dict, challenger: LoadedModel, answered: PredictionRecord, latency_ms: float
) -> PredictionRecord:
    guard = prediction["out_of_population"]
    return PredictionRecord(
        request_id=answered.request_id,
        kind=SHADOW,
        channel=answered.channel,
        model_name=challenger.name,
        version=challenger.version,
        architecture=challenger.architecture,
        runtime=challenger.classifier.runtime,
        operating_point=prediction["operating_point"]["name"],
        threshold=float(prediction["threshold"]),
        p_pneumonia=float(prediction["probabilities"]["PNEUMONIA"]),
        label=prediction["label"],
        uncertain=bool(prediction["uncertain"]),
        guard_score=guard["score"],
        flagged=bool(guard["flagged"]),
        reasons=list(guard["reasons"]),
        latency_ms=round(latency_ms, 1),
        http_request_id=answered.http_request_id,
        input_sha256=answered.input_sha256,
        input_bytes=answered.input_bytes,
        input_format=answered.input_format,
        input_path=answered.input_path,
        champion_version=answered.version,
        champion_label=answered.label,
    )
