"""Running the app under uvicorn with the service's limits (what `pneumonia-zoo serve` starts).

uvicorn bounds idle keep-alive connections, but not how long a client may take to send its request
line and headers, and its `limit_concurrency` counts open sockets: 64 connections that send half a
header and stall would make every other request (health probes included) a 503. `ServiceProtocol`
instead
- closes a connection whose request line and headers are not complete after `header_timeout_s`;
- caps open sockets at `max_connections` by closing the oldest connection still waiting for its
  headers (stalled or idle) when a new one arrives, so stalled sockets cannot lock newcomers out;
- counts requests in flight, not sockets, against `limit_concurrency`, health probes exempt: the
  admission control (serving/admission.py) decides on uploads before this limit does;
- after an answer given before the request's body arrived (408, 413, 503), reads the rest of the body
  and drops it (uvicorn drops a finished request's body), for at most LINGER_S, closing sooner after
  LINGER_IDLE_S of silence, as nginx's lingering close does; a body drained in time leaves the
  connection open for the next request, which clients such as aiohttp send on it. Closed at once with
  bytes unread, the kernel resets the connection, and a client still sending its body (aiohttp,
  urllib3) sees "connection reset" instead of the answer and its Retry-After.
"""

import asyncio
import logging
import math
import time
from functools import lru_cache
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from pneumonia_zoo.config import Settings, get_settings

log = logging.getLogger(__name__)

PROBES = frozenset({"/healthz", "/readyz"})  # never refused for concurrency: an orchestrator restarts on them
LINGER_S = 5.0  # the longest a connection drains a body nobody will read, after an early answer
LINGER_IDLE_S = 1.0  # and it closes sooner once the client has sent nothing for this long


@lru_cache
def _settings() -> Settings:
    return get_settings()  # read once per worker process


def _header_timeout() -> float:
    return _settings().header_timeout_s


class Tally:
    """Counts an event, logged at most once per `interval_s`: a flood of sockets is not a flood of lines."""

    def __init__(self, message: str, level: int = logging.INFO, interval_s: float = 10) -> None:
        self.message, self.level, self.interval_s = message, level, interval_s
        self.count, self.logged_at = 0, -math.inf

    def add(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= self.interval_s:
            log.log(self.level, self.message, self.count, *args)
            self.count, self.logged_at = 0, now


class InFlight:
    """Requests being handled, health probes aside (counted where each starts, not when uvicorn queues
    it: requests whose headers arrive in one read are all queued before the first one runs)."""

    def __init__(self) -> None:
        self.count = 0


def limit_requests(app: ASGIApp, in_flight: InFlight, limit: int) -> ASGIApp:
    """`app`, answering 503 past `limit` requests in flight; the health probes are neither counted nor
    refused."""

    async def limited(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await app(scope, receive, send)
            return
        if in_flight.count >= limit:
            ServiceProtocol.refused.add(limit)
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"1")],
                }
            )
            await send({"type": "http.response.body", "body": b"Service Unavailable"})
            return
        in_flight.count += 1
        try:
            await app(scope, receive, send)
        finally:
            in_flight.count -= 1

    return limited


class ServiceProtocol(H11Protocol):
    """h11 with a deadline for each request's line and headers, a socket cap that evicts stalled
    connections, and a limit on requests (not sockets) in flight."""

    # Connections waiting for their request headers, oldest first (one event loop per worker process).
    _awaiting: ClassVar[dict["ServiceProtocol", None]] = {}
    in_flight: ClassVar[InFlight] = InFlight()
    refused = Tally("%d request(s) answered 503: more than %d requests in flight", logging.WARNING)
    evicted = Tally("%d connection(s) waiting for their headers closed to stay within %d connections")
    expired = Tally("%d connection(s) closed: no complete request headers within %.0f s")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = limit_requests(self.app, self.in_flight, _settings().limit_concurrency)
        self._lingering_until: float | None = None  # loop time: draining after an early answer
        self._linger_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()
        if len(self.connections) > _settings().max_connections:
            oldest = next(iter(self._awaiting))  # at worst this one
            self.evicted.add(_settings().max_connections)
            oldest._close()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(_header_timeout(), self._expire)
        self._awaiting[self] = None

    def _disarm(self) -> None:
        self._awaiting.pop(self, None)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_timers(self) -> None:
        self._disarm()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None

    def _close(self) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Answer sent, body unread: drain it until LINGER_S, or LINGER_IDLE_S of silence, then close."""
        self._disarm()
        self._lingering_until = self.loop.time() + LINGER_S
        self.flow.resume_reading()  # uvicorn pauses reading while a body waits for the app
        self._arm_linger()

    def _drain(self, data: bytes) -> None:
        super().data_received(data)  # h11 parses it; uvicorn drops the body of an answered request
        if self._waiting_for_headers() and self.conn.their_state is h11.SEND_BODY:
            self._arm_linger()  # still the answered request's body (a pipelined one would be unanswered)
            return
        self._cancel_timers()  # drained in time: the connection carries on
        self._lingering_until = None
        if self._waiting_for_headers():
            self.on_response_complete()  # what follows any answer: keep-alive, first in line to make room

    def _arm_linger(self) -> None:
        assert self._lingering_until is not None
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        left = self._lingering_until - self.loop.time()
        self._linger_timer = self.loop.call_later(max(0.0, min(LINGER_IDLE_S, left)), self._close)

    def _expire(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.expired.add(_header_timeout())
            self._close()

    def data_received(self, data: bytes) -> None:
        if self._lingering_until is not None:  # the rest of a body nobody will read
            self._drain(data)
            return
        if self._waiting_for_headers() and self._header_timer is None:
            self._arm()  # a keep-alive connection starts its next request
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # Answered before the body arrived (408, 413, 503): drained, within limits, rather than closed
            # with bytes unread (the module's docstring says why).
            self._linger()
            return
        super().on_response_complete()
        if not self.transport.is_closing():
            self._awaiting[self] = None  # idle until its next request: first in line to make room

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._lingering_until is not None:  # its answer is out: nothing to wait for
            self._close()
            return
        super().shutdown()


HeaderTimeoutProtocol = ServiceProtocol  # its former name


def uvicorn_options(settings: Settings) -> dict:
    return {
        "http": ServiceProtocol,
        "limit_concurrency": None,  # ServiceProtocol limits requests in flight, not sockets
        "timeout_keep_alive": int(settings.keep_alive_s),
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_s),
        "access_log": False,  # the app writes one access line per request, with its request id
        "log_config": None,  # the app configures logging (level and JSON format are settings)
        "proxy_headers": True,
    }


def open_file_room(max_connections: int, spare: int = 256) -> int:
    """Raise the soft open-file limit (up to the hard one) to hold `max_connections` sockets and the
    process's own files: past the limit, accept() fails and nobody is answered. Returns the limit."""
    import resource  # POSIX only

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning("open-file limit %d: lower PNEUMONIA_ZOO_MAX_CONNECTIONS below %d", soft, soft - spare)
    return soft


def run_server(host: str, port: int, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    open_file_room(settings.max_connections)
    # The factory, not "fastapiapp:app": it works from any folder, not just the project root.
    uvicorn.run(
        "pneumonia_zoo.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        **uvicorn_options(settings),
    )
