"""The monitor: per version, over a window, what was answered, how it did against the labels fed back,
how far P(PNEUMONIA) and the guard score drifted from validation, and how a shadow challenger agreed.

Counts, means and the drift histograms are GROUP BY queries (the database does the work, whatever the
number of records); only labelled records are read into memory. A record's truth is the most recent
label fed back for its request.
"""

import re
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, Connection, Engine, and_, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, aliased

from pneumonia_zoo.audit.figures import live_figures, paired_figures, rate
from pneumonia_zoo.audit.schema import CHAMPION, SHADOW, FeedbackRow, ModelVersionRow, PredictionRow
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.drift import NO_REFERENCE, drift

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
POSITIVE = "PNEUMONIA"
SCORES = {"p_pneumonia": PredictionRow.p_pneumonia, "guard_score": PredictionRow.guard_score}


@dataclass(frozen=True)
class Window:
    name: str
    seconds: float | None  # None: all records

    @classmethod
    def parse(cls, text: str) -> "Window":
        """'30m', '24h', '7d', '4w' or 'all'."""
        cleaned = (text or "").strip().lower()
        if cleaned == "all":
            return cls("all", None)
        found = _WINDOW.match(cleaned)
        if not found or float(found.group(1)) <= 0:
            raise InvalidInput(f"window must be like 30m, 24h, 7d, 4w or all, not '{text[:40]}'")
        return cls(cleaned, float(found.group(1)) * _UNIT_S[found.group(2)])

    def since_ms(self, now_ms: int) -> int:
        return 0 if self.seconds is None else now_ms - int(self.seconds * 1000)


def _in_window(model_name: str, since_ms: int, row: type[PredictionRow] = PredictionRow) -> list:
    return [row.model_name == model_name, row.created_ms >= since_ms]


def count_where(condition: ColumnElement[bool] | InstrumentedAttribute[bool]) -> ColumnElement[int]:
    """SUM(CASE WHEN condition THEN 1 ELSE 0 END): the same SQL on SQLite and PostgreSQL."""
    return func.sum(case((condition, 1), else_=0))


def _aggregates(connection: Connection, model_name: str, since_ms: int) -> dict[str, dict]:
    P = PredictionRow
    query = (
        select(
            P.version,
            P.kind,
            func.count(),
            count_where(P.label == POSITIVE),
            count_where(P.flagged),
            count_where(P.uncertain),
            func.avg(P.p_pneumonia),
            func.avg(P.latency_ms),
        )
        .where(*_in_window(model_name, since_ms))
        .group_by(P.version, P.kind)
    )
    versions: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for version, kind, count, positive, flagged, uncertain, mean_p, mean_latency in connection.execute(query):
        totals = versions[version]
        totals["n"] += count
        totals[f"kind:{kind}"] = count
        totals["positive"] += positive or 0
        totals["flagged"] += flagged or 0
        totals["uncertain"] += uncertain or 0
        totals["sum_p"] += (mean_p or 0.0) * count
        if mean_latency is not None and kind != SHADOW:
            totals["latency_n"] += count
            totals["sum_latency"] += mean_latency * count
    return versions


def _summary(totals: dict) -> dict:
    n = int(totals["n"])
    flag_rate, flag_rate_ci = rate(int(totals["flagged"]), n)
    return {
        "predictions": n,
        "kinds": {kind: int(totals.get(f"kind:{kind}", 0)) for kind in ("champion", "pinned", "shadow")},
        "label_mix": {"NORMAL": n - int(totals["positive"]), "PNEUMONIA": int(totals["positive"])},
        "pneumonia_rate": rate(int(totals["positive"]), n)[0],
        "flag_rate": flag_rate,
        "flag_rate_ci": flag_rate_ci,
        "uncertain_rate": rate(int(totals["uncertain"]), n)[0],
        "mean_p_pneumonia": round(totals["sum_p"] / n, 4) if n else None,
        "mean_latency_ms": (
            round(totals["sum_latency"] / totals["latency_n"], 1) if totals["latency_n"] else None
        ),
    }


def labelled_rows(connection: Connection, model_name: str, since_ms: int) -> list[tuple]:
    """(version, kind, request_id, recorded label, P, truth) of every labelled record in the window,
    the truth being the request's most recent label."""
    P, F = PredictionRow, FeedbackRow
    query = (
        select(P.version, P.kind, P.request_id, P.label, P.p_pneumonia, F.label, F.updated_ms)
        .join(F, F.request_id == P.request_id)
        .where(*_in_window(model_name, since_ms))
    )
    latest: dict[tuple[str, str], tuple] = {}
    for version, kind, request_id, label, p, truth, updated in connection.execute(query):
        key = (request_id, kind)
        if key not in latest or updated > latest[key][-1]:
            latest[key] = (version, kind, request_id, label, p, truth, updated)
    return [row[:-1] for row in latest.values()]


