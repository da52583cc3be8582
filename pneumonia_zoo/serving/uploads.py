"""Reading multipart uploads from the request stream into memory, with limits applied as bytes arrive.

Starlette's form parser spools files over 1 MB to a temporary file and reads the whole body before
the endpoint runs, so neither the size limit nor "never on disk" could be kept with it. This uses
python-multipart's streaming parser directly: parts are kept in memory and parsing stops at the
first byte over a limit.

A body must also keep arriving: after a grace period, a client sending slower than a minimum rate is
cut off (ClientTimeout), so a stalled socket cannot hold a request for the whole body timeout. Only
the time spent waiting for the client's bytes counts, not time the service itself makes it wait.
"""

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, cast

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from pneumonia_zoo.errors import ClientTimeout, MalformedRequest, TooLarge, UnsupportedMediaType

if TYPE_CHECKING:  # python-multipart defines the callbacks' type for type checkers only
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 64 * 1024  # plain form fields (a version number, a sample name) are tiny
MAX_FIELDS = 32  # plain field parts, counted one by one (not by name: one name may repeat)
_MULTIPART_OVERHEAD = 64 * 1024  # part headers and boundaries


def max_body_bytes(max_file_bytes: int, max_files: int) -> int:
    """The largest body a request inside the limits can have: what the upload budget reserves."""
    return max_files * max_file_bytes + MAX_FIELDS * MAX_FIELD_BYTES + _MULTIPART_OVERHEAD


def held_bound(received: int) -> int:
    """The memory `received` body bytes can take once parsed into parts: a part's bytearray grows by
    over-allocating up to an eighth of its size (CPython's rule, as lists do), and the upload budget is
    for the memory held, so it is charged for that headroom too; + 64 for one buffer object itself (an
    empty bytearray takes 56 bytes on 64-bit CPython)."""
    return received + received // 8 + 64


def size_text(count: int) -> str:
    return f"{count / 2**20:.1f} MB" if count >= 2**20 else f"{count / 1024:.0f} KB"


def declared_length(headers: Mapping[str, str]) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class IncomingBody:
    """A request body as it arrives: what its headers declare, and its bytes as an async stream."""

    content_type: str
    length: int | None  # the declared Content-Length, if any
    chunks: AsyncIterator[bytes]

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> "IncomingBody":
        """From a request's (case-insensitive) headers and its body stream."""
        return cls(headers.get("content-type", ""), declared_length(headers), chunks)


@dataclasses.dataclass
class UploadedFile:
    field: str
    filename: str
    data: bytearray = dataclasses.field(default_factory=bytearray)


@dataclasses.dataclass
class UploadForm:
    files: list[UploadedFile] = dataclasses.field(default_factory=list)
    fields: dict[str, str] = dataclasses.field(default_factory=dict)

    def files_named(self, *names: str) -> list[UploadedFile]:
        return [upload for upload in self.files if upload.field in names]


class _Collector:
    """python-multipart callbacks that build an UploadForm and enforce the limits."""

    def __init__(self, max_file_bytes: int, max_files: int) -> None:
        self.form = UploadForm()
        self.max_file_bytes, self.max_files = max_file_bytes, max_files
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._file: UploadedFile | None = None
        self._field_name = ""
        self._field_data = bytearray()
        self._field_parts = 0

    def on_part_begin(self) -> None:
        self._disposition, self._file, self._field_data = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise MalformedRequest("malformed multipart body: a part has no field name")
        name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if len(self.form.files) >= self.max_files:
                raise TooLarge(f"too many files: at most {self.max_files} images per request")
            self._file = UploadedFile(name, options[b"filename"].decode("utf-8", "replace"))
            self.form.files.append(self._file)
        else:
            self._field_parts += 1
            if self._field_parts > MAX_FIELDS:
                raise TooLarge(f"too many form fields (at most {MAX_FIELDS})")
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self._file.data += data[start:end]
            if len(self._file.data) > self.max_file_bytes:
                raise TooLarge(
                    f"'{self._file.filename}' is larger than the upload limit of "
                    f"{size_text(self.max_file_bytes)}"
                )
        else:
            self._field_data += data[start:end]
            if len(self._field_data) > MAX_FIELD_BYTES:
                raise TooLarge(f"form field '{self._field_name}' is too long")

    def on_part_end(self) -> None:
        if self._file is None:
            self.form.fields[self._field_name] = self._field_data.decode("utf-8", "replace")

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }


