"""Time series for the monitor page's charts: per version and time bucket, volume, label mix, flag rate
and mean P(PNEUMONIA), counted by the database."""

import time

from sqlalchemy import Engine, func, select

from pneumonia_zoo.audit.monitor import POSITIVE, Window, count_where
from pneumonia_zoo.audit.schema import PredictionRow

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
TARGET_BUCKETS = 48


def bucket_ms(span_ms: int) -> int:
    """Hours for a short window, days for a long one: about TARGET_BUCKETS points or fewer."""
    for size in (HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 7 * DAY_MS):
        if span_ms / size <= TARGET_BUCKETS:
            return size
    return 30 * DAY_MS


def series(engine: Engine, model_name: str, window: Window, now_ms: int | None = None) -> dict:
    """{"bucket_ms", "since_ms", "versions": {version: [{"t", "n", "pneumonia", "flagged", "mean_p"}]}}."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    P = PredictionRow
    with engine.connect() as connection:
        since = window.since_ms(now_ms)
        if window.seconds is None:
            first = connection.execute(
                select(func.min(P.created_ms)).where(P.model_name == model_name)
            ).scalar()
            since = int(first) if first is not None else now_ms
        size = bucket_ms(max(now_ms - since, 1))
        start = since - since % size  # buckets on whole hours and days
        bucket = ((P.created_ms - start) // size).label("bucket")
        query = (
            select(
                P.version,
                bucket,
                func.count(),
                count_where(P.label == POSITIVE),
                count_where(P.flagged),
                func.avg(P.p_pneumonia),
            )
            .where(P.model_name == model_name, P.created_ms >= since)
            .group_by(P.version, bucket)
            .order_by(P.version, bucket)
        )
        versions: dict[str, list[dict]] = {}
        for version, index, count, positive, flagged, mean_p in connection.execute(query):
            versions.setdefault(version, []).append(
                {
                    "t": start + int(index) * size,
                    "n": int(count),
                    "pneumonia": int(positive or 0),
                    "flagged": int(flagged or 0),
                    "mean_p": float(mean_p or 0.0),
                }
            )
    return {"bucket_ms": size, "since_ms": start, "until_ms": now_ms, "versions": versions}
