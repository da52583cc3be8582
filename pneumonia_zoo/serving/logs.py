"""The service's logging: level and format (text or JSON) from the settings, a request id on every line,
one access line per request. Upload content, file names and DICOM headers never reach a log line, and a
message's control characters are escaped: a path holding `%0a` cannot forge a line of its own."""

import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pneumonia_zoo.config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
request_id: ContextVar[str] = ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")  # echo a caller's id only when it is harmless
_HANDLER_NAME = "pneumonia-zoo"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # line breaks, escapes, terminal controls
access_log = logging.getLogger("pneumonia_zoo.access")


def printable(text: str) -> str:
    """`text` with its control characters written as escapes (`\\x0a`): one log line stays one line."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class _OneLineFormatter(logging.Formatter):
    """The text format, each message on one line; a traceback (the operator's) is kept as it is."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        record.message = printable(record.message)
        return super().formatMessage(record)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def configure_logging(settings: Settings) -> None:
    """One handler on the root logger (replaced, not added, when an app is made again)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_RequestIdFilter())
    if settings.log_json:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s", timestamp=True)
        )
    else:
        handler.setFormatter(
            _OneLineFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root.addHandler(handler)
    logging.getLogger("pneumonia_zoo").setLevel(settings.log_level)
    # uvicorn's lifecycle lines (started, shutting down, finished) at the same level: the root logger's
    # WARNING would drop them, and an orchestrator's log is where a clean stop is seen.
    logging.getLogger("uvicorn").setLevel(settings.log_level)
    # Our own access line replaces uvicorn's, which knows no request id.
    logging.getLogger("uvicorn.access").disabled = True


class RequestIdMiddleware:
    """Echo a valid X-Request-ID or make one, on every response, and write the access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode(), b"").decode("latin-1")
        rid = given if _VALID_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status, started = 500, time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            access_log.info(
                "%s %s %d %.1f ms",
                printable(scope["method"]),
                printable(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
            request_id.reset(token)
