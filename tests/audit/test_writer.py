"""The writer: group commit, durable before the future resolves, failures reported, kept inputs."""

import contextlib
import hashlib
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from pneumonia_zoo.audit.inputs import KeptInputs
from pneumonia_zoo.audit.schema import ModelVersionRow, PredictionRow
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.errors import AuditUnavailable
from tests.audit.conftest import record, write


def count(trail: AuditTrail, query=None) -> int:
    with trail.engine.connect() as connection:
        return connection.execute(
            query if query is not None else select(func.count()).select_from(PredictionRow)
        ).scalar()


def test_what_is_queued_together_is_committed_in_one_transaction(tmp_path: Path) -> None:
    batches: list[tuple[int, bool]] = []
    trail = AuditTrail(f"sqlite:///{tmp_path / 'a.db'}", on_batch=lambda n, _s, ok: batches.append((n, ok)))
    futures = [trail.submit([record(f"r{i}")]) for i in range(40)]  # queued before the writer runs
    trail.start()
    try:
        for future in futures:
            future.result(timeout=30)
        assert batches == [(40, True)]
        assert count(trail) == 40
    finally:
        trail.stop()


def test_batches_are_bounded(tmp_path: Path) -> None:
    batches: list[int] = []
    trail = AuditTrail(
        f"sqlite:///{tmp_path / 'a.db'}", batch_size=16, on_batch=lambda n, _s, _ok: batches.append(n)
    )
    futures = [trail.submit([record(f"r{i}")]) for i in range(40)]
    trail.start()
    try:
        for future in futures:
            future.result(timeout=30)
        assert batches == [16, 16, 8]
    finally:
        trail.stop()


def test_a_resolved_record_is_on_disk_for_another_connection(trail: AuditTrail, tmp_path: Path) -> None:
    import sqlite3

    write(trail, record("durable"))
    # A separate sqlite3 connection (another process would see the same): the commit is in the database.
    with sqlite3.connect(tmp_path / "audit.db") as other:
        assert other.execute("SELECT label FROM predictions WHERE request_id = 'durable'").fetchone() == (
            "PNEUMONIA",
        )


def test_inputs_are_hashed_and_never_stored_as_bytes(trail: AuditTrail) -> None:
    data = b"\xff\xd8 some jpeg bytes"
    write(trail, record("hashed", data=data))
    with trail.engine.connect() as connection:
        row = connection.execute(select(PredictionRow).where(PredictionRow.request_id == "hashed")).one()
        columns = connection.execute(text("SELECT * FROM predictions")).keys()
    assert row.input_sha256 == hashlib.sha256(data).hexdigest() and row.input_bytes == len(data)
    assert row.input_path is None
    assert not {"filename", "file_name", "pixels", "data"} & set(columns)


def test_a_database_that_cannot_be_opened_fails_each_waiting_caller(tmp_path: Path, caplog) -> None:
    (tmp_path / "a-folder.db").mkdir()  # not a database file: every connection fails
    outcomes: list[bool] = []
    trail = AuditTrail(
        f"sqlite:///{tmp_path / 'a-folder.db'}", on_batch=lambda _n, _s, ok: outcomes.append(ok)
    )
    trail.start()
    try:
        with pytest.raises(AuditUnavailable):
            trail.submit([record("lost")]).result(timeout=30)
        with pytest.raises(AuditUnavailable):
            trail.submit([record("lost-too")]).result(timeout=30)
    finally:
        trail.stop()
    assert outcomes == [False, False]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, "one error line, not one per failure"
    assert "schema" in errors[0].getMessage()


@pytest.mark.parametrize("database", ["a.db", "a-folder.db"])
def test_a_batch_is_counted_before_its_callers_learn_the_outcome(tmp_path: Path, database: str) -> None:
    """A request that saw its record fail (or land) must find it in /metrics: CI once read the counter
    between the future resolving and the writer counting it."""
    if database == "a-folder.db":
        (tmp_path / database).mkdir()  # every connection fails
    counted: list[bool] = []

    def slow_observer(_records: int, _seconds: float, ok: bool) -> None:
        time.sleep(0.3)  # widens the window the race needed
        counted.append(ok)

    trail = AuditTrail(f"sqlite:///{tmp_path / database}", on_batch=slow_observer)
    trail.start()
    try:
        future = trail.submit([record("counted")])
        with contextlib.suppress(AuditUnavailable):
            future.result(timeout=30)
        assert counted == [database == "a.db"]
    finally:
        trail.stop()


def test_a_version_is_remembered_once_with_its_reference(trail: AuditTrail) -> None:
    reference = {"split": "validation", "p_pneumonia": {"edges": [0.5], "proportions": [0.4, 0.6], "n": 10}}
    for _ in range(3):
        trail.remember_version("pneumonia-classifier", "7", "small_cnn", reference)
    write(trail, record("after-version", version="7"))
    with trail.engine.connect() as connection:
        rows = connection.execute(select(ModelVersionRow.version, ModelVersionRow.reference)).all()
    assert rows == [("7", reference)]


def test_kept_inputs_are_named_by_their_hash_and_shared(keeping_trail: AuditTrail, tmp_path: Path) -> None:
    data = b"\x89PNG same image"
    write(
        keeping_trail, record("a", data=data, input_format="PNG"), record("b", data=data, input_format="PNG")
    )
    with keeping_trail.engine.connect() as connection:
        paths = {row[0] for row in connection.execute(select(PredictionRow.input_path))}
    digest = hashlib.sha256(data).hexdigest()
    assert paths == {str(tmp_path / "kept" / digest[:2] / f"{digest}.png")}
    kept = Path(paths.pop())
    assert kept.read_bytes() == data and oct(kept.stat().st_mode & 0o777) == "0o600"
    assert not list(kept.parent.glob(".incoming-*"))


def test_retention_deletes_old_kept_inputs_only(tmp_path: Path) -> None:
    kept = KeptInputs(tmp_path / "kept", retention_days=2)
    old = kept.keep(b"old", "a" * 64, "JPEG")
    fresh = kept.keep(b"fresh", "b" * 64, "DICOM")
    three_days_ago = time.time() - 3 * 86400
    os.utime(old, (three_days_ago, three_days_ago))
    assert kept.purge() == 1
    assert not old.exists() and fresh.exists() and fresh.suffix == ".dcm"
    # Keeping the same input again renews its age instead of writing it twice.
    os.utime(fresh, (three_days_ago, three_days_ago))
    kept.keep(b"fresh", "b" * 64, "DICOM")
    assert kept.purge() == 0
