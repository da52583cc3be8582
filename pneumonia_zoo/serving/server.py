"""Running the app under uvicorn with the service's limits (what `pneumonia-zoo serve` starts).

uvicorn bounds concurrency and idle keep-alive connections, but not how long a client may take to
send its request line and headers: 300 connections that send half a header and stall would be held
forever. `HeaderTimeoutProtocol` closes them after `header_timeout_s`.
"""

import asyncio
import logging
from functools import lru_cache

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from pneumonia_zoo.config import Settings, get_settings

log = logging.getLogger(__name__)


@lru_cache
def _header_timeout() -> float:
    return get_settings().header_timeout_s  # read once per worker process


class HeaderTimeoutProtocol(H11Protocol):
    """h11 with a deadline for each request's line and headers."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(_header_timeout(), self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            log.info(
                "closed a connection that sent no complete request headers within %.0f s", _header_timeout()
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._waiting_for_headers() and self._header_timer is None:
            self._arm()  # a keep-alive connection starts its next request
        super().data_received(data)
        if not self._waiting_for_headers():
            self._disarm()

    def on_response_complete(self) -> None:
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            # Answered before the body arrived (408, 413): the rest of it will not be read, so the
            # connection cannot carry another request.
            self.transport.close()
            return
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def uvicorn_options(settings: Settings) -> dict:
    return {
        "http": HeaderTimeoutProtocol,
        "limit_concurrency": settings.limit_concurrency,
        "timeout_keep_alive": int(settings.keep_alive_s),
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_s),
        "access_log": False,  # the app writes one access line per request, with its request id
        "log_config": None,  # the app configures logging (level and JSON format are settings)
        "proxy_headers": True,
    }


def run_server(host: str, port: int, settings: Settings | None = None) -> None:
    settings = settings or get_settings()
    # The factory, not "fastapiapp:app": it works from any folder, not just the project root.
    uvicorn.run(
        "pneumonia_zoo.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        **uvicorn_options(settings),
    )
