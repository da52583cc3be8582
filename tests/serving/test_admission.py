"""Admission control: budgets waited for in order, 503 with Retry-After past the queue, the deadline's
status past the deadline, and clients that stall while sending headers or body dropped."""

import asyncio
import os
import socket
import threading
import time

import httpx
import pytest

from pneumonia_zoo.serving.admission import Budget, Overloaded
from tests.serving.conftest import make_client


def test_budget_grants_in_order_and_refuses_past_its_queue() -> None:
    async def scenario() -> list[str]:
        budget = Budget("pixels", capacity=100, max_waiting=1)
        order: list[str] = []
        await budget.acquire(80)
        big = asyncio.create_task(budget.acquire(60))  # waits: 80 + 60 > 100
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):  # the queue holds one: a second waiter is refused at once
            await budget.acquire(10)
        big.add_done_callback(lambda _: order.append("big"))
        budget.release(80)
        await big
        assert budget.in_use == 60 and budget.waiting == 0
        budget.release(60)
        assert budget.in_use == 0
        await budget.acquire(500)  # more than the capacity is clamped: one request may use it all
        assert budget.in_use == 100
        return order

    assert asyncio.run(scenario()) == ["big"]


def test_memory_is_given_back_once_the_budget_stays_empty_not_after_every_request() -> None:
    """One request at a time empties the budget after each answer: a trim then (a thread and a few ms
    of CPU per answer) cost latency for nothing. The trim waits until no new charge came for a while."""

    async def scenario() -> list[int]:
        budget = Budget("pixels", capacity=100, max_waiting=4, trim_after_s=0.2)
        seen = []
        for _ in range(5):  # back to back, as at concurrency 1: empty between requests, never for long
            await budget.acquire(30)
            await asyncio.sleep(0.05)
            budget.release(30)
            seen.append(budget.trims)
        await asyncio.sleep(0.4)  # the traffic stops: the budget stays empty
        seen.append(budget.trims)
        return seen

    assert asyncio.run(scenario()) == [0, 0, 0, 0, 0, 1]


def test_a_cancelled_waiter_gives_nothing_back_twice() -> None:
    async def scenario() -> None:
        budget = Budget("uploads", capacity=10, max_waiting=5)
        await budget.acquire(10)
        waiter = asyncio.create_task(budget.acquire(5))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        budget.release(10)
        assert budget.in_use == 0 and budget.waiting == 0

    asyncio.run(scenario())


def _hold_the_pixel_budget(client) -> None:
    """Take the whole budget as a stuck request would, on the app's own event loop."""
    service = client.app.state.service
    client.portal.call(service.pixels.acquire, service.pixels.capacity)


def test_past_the_queue_a_request_gets_503_with_retry_after(registered_store, xray_bytes) -> None:
    for client in make_client(registered_store, max_waiting_requests=0, pixel_budget_mb=1):
        _hold_the_pixel_budget(client)
        response = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "at capacity" in response.json()["detail"]
        assert (
            'pneumonia_zoo_budget_bytes_in_use{budget="pixels"} 1.048576e+06' in client.get("/metrics").text
        )


@pytest.mark.parametrize("status", [504, 503])
def test_past_the_deadline_a_waiting_request_gets_the_configured_status(registered_store, xray_bytes, status):
    for client in make_client(
        registered_store, request_timeout_s=0.5, timeout_status=status, pixel_budget_mb=1
    ):
        _hold_the_pixel_budget(client)
        started = time.monotonic()
        response = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)})
        assert response.status_code == status and "deadline" in response.json()["detail"]
        assert time.monotonic() - started < 30  # it did not wait for the budget forever
        service = client.app.state.service
        assert service.pixels.waiting == 0  # the request gave its place up


def test_waiting_for_the_upload_budget_past_the_body_timeout_is_a_503_not_a_408(
    registered_store, xray_bytes
) -> None:
    """The client sent nothing late: the service kept it waiting, so it says it is full."""
    for client in make_client(registered_store, body_timeout_s=0.5, upload_budget_mb=1):
        service = client.app.state.service
        client.portal.call(service.uploads.acquire, service.uploads.capacity)
        response = client.post("/api/v1/predict", files={"file": ("x.jpeg", xray_bytes)})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "at capacity" in response.json()["detail"]
        assert service.uploads.waiting == 0


def test_an_oversized_declared_body_is_refused_before_it_is_read(registered_store) -> None:
    for client in make_client(registered_store, max_upload_bytes=1000, max_batch_files=2):
        response = client.post(
            "/api/v1/predict",
            content=b"x" * 3_000_000,
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 413 and "larger than" in response.json()["detail"]


def test_a_real_server_drops_clients_that_stall_in_their_headers_or_body(registered_store, tmp_path) -> None:
    from tests.servers import BIN, free_port, running

    port = free_port()
    env = {
        "MLFLOW_TRACKING_URI": registered_store,
        "PNEUMONIA_ZOO_HEADER_TIMEOUT_S": "1",
        "PNEUMONIA_ZOO_BODY_TIMEOUT_S": "1",
        "PNEUMONIA_ZOO_RELOAD_INTERVAL_S": "0",
    }
    command = [str(BIN / "pneumonia-zoo"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running(
        command, f"http://127.0.0.1:{port}/readyz", tmp_path / "serve.log", timeout=120, env=os.environ | env
    ):
        stalled = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")  # half a header
            stalled.append(sock)
        # Meanwhile the service answers others at once.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        for sock in stalled:
            assert sock.recv(1024) == b""  # closed by the server after the header timeout
            sock.close()
        # A body that starts and stalls: 408, and the connection is closed.
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            head = (
                "POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 5000\r\n\r\n"
            )
            sock.sendall(
                head.encode() + b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
            )
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive" in answer


def test_a_decode_its_request_gave_up_on_keeps_its_pixels_charged_until_it_ends(
    registered_store, xray_bytes, monkeypatch
) -> None:
    """The deadline answers the client, but the pool's thread cannot be stopped mid-image: the pixel
    budget must count that memory until the image is done, and no further image of the request starts."""
    from pneumonia_zoo.serving import inference

    entered, finish = threading.Event(), threading.Event()
    decoded: list[int] = []
    real_decode = inference.decode_image

    def slow_decode(data, *args, **kwargs):
        decoded.append(len(data))
        entered.set()
        finish.wait(30)
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(inference, "decode_image", slow_decode)
    for client in make_client(registered_store, request_timeout_s=0.5, timeout_status=504):
        service = client.app.state.service
        files = [("files", ("a.jpeg", xray_bytes)), ("files", ("b.jpeg", xray_bytes))]
        response = client.post("/api/v1/predict", files=files)
        assert response.status_code == 504 and entered.is_set()
        assert service.pixels.in_use > 0  # answered, yet the first image is still being decoded
        finish.set()
        for _ in range(300):  # the charge goes once the image is done (on the app's loop)
            if service.pixels.in_use == 0:
                break
            time.sleep(0.01)
        assert service.pixels.in_use == 0
        assert len(decoded) == 1  # the second image was never started


def test_giving_memory_back_starts_no_process(monkeypatch) -> None:
    """malloc_trim runs whenever a budget empties: looking libc up each time ran `ldconfig -p` in a forked
    child, a copy of the whole process in its resident size for the child's life."""
    import subprocess

    from pneumonia_zoo.serving.admission import malloc_trim

    malloc_trim()  # may look the library up, once

    def refuse(*args, **kwargs):
        raise AssertionError(f"malloc_trim started a process: {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    malloc_trim()
    malloc_trim()
