"""A corpus of malformed and unusual uploads, made here from bytes, PIL and numpy (no files committed).

Every case gets a 200 with a well-formed prediction or a 4xx with a JSON `detail`, never a 5xx; after
the whole corpus the service still answers. Run in process (TestClient) and against a real uvicorn.

What is accepted (see README, API): JPEG (also CMYK, progressive, EXIF-rotated) and PNG (any mode: 1-bit,
L, 16-bit, palette, LA, RGB, RGBA), recognised by content, not by name. GIF, TIFF, WebP, BMP and the
rest are images the model was never trained on the encoding of: 422 "unsupported image type".
"""

import io
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import TEST_LIMITS, encode, noise_png, uvicorn_process

pytestmark = pytest.mark.slow

Post = Callable[..., httpx.Response]
BOUNDARY = "corpus-boundary"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header (valid CRC) claims width x height: a decompression bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    pixels = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def _exif_rotated(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image.convert("RGB"), "JPEG", exif=exif.tobytes())


def _animated_gif(image: Image.Image) -> bytes:
    frames = [image.convert("P"), image.rotate(90).convert("P")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A hand-made multipart body: (field name, filename or None for a plain field, content)."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (
            f'; filename="{filename}"' if filename is not None else ""
        )
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{BOUNDARY}--\r\n".encode()


