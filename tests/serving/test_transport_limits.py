"""Slow, stalled and vanishing clients against a real `pneumonia-zoo serve` on 127.0.0.1 (issue 22,
findings 3 and 4 and the transport-level low ones): each hostile input is built here, by the test."""

import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR
from pneumonia_zoo.serving.server import LINGER_IDLE_S, LINGER_S
from pneumonia_zoo.serving.uploads import max_body_bytes
from tests.conftest import PROJECT_ROOT
from tests.servers import BIN, free_port, running

pytestmark = pytest.mark.slow

MB = 2**20
DEFAULT_MAX_UPLOAD = 20 * MB  # the service's default limits: what an unauthenticated client may declare
DEFAULT_BATCH = 16
MAX_CONNECTIONS = 100  # small, so that the test can open more stalled sockets than the server allows


@dataclass
class Server:
    url: str
    port: int
    log: Path

    def connect(self, timeout: float = 10) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def normal_upload(self, timeout: float) -> httpx.Response:
        image = SAMPLE_IMAGES_DIR / "IM-0027-0001.jpeg"  # 157 KB
        upload = {"file": (image.name, image.read_bytes(), "image/jpeg")}
        return httpx.post(f"{self.url}/api/v1/predict", files=upload, timeout=timeout)

    def wait_for_log(self, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if re.search(pattern, text, re.MULTILINE):
                return text
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never appeared in the server's log:\n{text[-3000:]}")


@pytest.fixture(scope="module")
def server(registered_store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`pneumonia-zoo serve` with its default limits (the socket cap lowered), no API key."""
    port = free_port()
    log = tmp_path_factory.mktemp("transport") / "serve.log"
    env = os.environ | {
        "MLFLOW_TRACKING_URI": registered_store,
        "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0",
        "PNEUMONIA_ZOO_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    command = [str(BIN / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", log, timeout=120, env=env, cwd=PROJECT_ROOT):
        yield Server(url, port, log)


def upload_head(length: int, path: str = "/api/v1/predict", boundary: str = "b") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


FILE_PART = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpeg"\r\n\r\n'


def test_stalled_sockets_declaring_huge_bodies_do_not_hold_up_a_normal_upload(server: Server) -> None:
    """24 sockets each declare 23 MB and stall: their declared bytes reserve nothing."""
    with ExitStack() as stack:
        for _ in range(24):
            sock = stack.enter_context(server.connect())
            sock.sendall(upload_head(23_000_000) + FILE_PART)  # then nothing more
        time.sleep(0.5)  # every stalled request has reached the service
        started = time.monotonic()
        response = server.normal_upload(timeout=30)
        waited = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert waited < 5, f"a normal upload waited {waited:.1f} s behind stalled sockets"


def read_until_closed(sock: socket.socket) -> bytes:
    """The whole answer: headers and body may arrive in separate segments; the server closes after it."""
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def test_a_stalled_body_is_cut_off_at_the_minimum_rate_well_before_the_body_timeout(server: Server) -> None:
    with server.connect(timeout=20) as sock:
        started = time.monotonic()
        sock.sendall(upload_head(23_000_000) + FILE_PART)
        answer = read_until_closed(sock)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer, answer
    assert took < 15  # the grace period (5 s) and a little, not the 30 s body timeout


def test_the_largest_batch_body_is_not_accepted_from_its_declared_length(server: Server) -> None:
    """16 files of 20 MB declared (322 MB): refused before a byte of the body is read."""
    declared = max_body_bytes(DEFAULT_MAX_UPLOAD, DEFAULT_BATCH)
    with server.connect(timeout=5) as sock:
        sock.sendall(upload_head(declared))
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_an_early_answer_reaches_a_client_still_sending_its_body(server: Server) -> None:
    """A 413 from the declared length while the client goes on sending, as HTTP clients do: closed with
    the body unread, the connection was reset under the client's writes (3 MB in), which aiohttp and
    urllib3 report instead of the answer. Now the server drains and drops the rest, then closes."""
    with server.connect(timeout=10) as sock:
        sock.sendall(upload_head(max_body_bytes(DEFAULT_MAX_UPLOAD, DEFAULT_BATCH)))
        for _ in range(128):  # 8 MB of body, never read
            sock.sendall(b"x" * 65536)
        quiet = time.monotonic()
        answer = read_until_closed(sock)  # closed once the client has been quiet for LINGER_IDLE_S
        assert time.monotonic() - quiet < LINGER_IDLE_S + 2
        with pytest.raises(OSError):  # the first write is answered by a reset, the next fails
            for _ in range(10):
                sock.sendall(b"x")
                time.sleep(0.1)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def read_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read to its end (the connection may stay open)."""

    def more() -> bytes:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        return chunk

    data = b""
    while b"\r\n\r\n" not in data:
        data += more()
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += more()
    return head + b"\r\n\r\n" + body


def test_a_body_drained_after_an_early_answer_leaves_the_connection_for_the_next_request(
    server: Server,
) -> None:
    """17 files, refused at the 17th part's headers: the client sends its whole body (8 MB more) anyway
    and, seeing no `Connection: close`, its next request on the same connection (as aiohttp's pool
    does). Closing with the body unread resets the connection; dropping every byte after the answer
    would leave that next request unanswered."""
    parts = (FILE_PART + b"x" * 1000 + b"\r\n") * DEFAULT_BATCH
    body = parts + FILE_PART + b"x" * (8 * MB) + b"\r\n--b--\r\n"  # still arriving when refused
    with server.connect(timeout=10) as sock:
        sock.sendall(upload_head(len(body)) + body)
        refused = read_answer(sock)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        healthy = read_answer(sock)
    assert refused.startswith(b"HTTP/1.1 413") and b"too many files" in refused, refused
    assert healthy.startswith(b"HTTP/1.1 200"), healthy


def test_a_client_trickling_after_an_early_answer_is_closed_after_the_linger_time(server: Server) -> None:
    """The drain is bounded: a byte every 0.3 s (never quiet for LINGER_IDLE_S) is cut off at LINGER_S."""
    with server.connect(timeout=10) as sock:
        sock.sendall(upload_head(max_body_bytes(DEFAULT_MAX_UPLOAD, DEFAULT_BATCH)))
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
        answered = time.monotonic()
        with pytest.raises(OSError):
            while time.monotonic() - answered < LINGER_S + 5:
                sock.sendall(b"x")
                time.sleep(0.3)
        took = time.monotonic() - answered
    assert LINGER_S - 1 < took < LINGER_S + 2, took


def test_slowloris_cannot_lock_out_the_health_probes_or_uploads(server: Server) -> None:
    """More sockets with unfinished headers than the server allows connections: probes still answer."""
    with ExitStack() as stack:
        for _ in range(MAX_CONNECTIONS + 50):
            sock = stack.enter_context(server.connect())
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        for _ in range(5):
            for path in ("/healthz", "/readyz"):
                started = time.monotonic()
                response = httpx.get(f"{server.url}{path}", timeout=5)
                assert response.status_code == 200, (path, response.status_code, response.text)
                assert time.monotonic() - started < 1
            time.sleep(0.2)
        assert server.normal_upload(timeout=30).status_code == 200


def test_a_client_leaving_mid_upload_leaves_no_5xx_and_no_traceback(server: Server) -> None:
    marker = "left-mid-upload"
    with server.connect() as sock:
        head = upload_head(200_000, path=f"/api/v1/predict?tag={marker}").replace(
            b"Host: 127.0.0.1\r\n", f"Host: 127.0.0.1\r\nX-Request-ID: {marker}\r\n".encode()
        )
        sock.sendall(head + FILE_PART + b"\xff" * 50_000)
        time.sleep(0.3)
    text = server.wait_for_log(rf"\[{marker}\].*POST /api/v1/predict")
    lines = [line for line in text.splitlines() if f"[{marker}]" in line]
    assert not any(re.search(r"POST /api/v1/predict 5\d\d", line) for line in lines), lines
    assert "Traceback" not in text
    assert "Exception in ASGI application" not in text


def test_repeating_one_field_name_counts_every_part(server: Server) -> None:
    """300 parts named alike: the form-field limit counts parts, not names."""
    body = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="operating_point"\r\n\r\nx\r\n' for _ in range(300)
    )
    body += b"--b--\r\n"
    response = httpx.post(
        f"{server.url}/api/v1/predict",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b"},
        timeout=30,
    )
    assert response.status_code == 413 and "too many form fields" in response.json()["detail"]


def test_a_newline_in_the_path_cannot_forge_a_log_line(server: Server) -> None:
    forged = "1999-01-01 00:00:00,000 INFO pneumonia_zoo.access [forged] GET /admin 200 1.0 ms"
    target = "/nothing%0d%0a" + forged.replace(" ", "%20")
    with server.connect() as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 404")
    text = server.wait_for_log(r"GET /nothing")
    assert not any(line.startswith("1999-01-01") for line in text.splitlines())
    assert not any(line.startswith(forged) for line in text.splitlines())


def test_the_image_trusts_forwarded_headers_only_from_itself() -> None:
    """`FORWARDED_ALLOW_IPS=*` would let any client set its address, scheme and host."""
    for name in ("Dockerfile", "docker/serve.sh"):
        text = (PROJECT_ROOT / name).read_text()
        assert not re.search(r"FORWARDED_ALLOW_IPS=['\"]?\*", text), name
    assert "FORWARDED_ALLOW_IPS=127.0.0.1" in (PROJECT_ROOT / "Dockerfile").read_text()


def test_the_concurrency_limit_counts_requests_and_spares_the_probes(
    registered_store: str, tmp_path: Path
) -> None:
    """Past LIMIT_CONCURRENCY requests in flight a new request is a 503; the health probes never are."""
    port = free_port()
    env = os.environ | {
        "MLFLOW_TRACKING_URI": registered_store,
        "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0",
        "PNEUMONIA_ZOO_LIMIT_CONCURRENCY": "4",
    }
    command = [str(BIN / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/readyz", tmp_path / "serve.log", timeout=120, env=env, cwd=PROJECT_ROOT):
        server = Server(url, port, tmp_path / "serve.log")
        with ExitStack() as stack:
            idle = [
                stack.enter_context(server.connect()) for _ in range(8)
            ]  # sockets alone count for nothing
            assert server.normal_upload(timeout=30).status_code == 200
            for sock in idle[:5]:
                sock.sendall(upload_head(1_000_000) + FILE_PART)  # five requests in flight, stalled
            time.sleep(0.5)
            assert server.normal_upload(timeout=30).status_code == 503
            for path in ("/healthz", "/readyz"):
                assert httpx.get(f"{url}{path}", timeout=5).status_code == 200


def test_the_open_file_limit_is_raised_to_hold_the_connections() -> None:
    import resource

    from pneumonia_zoo.serving.server import open_file_room

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1300:
        pytest.skip(f"hard open-file limit {hard}")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert open_file_room(1000) >= 1000 + 256
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= 1256
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
