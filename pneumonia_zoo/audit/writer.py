"""The one writer: a thread that commits queued records in batches and then tells each waiting caller.

Group commit: whatever is queued when a commit starts goes into that one transaction (up to
`batch_size` records), so under load many answers share one fsync, and alone an answer waits for its
own commit only (no timer). The caller gets a `concurrent.futures.Future` that resolves once its
records are committed (durable) or fails with AuditUnavailable; it never blocks an event loop.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from pneumonia_zoo.audit import rollup
from pneumonia_zoo.audit.feedback import latest_label
from pneumonia_zoo.audit.inputs import KeptInputs, sha256_of
from pneumonia_zoo.audit.records import PredictionRecord, now
from pneumonia_zoo.audit.schema import SHADOW, ModelVersionRow, PredictionRow
from pneumonia_zoo.errors import AuditUnavailable

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0
SCHEMA_RETRY_S = 5.0  # a database that was down at start: its schema is tried again at most this often
QUIET_S = 30.0  # repeated failures: one error line per this many seconds, with the count

BatchObserver = Callable[[int, float, bool], None]  # records, seconds, committed


@dataclass
class VersionInfo:
    model_name: str
    version: str
    architecture: str
    reference: dict | None


@dataclass
class _Job:
    records: list[PredictionRecord]
    future: Future = field(default_factory=Future)


def brief(exc: BaseException) -> str:
    """An exception's kind and first line (a database error's text may go on with SQL and parameters)."""
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0][:200]}" if first else type(exc).__name__


def _label_late_shadows(connection: Connection, records: list[PredictionRecord]) -> None:
    """A shadow record written after its request was labelled gets that label too."""
    shadows = [record.request_id for record in records if record.kind == SHADOW]
    if shadows:
        connection.execute(
            update(PredictionRow)
            .where(PredictionRow.kind == SHADOW, PredictionRow.request_id.in_(shadows))
            .values(truth=latest_label())
        )


class RecordWriter:
    def __init__(
        self,
        engine: Engine,
        ensure_schema: Callable[[], None],
        keep: KeptInputs | None = None,
        batch_size: int = 256,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.engine, self.ensure_schema, self.keep = engine, ensure_schema, keep
        self.batch_size, self.on_batch = batch_size, on_batch
        self.schema_ready = False
        self._schema_tried = float("-inf")
        self._queue: queue.SimpleQueue[_Job | VersionInfo | None] = queue.SimpleQueue()
        self._known: set[tuple[str, str]] = set()
        self._references: dict[tuple[str, str], dict | None] = {}
        self._thread: threading.Thread | None = None
        self._last_purge = float("-inf")
        self._failures, self._last_error_log = 0, float("-inf")

    # -- the callers' side ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        self._thread = None

    def submit(self, records: list[PredictionRecord]) -> Future:
        job = _Job(records)
        self._queue.put(job)
        return job.future

    def remember_version(self, info: VersionInfo) -> None:
        """Record a version's drift reference once (before its first records are committed)."""
        if (info.model_name, info.version) not in self._known:
            self._queue.put(info)

    # -- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        self._schema()
        while True:
            self._maybe_purge()
            try:
                first = self._queue.get(timeout=PURGE_EVERY_S)
            except queue.Empty:
                continue
            if first is None:
                self._drain_and_stop()
                return
            jobs, versions, stop = self._collect(first)
            self._write(jobs, versions)
            if stop:
                self._drain_and_stop()
                return

    def _collect(self, first: _Job | VersionInfo) -> tuple[list[_Job], list[VersionInfo], bool]:
        """`first` and whatever else is queued now (up to batch_size records); True: stop after."""
        jobs: list[_Job] = []
        versions: list[VersionInfo] = []
        item: _Job | VersionInfo | None = first
        count = 0
        while True:
            if isinstance(item, VersionInfo):
                versions.append(item)
            elif isinstance(item, _Job):
                jobs.append(item)
                count += len(item.records)
            if count >= self.batch_size:
                return jobs, versions, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return jobs, versions, False
            if item is None:
                return jobs, versions, True

    def _drain_and_stop(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                jobs, versions, _ = self._collect(item)
                self._write(jobs, versions)

    def _schema(self) -> bool:
        if self.schema_ready:
            return True
        if time.monotonic() - self._schema_tried < SCHEMA_RETRY_S:
            return False
        self._schema_tried = time.monotonic()
        try:
            self.ensure_schema()
        except Exception as exc:
            self.schema_failed(exc)
            return False
        self.schema_ready = True
        return True

    def schema_failed(self, exc: Exception) -> None:
        """The schema could not be made (the database is down): said once, tried again later."""
        self._schema_tried = time.monotonic()
        self._failed(f"the audit database's schema could not be made ({brief(exc)}): retrying")

    def _write(self, jobs: list[_Job], versions: list[VersionInfo]) -> None:
        started = time.perf_counter()
        records = [record for job in jobs for record in job.records]
        try:
            if not self._schema():
                raise AuditUnavailable("the audit database is not available")
            self._versions(versions)
            self._prepare(records)
            with self.engine.begin() as connection:
                if records:
                    connection.execute(insert(PredictionRow), [record.row() for record in records])
                    _label_late_shadows(connection, records)
                    rollup.add(connection, rollup.cells(records, self._references_of(records)))
        except Exception as exc:
            if not isinstance(exc, AuditUnavailable):
                self._failed(f"{len(records)} audit record(s) were not written ({brief(exc)})")
            # counted before the callers learn the outcome: a request that saw it finds it in /metrics
            self._observe(len(records), started, False)
            error = AuditUnavailable("the answer could not be recorded: the audit database is unavailable")
            for job in jobs:
                job.future.set_exception(error)
            return
        if self._failures:
            log.info("audit records are written again (after %d failure(s))", self._failures)
            self._failures = 0
        self._observe(len(records), started, True)
        for job in jobs:
            job.future.set_result(None)

    def _observe(self, records: int, started: float, ok: bool) -> None:
        if self.on_batch is not None and records:
            self.on_batch(records, time.perf_counter() - started, ok)

    def _prepare(self, records: list[PredictionRecord]) -> None:
        """Hash each upload and, when inputs are kept, write it; the bytes are let go of afterwards."""
        for record in records:
            if record.data is not None:
                record.input_sha256 = sha256_of(record.data)
                record.input_bytes = len(record.data)
                if self.keep is not None:
                    try:
                        kept = self.keep.keep(record.data, record.input_sha256, record.input_format)
                        record.input_path = str(kept)
                    except OSError as exc:  # the record still counts; the operator learns the file is missing
                        self._failed(f"an input could not be kept ({brief(exc)})")
                record.data = None

    def _references_of(self, records: list[PredictionRecord]) -> dict[tuple[str, str], dict | None]:
        """Each record's version's drift reference: remembered, else read once from the database."""
        missing = {(r.model_name, r.version) for r in records} - set(self._references)
        if missing:
            with self.engine.connect() as connection:
                for name, version in missing:
                    found = connection.execute(
                        select(ModelVersionRow.reference).where(
                            ModelVersionRow.model_name == name, ModelVersionRow.version == version
                        )
                    ).first()
                    self._references[(name, version)] = found[0] if found is not None else None
        return self._references

    def _versions(self, versions: list[VersionInfo]) -> None:
        for info in versions:
            key = (info.model_name, info.version)
            self._references[key] = info.reference
            if key in self._known:
                continue
            with self.engine.begin() as connection:
                found = connection.execute(
                    select(ModelVersionRow.id).where(
                        ModelVersionRow.model_name == info.model_name, ModelVersionRow.version == info.version
                    )
                ).first()
            if found is None:
                values = {
                    "model_name": info.model_name,
                    "version": info.version,
                    "architecture": info.architecture,
                    "reference": info.reference,
                    "first_seen": now(),
                }
                try:
                    with self.engine.begin() as connection:
                        connection.execute(insert(ModelVersionRow), [values])
                except IntegrityError:  # another process recorded it a moment ago
                    pass
            self._known.add(key)

    def _maybe_purge(self) -> None:
        if self.keep is None or time.monotonic() - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = time.monotonic()
        try:
            self.keep.purge()
        except OSError as exc:
            self._failed(f"kept inputs could not be purged ({brief(exc)})")

    def _failed(self, message: str) -> None:
        """One error line per problem, then at most one per QUIET_S seconds: a database that stays down
        must not flood the log (the metric counts every failure)."""
        self._failures += 1
        moment = time.monotonic()
        if self._failures == 1 or moment - self._last_error_log >= QUIET_S:
            self._last_error_log = moment
            log.error("%s%s", message, f" [{self._failures} failures so far]" if self._failures > 1 else "")
