"""Uploads stay in memory, and the size limit stops reading the stream early."""

import asyncio
import tempfile

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from pneumonia_zoo.serving.errors import ServingError
from pneumonia_zoo.serving.uploads import read_upload_form
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
    boundary, chunk = b"limit", 64 * 1024
    head = (
        b'--limit\r\nContent-Disposition: form-data; name="file"; filename="huge.png"\r\n'
        b"Content-Type: image/png\r\n\r\n"
    )
    total_chunks, sent = 320, []  # a 20 MB body

    async def receive() -> dict:
        sent.append(chunk)
        body = head if len(sent) == 1 else b"\0" * chunk
        return {"type": "http.request", "body": body, "more_body": len(sent) < total_chunks}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=" + boundary)],
    }
    with pytest.raises(ServingError) as raised:
        asyncio.run(read_upload_form(Request(scope, receive), max_file_bytes=1_000_000, max_files=1))
    assert raised.value.status_code == 413
    assert "huge.png" in raised.value.detail
    assert len(sent) < 20  # stopped just past 1 MB, not after the whole 20 MB
