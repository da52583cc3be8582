"""Time series for the monitor page's charts: per version and time bucket, volume, label mix, flag rate
and mean P(PNEUMONIA), from the hourly rollups."""

import time
from collections import defaultdict

from sqlalchemy import Engine, func, select

from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.audit.rollup import hour_of
from pneumonia_zoo.audit.schema import HourRow

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
TARGET_BUCKETS = 48


def bucket_ms(span_ms: int) -> int:
    """Hours for a short window, days for a long one: about TARGET_BUCKETS points or fewer."""
    for size in (HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 7 * DAY_MS):
        if span_ms / size <= TARGET_BUCKETS:
            return size
    return 30 * DAY_MS


def series(engine: Engine, model_name: str, window: Window, now_ms: int | None = None) -> dict:
    """{"bucket_ms", "since_ms", "versions": {version: [{"t", "n", "pneumonia", "flagged", "mean_p"}]}},
    summed from the hourly rollups (answered and shadow records alike)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    H = HourRow
    with engine.connect() as connection:
        since = window.since_ms(now_ms)
        if window.seconds is None:
            first = connection.execute(select(func.min(H.hour)).where(H.model_name == model_name)).scalar()
            since = int(first) if first is not None else hour_of(now_ms)
        size = bucket_ms(max(now_ms - since, 1))
        start = since - since % size  # buckets on whole hours and days
        query = select(H.version, H.hour, H.n, H.positive, H.flagged, H.sum_p).where(
            H.model_name == model_name, H.hour >= since
        )
        buckets: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0]))
        for version, hour, n, positive, flagged, sum_p in connection.execute(query):
            cell = buckets[version][start + (hour - start) // size * size]
            cell[0] += n
            cell[1] += positive
            cell[2] += flagged
            cell[3] += sum_p
    versions = {
        version: [
            {"t": t, "n": int(n), "pneumonia": int(positive), "flagged": int(flagged), "mean_p": sum_p / n}
            for t, (n, positive, flagged, sum_p) in sorted(cells.items())
            if n
        ]
        for version, cells in sorted(buckets.items())
    }
    return {"bucket_ms": size, "since_ms": start, "until_ms": now_ms, "versions": versions}
