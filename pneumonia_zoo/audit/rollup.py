"""Hourly rollups of the records, kept by the writer in the same transaction as the records: the monitor
reads a few thousand hour cells instead of every record (its time does not grow with the records).

Each batch's records are summed into cells in Python, then added to the stored cells with one upsert
per cell (INSERT ... ON CONFLICT DO UPDATE on SQLite and PostgreSQL; UPDATE, then INSERT elsewhere).
Drift histograms bin each record in its own version's reference (stats.drift.bin_counts' rule).
"""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, Table, and_, insert, update

from pneumonia_zoo.audit.records import PredictionRecord, epoch_ms
from pneumonia_zoo.audit.schema import SHADOW, DriftHourRow, HourRow

HOUR_MS = 3_600_000
POSITIVE = "PNEUMONIA"
SCORES = ("p_pneumonia", "guard_score")
_HOUR_KEYS = ("model_name", "version", "kind", "champion_version", "hour")
_DRIFT_KEYS = ("model_name", "version", "score", "hour", "bin")
_HOUR_SUMS = ("n", "positive", "flagged", "uncertain", "sum_p", "latency_n", "sum_latency", "agreed")


def hour_of(ms: int) -> int:
    return ms - ms % HOUR_MS


@dataclass
class Cells:
    hours: dict[tuple, dict[str, float]]
    drift: dict[tuple, int]


def cells(records: list[PredictionRecord], references: dict[tuple[str, str], dict | None]) -> Cells:
    """The batch summed into hour cells and drift cells."""
    hours: dict[tuple, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_HOUR_SUMS, 0))
    drift: dict[tuple, int] = defaultdict(int)
    for record in records:
        hour = hour_of(epoch_ms(record.created_at))
        champion = record.champion_version if record.kind == SHADOW and record.champion_version else ""
        cell = hours[(record.model_name, record.version, record.kind, champion, hour)]
        cell["n"] += 1
        cell["positive"] += record.label == POSITIVE
        cell["flagged"] += bool(record.flagged)
        cell["uncertain"] += bool(record.uncertain)
        cell["sum_p"] += record.p_pneumonia
        if record.latency_ms is not None:
            cell["latency_n"] += 1
            cell["sum_latency"] += record.latency_ms
        cell["agreed"] += record.kind == SHADOW and record.label == record.champion_label
        reference = references.get((record.model_name, record.version)) or {}
        for score, value in (("p_pneumonia", record.p_pneumonia), ("guard_score", record.guard_score)):
            distribution = reference.get(score)
            if distribution and value is not None and np.isfinite(value):
                index = int(np.searchsorted(distribution["edges"], value, side="right"))
                drift[(record.model_name, record.version, score, hour, index)] += 1
    return Cells(dict(hours), dict(drift))


def _upsert(connection: Connection, table: Table, keys: tuple[str, ...], rows: list[dict]) -> None:
    sums = [column for column in rows[0] if column not in keys]
    dialect = connection.dialect.name
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        statement = statement.on_conflict_do_update(
            index_elements=list(keys),
            set_={column: table.c[column] + statement.excluded[column] for column in sums},
        )
        connection.execute(statement, rows)
        return
    for row in rows:  # any other database: one writer per process, so UPDATE-then-INSERT suffices
        match = and_(*[table.c[key] == row[key] for key in keys])
        changed = connection.execute(
            update(table).where(match).values({column: table.c[column] + row[column] for column in sums})
        )
        if changed.rowcount == 0:
            connection.execute(insert(table), [row])


def add(connection: Connection, found: Cells) -> None:
    """Add a batch's cells to the stored ones (inside the batch's transaction)."""
    if found.hours:
        rows = [dict(zip(_HOUR_KEYS, key, strict=True)) | sums for key, sums in found.hours.items()]
        _upsert(connection, HourRow.__table__, _HOUR_KEYS, rows)  # type: ignore[arg-type]
    if found.drift:
        rows = [dict(zip(_DRIFT_KEYS, key, strict=True)) | {"n": n} for key, n in found.drift.items()]
        _upsert(connection, DriftHourRow.__table__, _DRIFT_KEYS, rows)  # type: ignore[arg-type]
