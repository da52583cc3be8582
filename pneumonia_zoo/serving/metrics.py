"""Prometheus metrics: one registry per app, so several apps (tests) never collide.

What an operator needs to see the service at its limits: the process (RSS, CPU, open files), every
request by route and status, inference time and queue wait, queue depth, the bytes the admission
budgets hold, batch sizes, and predictions by served version and label.

The metrics know nothing of the service: the app factory hands `observe_batch` and
`observe_prediction` to it as callbacks, and gives the gauges the functions they read.
"""

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Label values come from fixed sets: any token is a valid HTTP method to the server, and one series
# per distinct value would let a client grow /metrics (and the process) without bound.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER = "other"
UNMATCHED = "unmatched"  # no route template: 404s, refused requests, static files


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds
        self.requests = Counter(
            "pneumonia_zoo_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "pneumonia_zoo_http_request_duration_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            registry=registry,
            buckets=_SECONDS,
        )
        self.batch_size = Histogram(
            "pneumonia_zoo_inference_batch_size",
            "Images per network call (micro-batching)",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.inference_seconds = Histogram(
            "pneumonia_zoo_inference_seconds",
            "Time of one network call (a micro-batch)",
            registry=registry,
            buckets=_SECONDS,
        )
        self.queue_wait = Histogram(
            "pneumonia_zoo_queue_wait_seconds",
            "Time a request's images waited for the network",
            registry=registry,
            buckets=_SECONDS,
        )
        self.queue_depth = Gauge(
            "pneumonia_zoo_queue_depth", "Requests waiting for the network", registry=registry
        )
        self.in_flight = Gauge(
            "pneumonia_zoo_budget_bytes_in_use",
            "Bytes held by each admission budget (uploads, pixels)",
            ["budget"],
            registry=registry,
        )
        self.waiting = Gauge(
            "pneumonia_zoo_budget_waiting_requests",
            "Requests waiting for each admission budget",
            ["budget"],
            registry=registry,
        )
        self.predictions = Counter(
            "pneumonia_zoo_predictions",
            "Predicted labels by served version",
            ["version", "label"],
            registry=registry,
        )
        self.out_of_population = Counter(
            "pneumonia_zoo_out_of_population",
            "Images flagged as unlike the training data, by served version",
            ["version"],
            registry=registry,
        )
        self.model = Gauge(
            "pneumonia_zoo_model_loaded",
            "1 for the registry version serving as champion",
            ["name", "version", "architecture", "runtime"],
            registry=registry,
        )

    def set_model(self, description: dict[str, str]) -> None:
        self.model.clear()
        self.model.labels(**description).set(1)

    def observe_batch(self, rows: int, seconds: float, waits: list[float]) -> None:
        self.batch_size.observe(rows)
        self.inference_seconds.observe(seconds)
        for wait in waits:
            self.queue_wait.observe(wait)

    def observe_prediction(self, version: str, label: str, out_of_population: bool) -> None:
        self.predictions.labels(version, label).inc()
        if out_of_population:
            self.out_of_population.labels(version).inc()

    # Gauges read when Prometheus scrapes (nothing to keep in step); a later call replaces the function.

    def watch_queue(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def watch_budget(self, name: str, in_use: Callable[[], float], waiting: Callable[[], float]) -> None:
        self.in_flight.labels(name).set_function(in_use)
        self.waiting.labels(name).set_function(waiting)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): counts every response by its route template, not its URL."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # The route's template (/samples/{name}), never the raw path.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = method_label(scope["method"])
            self.metrics.requests.labels(method, route, status_label(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