@dataclasses.dataclass(frozen=True)
class Pace:
    """How long a client may take over its body: `timeout_s` in all, and after `grace_s` at least
    `min_bytes_per_s` on average (0: no minimum rate)."""

    timeout_s: float | None = None
    min_bytes_per_s: float = 0
    grace_s: float = 0

    def allowed_s(self, received: int) -> float | None:
        """The time (waiting for the client, in all) it may take to send `received` bytes and the next."""
        if not self.min_bytes_per_s:
            return self.timeout_s
        by_rate = self.grace_s + received / self.min_bytes_per_s
        return by_rate if self.timeout_s is None else min(self.timeout_s, by_rate)


async def paced(chunks: AsyncIterator[bytes], pace: Pace) -> AsyncIterator[bytes]:
    """`chunks` as they come, with ClientTimeout once the client has fallen behind `pace`."""
    waited, received = 0.0, 0
    iterator = aiter(chunks)
    while True:
        allowed = pace.allowed_s(received)
        started = time.monotonic()
        try:
            async with asyncio.timeout(None if allowed is None else max(0.0, allowed - waited)):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            # Which bound ran out decides the sentence (timers may fire a hair before a re-measure says).
            if pace.timeout_s is not None and allowed is not None and allowed >= pace.timeout_s:
                raise ClientTimeout(f"the upload did not arrive within {pace.timeout_s:g} s") from None
            raise ClientTimeout(
                f"the upload arrived too slowly (under {pace.min_bytes_per_s / 1024:g} KB/s)"
            ) from None
        waited += time.monotonic() - started
        received += len(chunk)
        yield chunk


async def read_upload_form(
    body: IncomingBody,
    max_file_bytes: int,
    max_files: int,
    timeout_s: float | None = None,
    *,
    pace: Pace | None = None,
    max_bytes: int | None = None,
    on_received: Callable[[int], Awaitable[None]] | None = None,
) -> UploadForm:
    """Parse a multipart/form-data body chunk by chunk, in memory; InvalidInput errors on bad input.

    A body larger than the limits allow (`max_bytes`, else what `max_files` files allow) is refused
    (TooLarge) from its declared length before a byte is read, and as soon as more arrives. One that
    does not arrive within `timeout_s`, or falls behind `pace`, is a ClientTimeout. `on_received` is
    awaited after each chunk, before it is parsed, with the memory the bytes received so far can hold
    (`held_bound`: the upload budget's charge).
    """
    content_type, params = parse_options_header(body.content_type)
    if content_type != b"multipart/form-data":
        raise UnsupportedMediaType(
            "send the image as multipart/form-data (field 'file', or 'files' for a batch)"
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedRequest("malformed multipart body: the Content-Type header has no boundary")
    limit = max_body_bytes(max_file_bytes, max_files)
    if max_bytes is not None:
        limit = min(limit, max_bytes)
    too_large = f"the request is larger than the {size_text(limit)} allowed"
    if body.length is not None and body.length > limit:
        raise TooLarge(too_large)
    collector = _Collector(max_file_bytes, max_files)
    parser = MultipartParser(boundary, cast("MultipartCallbacks", collector.callbacks()))
    received = 0
    try:
        async for chunk in paced(body.chunks, pace or Pace(timeout_s)):
            received += len(chunk)
            if received > limit:
                raise TooLarge(too_large)
            if on_received is not None:
                await on_received(held_bound(received))
            parser.write(chunk)  # callbacks raise TooLarge as soon as a limit is crossed
        parser.finalize()
    except FormParserError:
        raise MalformedRequest("malformed multipart body") from None
    return collector.form
