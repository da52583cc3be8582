"""Prometheus metrics: one registry per app, so several apps (tests) never collide."""

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pneumonia_zoo_http_requests", "HTTP requests by route and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "pneumonia_zoo_http_request_duration_seconds", "HTTP request latency by route",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.batch_size = Histogram(
            "pneumonia_zoo_inference_batch_size", "Images per network call (micro-batching)",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.predictions = Counter(
            "pneumonia_zoo_predictions", "Predicted labels", ["label"], registry=self.registry,
        )
        self.model = Gauge(
            "pneumonia_zoo_model_loaded", "1 for the registry version serving as champion",
            ["name", "version", "architecture", "runtime"], registry=self.registry,
        )

    def set_model(self, description: dict[str, str]) -> None:
        self.model.clear()
        self.model.labels(**description).set(1)


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
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