def _figures(rows: list[tuple]) -> dict:
    truth = np.array([row[5] == POSITIVE for row in rows], dtype=int)
    predicted = np.array([row[3] == POSITIVE for row in rows], dtype=int)
    probability = np.array([row[4] for row in rows], dtype=np.float64)
    return live_figures(truth, predicted, probability)


def _references(connection: Connection, model_name: str) -> dict[str, dict | None]:
    query = select(ModelVersionRow.version, ModelVersionRow.reference).where(
        ModelVersionRow.model_name == model_name
    )
    return {version: reference for version, reference in connection.execute(query)}


def _binned(column, edges: list[float]):  # type: ignore[no-untyped-def]
    """The reference bin of each value (stats.drift.bin_counts' rule), as SQL."""
    if not edges:
        return case((column.is_not(None), 0))
    return case(*[(column < edge, index) for index, edge in enumerate(edges)], else_=len(edges))


def _drift(
    connection: Connection, model_name: str, version: str, since_ms: int, reference: dict | None
) -> dict:
    if not reference:
        return {name: {"state": NO_REFERENCE} for name in SCORES}
    found = {}
    for name, column in SCORES.items():
        distribution = reference.get(name)
        if not distribution:
            found[name] = {"state": NO_REFERENCE}
            continue
        edges = distribution["edges"]
        binned = _binned(column, edges).label("bin")
        query = (
            select(binned, func.count())
            .where(*_in_window(model_name, since_ms), PredictionRow.version == version, column.is_not(None))
            .group_by(binned)
        )
        counts = np.zeros(len(edges) + 1, dtype=np.int64)
        for index, count in connection.execute(query):
            counts[int(index)] = count
        result = drift(distribution["proportions"], int(distribution["n"]), counts)
        found[name] = result.to_dict() | {
            "edges": edges,
            "reference_shares": distribution["proportions"],
            "live_counts": counts.tolist(),
        }
    return found


def _shadow(connection: Connection, model_name: str, since_ms: int, labelled: list[tuple]) -> list[dict]:
    """Per (champion version, challenger version): how often they agreed, and their labelled figures on
    the same requests."""
    A, B = PredictionRow, aliased(PredictionRow)
    query = (
        select(A.version, B.version, func.count(), count_where(A.label == B.label))
        .join(B, and_(B.request_id == A.request_id, B.kind == SHADOW))
        .where(*_in_window(model_name, since_ms), A.kind == CHAMPION)
        .group_by(A.version, B.version)
    )
    by_request: dict[str, dict[str, tuple]] = defaultdict(dict)
    for row in labelled:
        by_request[row[2]][row[1]] = row
    pairs = []
    for champion, challenger, count, agreed in connection.execute(query):
        agreement, agreement_ci = rate(int(agreed or 0), int(count))
        both = [
            (kinds[CHAMPION], kinds[SHADOW])
            for kinds in by_request.values()
            if CHAMPION in kinds
            and SHADOW in kinds
            and kinds[CHAMPION][0] == champion
            and kinds[SHADOW][0] == challenger
        ]
        pair: dict = {
            "champion": champion,
            "challenger": challenger,
            "paired": int(count),
            "agreement": agreement,
            "agreement_ci": agreement_ci,
            "labelled": len(both),
        }
        if both:
            a, b = [row[0] for row in both], [row[1] for row in both]
            pair["figures"] = {champion: _figures(a), challenger: _figures(b)}
            truth = np.array([row[5] == POSITIVE for row in a], dtype=int)
            pair["comparison"] = paired_figures(
                truth,
                np.array([row[3] == POSITIVE for row in a], dtype=int),
                np.array([row[4] for row in a]),
                np.array([row[3] == POSITIVE for row in b], dtype=int),
                np.array([row[4] for row in b]),
            )
        pairs.append(pair)
    return pairs


def monitor(engine: Engine, model_name: str, window: Window, now_ms: int | None = None) -> dict:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since = window.since_ms(now_ms)
    with engine.connect() as connection:
        totals = _aggregates(connection, model_name, since)
        labelled = labelled_rows(connection, model_name, since)
        references = _references(connection, model_name)
        by_version: dict[str, list[tuple]] = defaultdict(list)
        for row in labelled:
            by_version[row[0]].append(row)
        versions = {}
        for version in sorted(totals, key=lambda v: (len(v), v)):
            versions[version] = (
                _summary(totals[version])
                | _figures(by_version.get(version, []))
                | {"drift": _drift(connection, model_name, version, since, references.get(version))}
            )
        shadow = _shadow(connection, model_name, since, labelled)
    return {
        "model": model_name,
        "window": {
            "name": window.name,
            "since_ms": since if window.seconds is not None else None,
            "until_ms": now_ms,
        },
        "versions": versions,
        "shadow": {"pairs": shadow},
    }
