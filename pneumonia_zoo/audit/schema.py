"""The audit database's tables (SQLAlchemy 2 declarative). Alembic migrations (migrations/) create and
change them; these classes are what the code reads and writes, and what new migrations are checked
against (tests/audit/test_migrations.py).

No file name, pixel or DICOM value is ever a column: an input is its sha256 and its size, and a kept
input (an operator's opt-in) is a path named by that sha256.
"""

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite gives INTEGER PRIMARY KEY its rowid (autoincrement); BIGINT elsewhere.
_Id = BigInteger().with_variant(Integer(), "sqlite")

CHAMPION, PINNED, SHADOW = "champion", "pinned", "shadow"  # kinds of record
ANSWERED = (CHAMPION, PINNED)  # the kinds a client was answered with


class Base(DeclarativeBase):
    pass


class PredictionRow(Base):
    """One image's answer (kind champion or pinned) or a challenger's shadow score of it (kind shadow,
    same request_id)."""

    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("request_id", "kind", name="uq_predictions_request_kind"),
        Index("ix_predictions_model_time", "model_name", "created_ms"),
        # Labelled records only (partial): the monitor reads them without scanning the rest.
        Index(
            "ix_predictions_labelled",
            "model_name",
            "created_ms",
            sqlite_where=text("truth IS NOT NULL"),
            postgresql_where=text("truth IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))  # api, page, explain
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_ms: Mapped[int] = mapped_column(BigInteger)  # the same instant, in ms since the epoch (windows)
    http_request_id: Mapped[str | None] = mapped_column(String(128))  # X-Request-ID, for the log lines
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    architecture: Mapped[str] = mapped_column(String(64))
    runtime: Mapped[str] = mapped_column(String(16))
    operating_point: Mapped[str] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    p_pneumonia: Mapped[float] = mapped_column(Float)
    label: Mapped[str] = mapped_column(String(16))
    uncertain: Mapped[bool] = mapped_column(Boolean)
    guard_score: Mapped[float | None] = mapped_column(Float)
    flagged: Mapped[bool] = mapped_column(Boolean)
    flag_reasons: Mapped[list] = mapped_column(JSON)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    input_sha256: Mapped[str] = mapped_column(String(64), index=True)
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    input_path: Mapped[str | None] = mapped_column(String(1024))  # only with PNEUMONIA_ZOO_KEEP_INPUTS_DIR
    # The request's most recent label fed back (feedback holds each source's): set with the feedback.
    truth: Mapped[str | None] = mapped_column(String(16))
    # A shadow record's champion answer (version, label): agreement is counted without a self-join.
    champion_version: Mapped[str | None] = mapped_column(String(32))
    champion_label: Mapped[str | None] = mapped_column(String(16))


class FeedbackRow(Base):
    """A label for an answered request, one per (request, source): a second post from the same source
    replaces its label (a correction), never adds a row."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("request_id", "source", name="uq_feedback_request_source"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(16))
    patient: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_ms: Mapped[int] = mapped_column(BigInteger)  # the latest label of a request wins


class ModelVersionRow(Base):
    """What the monitor needs of a version that answered: its validation distributions (drift), kept
    here so that a version no longer loaded is still monitored."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    architecture: Mapped[str] = mapped_column(String(64))
    reference: Mapped[dict | None] = mapped_column(JSON)  # ReferenceDistributions, None: no reference
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HourRow(Base):
    """Counts of one hour of records per version, kind and (for shadow records) champion version, kept
    by the writer in the transaction of the records themselves: the monitor reads hours, not records."""

    __tablename__ = "prediction_hours"
    __table_args__ = (
        UniqueConstraint(
            "model_name", "version", "kind", "champion_version", "hour", name="uq_prediction_hours"
        ),
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    champion_version: Mapped[str] = mapped_column(String(32))  # "" unless shadow (NULLs would never conflict)
    hour: Mapped[int] = mapped_column(BigInteger)  # its first millisecond since the epoch
    n: Mapped[int] = mapped_column(BigInteger)
    positive: Mapped[int] = mapped_column(BigInteger)
    flagged: Mapped[int] = mapped_column(BigInteger)
    uncertain: Mapped[int] = mapped_column(BigInteger)
    sum_p: Mapped[float] = mapped_column(Float)
    latency_n: Mapped[int] = mapped_column(BigInteger)
    sum_latency: Mapped[float] = mapped_column(Float)
    agreed: Mapped[int] = mapped_column(BigInteger)  # shadow records that gave the champion's label


class DriftHourRow(Base):
    """How many of one hour's records of a version fell in each bin of its reference, per score."""

    __tablename__ = "drift_hours"
    __table_args__ = (
        UniqueConstraint("model_name", "version", "score", "hour", "bin", name="uq_drift_hours"),
    )

    id: Mapped[int] = mapped_column(_Id, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(32))
    score: Mapped[str] = mapped_column(String(16))  # p_pneumonia, guard_score
    hour: Mapped[int] = mapped_column(BigInteger)
    bin: Mapped[int] = mapped_column(Integer)
    n: Mapped[int] = mapped_column(BigInteger)
