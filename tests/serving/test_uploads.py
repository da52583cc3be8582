"""Uploads stay in memory, and the size limit stops reading the stream early."""

import asyncio
import tempfile
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pneumonia_zoo.errors import ClientTimeout, MalformedRequest, TooLarge, UnsupportedMediaType
from pneumonia_zoo.serving.uploads import IncomingBody, read_upload_form
from tests.serving.conftest import TEST_LIMITS, noise_png


@pytest.fixture
def no_temp_dir(tmp_path, monkeypatch):
    """Point every temporary file at a folder that does not exist: creating one now raises."""
    missing = tmp_path / "no-temp-files-here"
    monkeypatch.setattr(tempfile, "tempdir", str(missing))
    yield missing
    assert not missing.exists()


def test_upload_over_starlettes_spool_size_never_touches_disk(client, no_temp_dir):
    upload = noise_png(900, 900)  # ~2.4 MB: over the 1 MB after which starlette spools to disk
    assert 1024 * 1024 < len(upload) < TEST_LIMITS["max_upload_bytes"]
    response = client.post("/api/v1/predict", files={"file": ("big.png", upload, "image/png")})
    assert response.status_code == 200, response.text


def test_control_starlettes_own_form_parser_would_write_a_temp_file(no_temp_dir):
    """The trap the upload reader avoids: request.form() spools this same upload to a temp file."""

    async def form(request: Request) -> PlainTextResponse:
        await request.form()
        return PlainTextResponse("parsed")

    app = Starlette(routes=[Route("/", form, methods=["POST"])])
    with TestClient(app) as plain, pytest.raises(FileNotFoundError):
        plain.post("/", files={"file": ("big.png", noise_png(900, 900), "image/png")})


def test_size_limit_is_enforced_while_reading_the_stream():
    head = (
        b'--limit\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    total_chunks, sent = 320, []  # a 20 MB body in 64 KB chunks

    async def chunks() -> AsyncIterator[bytes]:
        for index in range(total_chunks):
            sent.append(index)
            yield head if index == 0 else b"\0" * (64 * 1024)

    body = IncomingBody("multipart/form-data; boundary=limit", None, chunks())
    with pytest.raises(TooLarge, match="huge.png"):
        asyncio.run(read_upload_form(body, max_file_bytes=1_000_000, max_files=1))
    assert len(sent) < 20  # stopped just past 1 MB, not after the whole 20 MB


@pytest.mark.parametrize(
    ("content_type", "length", "error"),
    [
        ("application/json", None, UnsupportedMediaType),
        ("multipart/form-data", None, MalformedRequest),  # no boundary
        ("multipart/form-data; boundary=x", 10**9, TooLarge),  # refused from its declared length
    ],
)
def test_a_body_is_refused_before_it_is_read(content_type, length, error):
    read = []

    async def chunks() -> AsyncIterator[bytes]:
        read.append(True)
        yield b""

    body = IncomingBody.from_headers(
        {"content-type": content_type} | ({"content-length": str(length)} if length else {}), chunks()
    )
    with pytest.raises(error):
        asyncio.run(read_upload_form(body, max_file_bytes=1_000_000, max_files=1))
    assert not read


def test_a_stalled_body_is_a_client_timeout():
    async def stalls() -> AsyncIterator[bytes]:
        yield b"--x\r\n"
        await asyncio.Event().wait()  # the rest never arrives
        yield b""

    body = IncomingBody("multipart/form-data; boundary=x", None, stalls())
    with pytest.raises(ClientTimeout, match="within 0.05 s"):
        asyncio.run(read_upload_form(body, max_file_bytes=1_000_000, max_files=1, timeout_s=0.05))
