"""The live loop's parts in the service: the audit trail, the recorder the routes use, the shadow
challenger and the monitor's gauges. Made by create_app, started and stopped with each lifespan."""

import logging

from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import NotFound
from pneumonia_zoo.serving.live_metrics import LiveMetrics
from pneumonia_zoo.serving.metrics import ServiceMetrics
from pneumonia_zoo.serving.recording import Recorder
from pneumonia_zoo.serving.shadow import ShadowScorer
from pneumonia_zoo.tracking.store import Store

log = logging.getLogger(__name__)

RECORDING_OFF = "recording is off (PNEUMONIA_ZOO_AUDIT_URL=off): no predictions are kept"


class LiveLoop:
    def __init__(self, settings: Settings, store: Store, metrics: ServiceMetrics) -> None:
        self.settings, self.store = settings, store
        self.metrics = LiveMetrics(metrics.registry)
        self.trail = AuditTrail.from_settings(settings, on_batch=self.metrics.observe_batch)
        self.shadow = (
            ShadowScorer(settings, store, self.trail, self.metrics) if self.trail is not None else None
        )
        self.recorder = Recorder(settings, self.trail, self.shadow, self.metrics)
        if self.trail is None:
            log.warning(RECORDING_OFF)

    def start(self) -> None:
        if self.trail is None:
            return
        self.trail.start()
        if self.shadow is not None:
            self.shadow.start()
        self.metrics.start_refreshing(self._default_monitor, self.settings.monitor_refresh_s)

    def stop(self) -> None:
        if self.trail is None:
            return
        self.metrics.stop_refreshing()
        if self.shadow is not None:
            self.shadow.stop()
        self.trail.stop()  # after the shadow: its last records are committed too

    def require(self) -> AuditTrail:
        if self.trail is None:
            raise NotFound(RECORDING_OFF)
        return self.trail

    def monitor(self, window: Window) -> dict:
        """The monitor over `window`, with the shadow challenger's state in this process."""
        found = self.require().monitor(self.store.model_name, window)
        shadow = found["shadow"]
        if self.shadow is not None:
            shadow |= self.shadow.status()
        shadow["jobs"] = self.metrics.shadow_counts()
        if window.name == Window.parse(self.settings.monitor_window).name:
            self.metrics.gauges.snapshot = found  # the gauges follow the freshest default-window figures
        return found

    def _default_monitor(self) -> dict:
        return self.require().monitor(self.store.model_name, Window.parse(self.settings.monitor_window))
