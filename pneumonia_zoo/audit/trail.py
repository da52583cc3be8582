"""The audit trail: one handle on the audit database for the service (and the CLI).

Writes go through the one writer thread (`submit` returns a future resolved once committed); reads
(a record, feedback, the monitor) run in the calling thread on their own connection. Knows nothing of
HTTP or asyncio: serving awaits the futures and maps the errors.
"""

import logging
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from pneumonia_zoo.audit import feedback as feedback_store
from pneumonia_zoo.audit.database import audit_url, migrate, open_engine, safe_url
from pneumonia_zoo.audit.inputs import KeptInputs
from pneumonia_zoo.audit.monitor import Window, monitor
from pneumonia_zoo.audit.records import PredictionRecord
from pneumonia_zoo.audit.series import series
from pneumonia_zoo.audit.writer import BatchObserver, RecordWriter, VersionInfo, brief
from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import AuditUnavailable

log = logging.getLogger(__name__)


class AuditTrail:
    def __init__(
        self,
        url: str,
        keep_dir: Path | None = None,
        keep_days: float = 30,
        batch_size: int = 256,
        on_batch: BatchObserver | None = None,
        sync: str = "normal",
    ) -> None:
        self.url = url
        self.engine: Engine = open_engine(url, sync)
        self.keep = KeptInputs(keep_dir, keep_days) if keep_dir is not None else None
        self.writer = RecordWriter(self.engine, self.migrate, self.keep, batch_size, on_batch)

    @classmethod
    def from_settings(cls, settings: Settings, on_batch: BatchObserver | None = None) -> "AuditTrail | None":
        """The settings' audit trail; None when recording is off (PNEUMONIA_ZOO_AUDIT_URL=off)."""
        url = audit_url(settings.audit_url, settings.tracking_uri)
        if url is None:
            return None
        return cls(
            url,
            settings.keep_inputs_dir,
            settings.keep_inputs_days,
            settings.audit_batch_size,
            on_batch,
            settings.audit_sync,
        )

    @property
    def where(self) -> str:
        return safe_url(self.url)

    @property
    def keeping_inputs(self) -> bool:
        return self.keep is not None

    def migrate(self) -> None:
        revision = migrate(self.engine)
        log.info("recording answers in %s (schema %s)", self.where, revision)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Make the schema now (before the service opens the registry: see database.migrate), then start
        the writer; a database that is down is logged and retried by the writer."""
        try:
            self.migrate()
            self.writer.schema_ready = True
        except Exception as exc:
            self.writer.schema_failed(exc)
        self.writer.start()

    def stop(self) -> None:
        self.writer.stop()
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------------------

    def submit(self, records: list[PredictionRecord]) -> Future:
        return self.writer.submit(records)

    def remember_version(
        self, model_name: str, version: str, architecture: str, reference: dict | None
    ) -> None:
        self.writer.remember_version(VersionInfo(model_name, version, architecture, reference))

    def add_feedback(
        self,
        label: str,
        request_id: str | None = None,
        sha256: str | None = None,
        source: str | None = None,
        patient: str | None = None,
    ) -> feedback_store.FeedbackOutcome:
        with _unavailable("written"):
            return feedback_store.add_feedback(self.engine, label, request_id, sha256, source, patient)

    # -- reads -------------------------------------------------------------------------------------

    def prediction(self, request_id: str) -> dict:
        with _unavailable("read"):
            return feedback_store.prediction_record(self.engine, request_id)

    def monitor(self, model_name: str, window: Window) -> dict:
        with _unavailable("read"):
            return monitor(self.engine, model_name, window)

    def series(self, model_name: str, window: Window) -> dict:
        with _unavailable("read"):
            return series(self.engine, model_name, window)


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """A database that is down or broken is AuditUnavailable (503), not an unexpected error."""
    try:
        yield
    except SQLAlchemyError as exc:
        log.warning("the audit database could not be %s (%s)", what, brief(exc))
        raise AuditUnavailable(f"the audit database could not be {what} ({type(exc).__name__})") from None
