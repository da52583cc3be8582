"""Prometheus metrics of the live loop, on the app's registry: the audit writer, answers sent without a
record or refused, shadow jobs, and gauges of the monitor's figures per version.

The gauges come from a snapshot of the monitor that a background thread recomputes every
PNEUMONIA_ZOO_MONITOR_REFRESH_S over PNEUMONIA_ZOO_MONITOR_WINDOW: a scrape never queries the database
(it runs on the event loop).
"""

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# name -> (the monitor's key per version, help)
VERSION_GAUGES = {
    "predictions": ("predictions", "Predictions recorded in the monitor window, by version"),
    "labelled": ("labelled", "Predictions with a label fed back, by version"),
    "sensitivity": ("sensitivity", "Live sensitivity against the labels fed back, by version"),
    "specificity": ("specificity", "Live specificity against the labels fed back, by version"),
    "auc": ("auc", "Live AUC against the labels fed back, by version"),
    "flag_rate": ("flag_rate", "Share of predictions flagged as unlike the training data, by version"),
    "mean_p_pneumonia": ("mean_p_pneumonia", "Mean calibrated P(PNEUMONIA), by version"),
}
DRIFT_STATES = {"ok": 0, "warn": 1, "alert": 2}


class LiveGauges(Collector):
    """Gauges read from the latest monitor snapshot (nothing when there is none yet)."""

    def __init__(self) -> None:
        self.snapshot: dict | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        versions = snapshot.get("versions", {})
        for name, (key, text) in VERSION_GAUGES.items():
            family = GaugeMetricFamily(f"pneumonia_zoo_live_{name}", text, labels=["version"])
            for version, figures in versions.items():
                if figures.get(key) is not None:
                    family.add_metric([version], float(figures[key]))
            yield family
        psi = GaugeMetricFamily(
            "pneumonia_zoo_live_drift_psi", "PSI of a score against validation", labels=["version", "score"]
        )
        state = GaugeMetricFamily(
            "pneumonia_zoo_live_drift_state",
            "Drift state: 0 ok, 1 warn, 2 alert (absent: no reference or too few)",
            labels=["version", "score"],
        )
        for version, figures in versions.items():
            for score, found in figures.get("drift", {}).items():
                if found.get("value") is not None:
                    psi.add_metric([version, score], float(found["value"]))
                if found.get("state") in DRIFT_STATES:
                    state.add_metric([version, score], DRIFT_STATES[found["state"]])
        yield psi
        yield state
        agreement = GaugeMetricFamily(
            "pneumonia_zoo_shadow_agreement",
            "Share of shadow-scored requests where the challenger gave the champion's label",
            labels=["champion", "challenger"],
        )
        for pair in snapshot.get("shadow", {}).get("pairs", []):
            if pair.get("agreement") is not None:
                agreement.add_metric([pair["champion"], pair["challenger"]], float(pair["agreement"]))
        yield agreement


class LiveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter(
            "pneumonia_zoo_audit_records",
            "Audit records by outcome (committed, failed)",
            ["outcome"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "pneumonia_zoo_audit_commit_seconds",
            "Time of one audit transaction (a batch of records)",
            registry=registry,
            buckets=_SECONDS,
        )
        self.unrecorded_answers = Counter(
            "pneumonia_zoo_audit_unrecorded_answers",
            "Answers sent without their audit record (database failed; PNEUMONIA_ZOO_AUDIT_ON_ERROR=serve)",
            registry=registry,
        )
        self.refused_answers = Counter(
            "pneumonia_zoo_audit_refused_answers",
            "Answers refused (503): they could not be recorded (PNEUMONIA_ZOO_AUDIT_ON_ERROR=refuse)",
            registry=registry,
        )
        self.shadow_jobs = Counter(
            "pneumonia_zoo_shadow_jobs",
            "Shadow-challenger jobs by outcome (scored, dropped when the queue was full, failed)",
            ["outcome"],
            registry=registry,
        )
        self.gauges = LiveGauges()
        registry.register(self.gauges)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def observe_batch(self, records: int, seconds: float, committed: bool) -> None:
        self.records.labels("committed" if committed else "failed").inc(records)
        self.commit_seconds.observe(seconds)

    def shadow_outcome(self, outcome: str) -> None:
        self.shadow_jobs.labels(outcome).inc()

    def shadow_counts(self) -> dict[str, int]:
        return {
            outcome: int(self.shadow_jobs.labels(outcome)._value.get())
            for outcome in ("scored", "dropped", "failed")
        }

    # -- the snapshot behind the gauges -----------------------------------------------------------

    def start_refreshing(self, compute: Callable[[], dict], every_s: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._refresh, args=(compute, every_s), name="monitor-gauges", daemon=True
        )
        self._thread.start()

    def stop_refreshing(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _refresh(self, compute: Callable[[], dict], every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.gauges.snapshot = compute()
            except Exception as exc:  # the database is down: the writer's log line says so already
                log.debug("the monitor gauges were not refreshed (%s)", type(exc).__name__)