def corpus(xray: Image.Image, xray_bytes: bytes) -> dict[str, dict]:
    """name -> keyword arguments of a POST to /api/v1/predict (httpx's: files, content, headers, params)."""
    small = xray.resize((160, 128))
    rgb = small.convert("RGB")
    rgba, la = small.convert("RGBA"), small.convert("LA")
    rgba.putalpha(180)
    sixteen = Image.fromarray(np.asarray(small, dtype=np.uint16) * 257)
    palette_transparent = rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    palette_transparent.info["transparency"] = 0
    rng = np.random.default_rng(6)
    multipart = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    png = encode(small)

    def file(name: str, data: bytes, media_type: str = "image/jpeg") -> dict:
        return {"files": {"file": (name, data, media_type)}}

    cases = {
        # Not images at all, whatever they are called.
        "zero-bytes": file("empty.jpg", b""),
        "random-bytes": file("random.jpg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        "text": file("notes.jpg", b"patient notes, not an image\n" * 30, "text/plain"),
        "html": file("page.jpg", b"<!doctype html><html><body><script>alert(1)</script></body></html>"),
        "svg": file("vector.jpg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        "pdf": file("scan.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"),
        "jpeg-magic-only": file("magic.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 64),
        # Damaged images.
        "truncated-jpeg": file("cut.jpg", xray_bytes[: len(xray_bytes) // 3]),
        "truncated-png": file("cut.png", png[: len(png) // 2], "image/png"),
        "png-bad-crc": file("crc.png", png[:29] + bytes([png[29] ^ 0xFF]) + png[30:], "image/png"),
        "png-header-50000x50000": file("bomb.png", png_claiming(50_000, 50_000), "image/png"),
        "png-over-pixel-limit": file("large.png", encode(Image.new("L", (3000, 2100))), "image/png"),
        # Formats the service does not take.
        "gif": file("x.gif", encode(small, "GIF"), "image/gif"),
        "gif-animated": file("anim.gif", _animated_gif(small), "image/gif"),
        "tiff": file("x.tiff", encode(small, "TIFF"), "image/tiff"),
        "webp": file("x.webp", encode(rgb, "WEBP"), "image/webp"),
        "bmp": file("x.bmp", encode(rgb, "BMP"), "image/bmp"),
        # Unusual but valid JPEG and PNG: all accepted.
        "jpeg-cmyk": file("cmyk.jpg", encode(rgb.convert("CMYK"), "JPEG")),
        "jpeg-progressive": file("prog.jpg", encode(rgb, "JPEG", progressive=True)),
        "jpeg-grayscale": file("gray.jpg", encode(small, "JPEG")),
        "jpeg-exif-3": file("rot180.jpg", _exif_rotated(small, 3)),
        "jpeg-exif-6": file("rot90.jpg", _exif_rotated(small, 6)),
        "jpeg-exif-8": file("rot270.jpg", _exif_rotated(small, 8)),
        "png-16bit": file("deep.png", encode(sixteen), "image/png"),
        "png-16bit-flat": file("flat.png", encode(Image.new("I;16", (64, 64), 1000)), "image/png"),
        "png-1bit": file("bw.png", encode(small.convert("1")), "image/png"),
        "png-palette": file("pal.png", encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE)), "image/png"),
        "png-palette-transparent": file("palt.png", encode(palette_transparent), "image/png"),
        "png-la": file("la.png", encode(la), "image/png"),
        "png-rgba": file("rgba.png", encode(rgba), "image/png"),
        "png-1x1": file("dot.png", encode(Image.new("L", (1, 1), 128)), "image/png"),
        "png-10000x20": file("strip.png", encode(Image.new("L", (10_000, 20), 90)), "image/png"),
        "png-named-jpg": file("really-a-png.jpg", png),
        "odd-filename": file("../../etc/passwd\u202e\u00e9\u6f22.jpg", xray_bytes),
        "long-filename": file("x" * 3000 + ".jpg", xray_bytes),
        # Bad requests.
        "no-file-only-a-field": {"data": {"version": "1"}, "files": {"note": (None, b"hello")}},
        "wrong-field-name": {"files": {"image": ("x.jpg", xray_bytes, "image/jpeg")}},
        "file-and-files": {"files": [("file", ("a.jpg", xray_bytes)), ("files", ("b.jpg", xray_bytes))]},
        "too-many-files": {"files": [("files", (f"{i}.jpg", xray_bytes)) for i in range(5)]},
        "over-the-size-limit": file("big.png", noise_png(1000, 1000), "image/png"),
        "not-multipart-json": {
            "content": b'{"image": "aGVsbG8="}',
            "headers": {"content-type": "application/json"},
        },
        "not-multipart-raw-jpeg": {"content": xray_bytes, "headers": {"content-type": "image/jpeg"}},
        "no-content-type": {"content": xray_bytes},
        "multipart-no-boundary": {"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}},
        "multipart-garbage": {"content": b"\0\1\2 not multipart", "headers": multipart},
        "multipart-empty-body": {"content": b"", "headers": multipart},
        "multipart-unterminated": {
            "content": _multipart(("file", "x.jpg", xray_bytes))[:-40],
            "headers": multipart,
        },
        "multipart-part-without-name": {
            "content": f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\n"
            f"x\r\n--{BOUNDARY}--\r\n".encode(),
            "headers": multipart,
        },
        "multipart-hand-made-ok": {
            "content": _multipart(("file", "hand.jpg", xray_bytes)),
            "headers": multipart,
        },
        "version-not-a-number": {**file("x.jpg", xray_bytes), "params": {"version": "latest"}},
        "version-unknown": {**file("x.jpg", xray_bytes), "params": {"version": "987654"}},
        "version-huge-number": {**file("x.jpg", xray_bytes), "params": {"version": "9" * 400}},
    }
    return cases


def check_answer(name: str, response: httpx.Response) -> None:
    assert response.status_code < 500, f"{name}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"] == "application/json", name
    body = response.json()
    if response.status_code == 200:
        predictions = body if isinstance(body, list) else [body]
        for prediction in predictions:
            assert prediction["label"] in prediction["probabilities"], name
            assert sum(prediction["probabilities"].values()) == pytest.approx(1, abs=1e-5), name
            assert all(0 <= p <= 1 for p in prediction["probabilities"].values()), name
    else:
        assert 400 <= response.status_code < 500, name
        assert isinstance(body["detail"], str) and len(body["detail"]) > 10, f"{name}: {body}"
        for leak in ("Traceback", "/work", ".py", "site-packages"):
            assert leak not in body["detail"], f"{name}: {body['detail']}"


# The decisions, for the cases where more than "200 or a 4xx" is promised.
EXPECTED = {
    "zero-bytes": 422,
    "random-bytes": 422,
    "text": 422,
    "html": 422,
    "svg": 422,
    "pdf": 422,
    "truncated-jpeg": 422,
    "truncated-png": 422,
    "png-bad-crc": 422,
    "png-header-50000x50000": 413,
    "png-over-pixel-limit": 413,
    "gif": 422,
    "gif-animated": 422,
    "tiff": 422,
    "webp": 422,
    "bmp": 422,
    "jpeg-cmyk": 200,
    "jpeg-progressive": 200,
    "jpeg-grayscale": 200,
    "jpeg-exif-3": 200,
    "jpeg-exif-6": 200,
    "jpeg-exif-8": 200,
    "png-16bit": 200,
    "png-16bit-flat": 200,
    "png-1bit": 200,
    "png-palette": 200,
    "png-palette-transparent": 200,
    "png-la": 200,
    "png-rgba": 200,
    "png-1x1": 200,
    "png-10000x20": 200,
    "png-named-jpg": 200,
    "odd-filename": 200,
    "long-filename": 200,
    "multipart-hand-made-ok": 200,
    "no-file-only-a-field": 422,
    "wrong-field-name": 422,
    "file-and-files": 422,
    "too-many-files": 413,
    "over-the-size-limit": 413,
    "not-multipart-json": 415,
    "not-multipart-raw-jpeg": 415,
    "no-content-type": 415,
    "multipart-no-boundary": 400,
    "multipart-garbage": 400,
    "multipart-part-without-name": 400,
    "version-not-a-number": 422,
    "version-unknown": 404,
    "version-huge-number": 404,
}
UNSUPPORTED = ("gif", "gif-animated", "tiff", "webp", "bmp")


def run_corpus(post: Post, xray: Image.Image, xray_bytes: bytes) -> dict[str, httpx.Response]:
    answers = {}
    for name, request in corpus(xray, xray_bytes).items():
        answers[name] = response = post("/api/v1/predict", **request)
        check_answer(name, response)
    return answers


def check_decisions(answers: dict[str, httpx.Response]) -> None:
    assert len(answers) >= 30
    wrong = {
        name: (answers[name].status_code, answers[name].text[:160])
        for name, status in EXPECTED.items()
        if answers[name].status_code != status
    }
    assert not wrong, wrong
    for name in UNSUPPORTED:
        assert "unsupported image type" in answers[name].json()["detail"], name
    assert answers["odd-filename"].json()["filename"].startswith("../../etc/passwd")


def check_still_serving(get: Callable[..., httpx.Response], post: Post, xray_bytes: bytes) -> None:
    assert get("/healthz").json() == {"status": "ok"}
    assert get("/readyz").status_code == 200
    answer = post("/api/v1/predict", files={"file": ("after.jpeg", xray_bytes, "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["filename"] == "after.jpeg"


def test_corpus_in_process(client, xray, xray_bytes):
    check_decisions(run_corpus(client.post, xray, xray_bytes))
    check_still_serving(client.get, client.post, xray_bytes)


@pytest.fixture(scope="module")
def server(registered_store: str, tmp_path_factory) -> Iterator[tuple[httpx.Client, object, Path]]:
    log = tmp_path_factory.mktemp("robustness") / "uvicorn.log"
    limits = {key: str(value) for key, value in TEST_LIMITS.items()}
    with (
        uvicorn_process(registered_store, log, reload_interval_s="0", **limits) as (url, process),
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        yield http, process, log


def test_corpus_against_a_real_server(server, xray, xray_bytes):
    http, process, log = server
    check_decisions(run_corpus(http.post, xray, xray_bytes))
    check_still_serving(http.get, http.post, xray_bytes)
    assert process.poll() is None, "the server process died"
    assert "Traceback" not in log.read_text()
