"""The monitor: per version, over a window, what was answered, how it did against the labels fed back,
how far P(PNEUMONIA) and the guard score drifted from validation, and how a shadow challenger agreed.

Counts, means, both drift histograms and the shadow agreement come from the hourly rollups the writer
keeps (audit/rollup.py), so a window is whole hours and the cost follows the hours, not the records;
the labelled records alone, through a partial index, are read for the live figures. A record's truth
is the most recent label fed back for its request (written onto the record with it).
"""

import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Connection, Engine, select

from pneumonia_zoo.audit.figures import live_figures, paired_figures, rate
from pneumonia_zoo.audit.rollup import hour_of
from pneumonia_zoo.audit.schema import (
    CHAMPION,
    PINNED,
    SHADOW,
    DriftHourRow,
    HourRow,
    ModelVersionRow,
    PredictionRow,
)
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.drift import NO_REFERENCE, drift

_WINDOW = re.compile(r"^(\d+(?:\.\d+)?)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
POSITIVE = "PNEUMONIA"
SCORES = ("p_pneumonia", "guard_score")
KINDS = (CHAMPION, PINNED, SHADOW)


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
        """Where the window starts: at the start of an hour (the monitor counts whole hours)."""
        return 0 if self.seconds is None else hour_of(now_ms - int(self.seconds * 1000))


def _in_window(model_name: str, since_ms: int) -> list:
    return [PredictionRow.model_name == model_name, PredictionRow.created_ms >= since_ms]


def _references(connection: Connection, model_name: str) -> dict[str, dict | None]:
    query = select(ModelVersionRow.version, ModelVersionRow.reference).where(
        ModelVersionRow.model_name == model_name
    )
    return {version: reference for version, reference in connection.execute(query)}


@dataclass
class _Totals:
    """One version's counts, summed over its hour cells."""

    n: int = 0
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    positive: int = 0
    flagged: int = 0
    uncertain: int = 0
    sum_p: float = 0.0
    latency_n: int = 0
    sum_latency: float = 0.0
    bins: dict[str, dict[int, int]] = field(
        default_factory=lambda: {name: defaultdict(int) for name in SCORES}
    )

    def summary(self) -> dict:
        flag_rate, flag_rate_ci = rate(self.flagged, self.n)
        return {
            "predictions": self.n,
            "kinds": dict(self.kinds),
            "label_mix": {"NORMAL": self.n - self.positive, "PNEUMONIA": self.positive},
            "pneumonia_rate": rate(self.positive, self.n)[0],
            "flag_rate": flag_rate,
            "flag_rate_ci": flag_rate_ci,
            "uncertain_rate": rate(self.uncertain, self.n)[0],
            "mean_p_pneumonia": round(self.sum_p / self.n, 4) if self.n else None,
            "mean_latency_ms": round(self.sum_latency / self.latency_n, 1) if self.latency_n else None,
        }


def _scan(
    connection: Connection, model_name: str, since_ms: int
) -> tuple[dict[str, _Totals], dict[tuple[str, str], list[int]]]:
    """The window's hour cells summed: per version its counts and both drift histograms, and per
    (champion, challenger) how many shadow scores there are and how many agreed."""
    H, D = HourRow, DriftHourRow
    totals: dict[str, _Totals] = defaultdict(_Totals)
    pairs: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    hours = select(
        H.version,
        H.kind,
        H.champion_version,
        H.n,
        H.positive,
        H.flagged,
        H.uncertain,
        H.sum_p,
        H.latency_n,
        H.sum_latency,
        H.agreed,
    ).where(H.model_name == model_name, H.hour >= since_ms)
    for (
        version,
        kind,
        champion,
        n,
        positive,
        flagged,
        uncertain,
        sum_p,
        lat_n,
        sum_lat,
        agreed,
    ) in connection.execute(hours):
        found = totals[version]
        found.n += n
        found.kinds[kind] = found.kinds.get(kind, 0) + n
        found.positive += positive
        found.flagged += flagged
        found.uncertain += uncertain
        found.sum_p += sum_p
        if kind != SHADOW:
            found.latency_n += lat_n
            found.sum_latency += sum_lat
        if kind == SHADOW and champion:
            pair = pairs[(champion, version)]
            pair[0] += n
            pair[1] += agreed
    drift_cells = select(D.version, D.score, D.bin, D.n).where(D.model_name == model_name, D.hour >= since_ms)
    for version, score, index, n in connection.execute(drift_cells):
        totals[version].bins[score][index] += n
    return totals, pairs


@dataclass
class Labelled:
    """The window's labelled records as arrays: 1 for PNEUMONIA in `predicted` and `truth`."""

    version: np.ndarray
    kind: np.ndarray
    request_id: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    truth: np.ndarray

    def figures(self, mask: np.ndarray) -> dict:
        return live_figures(self.truth[mask], self.predicted[mask], self.probability[mask])


def labelled_rows(connection: Connection, model_name: str, since_ms: int) -> Labelled:
    """Every labelled record in the window (fetched at once: the labelled are a share of the records)."""
    P = PredictionRow
    query = select(P.version, P.kind, P.request_id, P.label, P.p_pneumonia, P.truth).where(
        *_in_window(model_name, since_ms), P.truth.is_not(None)
    )
    rows = connection.execute(query).all()
    version, kind, request_id, label, p, truth = zip(*rows, strict=True) if rows else ([],) * 6
    return Labelled(
        np.array(version, dtype=object),
        np.array(kind, dtype=object),
        np.array(request_id, dtype=object),
        (np.array(label, dtype=object) == POSITIVE).astype(int),
        np.array(p, dtype=np.float64),
        (np.array(truth, dtype=object) == POSITIVE).astype(int),
    )


def _drift(totals: _Totals, reference: dict | None) -> dict:
    found = {}
    for name in SCORES:
        distribution = (reference or {}).get(name)
        if not distribution:
            found[name] = {"state": NO_REFERENCE}
            continue
        counts = np.zeros(len(distribution["edges"]) + 1, dtype=np.int64)
        for index, count in totals.bins[name].items():
            counts[index] = count
        result = drift(distribution["proportions"], int(distribution["n"]), counts)
        found[name] = result.to_dict() | {
            "edges": distribution["edges"],
            "reference_shares": distribution["proportions"],
            "live_counts": counts.tolist(),
        }
    return found


def _shadow(pairs: dict[tuple[str, str], list[int]], labelled: Labelled) -> list[dict]:
    """Per (champion version, challenger version): how often they agreed, and their figures on the
    same labelled requests."""
    champion_rows = np.flatnonzero(labelled.kind == CHAMPION)
    row_of = dict(zip(labelled.request_id[champion_rows], champion_rows, strict=True))
    shadow_rows = np.flatnonzero(labelled.kind == SHADOW)
    found = []
    for (champion, challenger), (count, agreed) in sorted(pairs.items()):
        agreement, agreement_ci = rate(agreed, count)
        matched = [
            (row_of[rid], row)
            for rid, row in zip(labelled.request_id[shadow_rows], shadow_rows, strict=True)
            if labelled.version[row] == challenger
            and rid in row_of
            and labelled.version[row_of[rid]] == champion
        ]
        pair: dict = {
            "champion": champion,
            "challenger": challenger,
            "paired": count,
            "agreement": agreement,
            "agreement_ci": agreement_ci,
            "labelled": len(matched),
        }
        if matched:
            a, b = np.array([m[0] for m in matched]), np.array([m[1] for m in matched])
            pair["figures"] = {champion: labelled.figures(a), challenger: labelled.figures(b)}
            pair["comparison"] = paired_figures(
                labelled.truth[a],
                labelled.predicted[a],
                labelled.probability[a],
                labelled.predicted[b],
                labelled.probability[b],
            )
        found.append(pair)
    return found


def monitor(engine: Engine, model_name: str, window: Window, now_ms: int | None = None) -> dict:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since = window.since_ms(now_ms)
    with engine.connect() as connection:
        references = _references(connection, model_name)
        totals, pairs = _scan(connection, model_name, since)
        labelled = labelled_rows(connection, model_name, since)
    versions = {
        version: totals[version].summary()
        | labelled.figures(labelled.version == version)
        | {"drift": _drift(totals[version], references.get(version))}
        for version in sorted(totals, key=lambda v: (len(v), v))
    }
    return {
        "model": model_name,
        "window": {
            "name": window.name,
            "since_ms": since if window.seconds is not None else None,
            "until_ms": now_ms,
        },
        "versions": versions,
        "shadow": {"pairs": _shadow(pairs, labelled)},
    }
