"""The upload budget charged as bytes arrive, the minimum body rate, and the multipart limits that count
parts: in process, with the hostile streams built here."""

import asyncio
import logging
import sys
from collections.abc import AsyncIterator

import pytest

from pneumonia_zoo.errors import AtCapacity, ClientTimeout, TooLarge
from pneumonia_zoo.serving.admission import Budget, Charge, charged
from pneumonia_zoo.serving.logs import _OneLineFormatter, printable
from pneumonia_zoo.serving.uploads import IncomingBody, Pace, paced, read_upload_form

MULTIPART = "multipart/form-data; boundary=b"


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def test_a_declared_length_reserves_nothing_and_bytes_are_charged_as_they_arrive() -> None:
    async def scenario() -> list[int]:
        budget = Budget("uploads", capacity=10 * Charge.STEP, max_waiting=4)
        seen: list[int] = []

        async def body() -> AsyncIterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
            seen.append(budget.in_use)  # the part header only: the declared 9 MB reserved nothing
            yield b"\xff" * (3 * Charge.STEP)
            seen.append(budget.in_use)
            yield b"\r\n--b--\r\n"

        incoming = IncomingBody(MULTIPART, 9 * Charge.STEP, body())
        async with charged(budget) as charge:
            form = await read_upload_form(incoming, 8 * Charge.STEP, 1, on_received=charge.cover)
            assert len(form.files[0].data) == 3 * Charge.STEP
        seen.append(budget.in_use)
        return seen

    first, after_file, released = asyncio.run(scenario())
    assert first == Charge.STEP  # one step for the few bytes received
    assert 3 * Charge.STEP <= after_file <= 4 * Charge.STEP
    assert released == 0


def test_holders_that_all_wait_for_more_do_not_wait_forever() -> None:
    """Two bodies each hold half the budget and each need more: the newest is refused, the other goes on."""

    async def scenario() -> tuple[BaseException | None, BaseException | None]:
        budget = Budget("uploads", capacity=4 * Charge.STEP, max_waiting=8)
        first, second = Charge(budget), Charge(budget)
        await first.cover(2 * Charge.STEP)
        await second.cover(2 * Charge.STEP)
        grow_first = asyncio.create_task(first.cover(3 * Charge.STEP))
        await asyncio.sleep(0)
        grow_second = asyncio.create_task(second.cover(3 * Charge.STEP))
        await asyncio.sleep(0)
        results = []
        for task, charge in ((grow_second, second), (grow_first, first)):
            try:
                await asyncio.wait_for(task, 2)
                results.append(None)
            except AtCapacity as exc:
                results.append(exc)
                charge.release()  # as `charged` does when the request ends
        return results[0], results[1]

    refused, granted = asyncio.run(scenario())
    assert isinstance(refused, AtCapacity) and granted is None


def test_a_body_under_way_goes_before_requests_that_hold_nothing_yet() -> None:
    """Finishing a body frees memory soonest; queued behind a newcomer, it would wait on it for ever."""

    async def scenario() -> int:
        budget = Budget("uploads", capacity=4 * Charge.STEP, max_waiting=1)
        started = Charge(budget)
        await started.cover(3 * Charge.STEP + 1)  # holds the whole budget but a fraction of a step
        newcomer = asyncio.create_task(Charge(budget).cover(1))  # waits: a whole step does not fit
        await asyncio.sleep(0)
        await asyncio.wait_for(started.cover(4 * Charge.STEP), 2)  # not queued behind the newcomer
        started.release()
        await asyncio.wait_for(newcomer, 2)
        return budget.in_use

    assert asyncio.run(scenario()) == Charge.STEP


def test_a_charge_never_holds_more_than_the_whole_budget() -> None:
    async def scenario() -> int:
        budget = Budget("uploads", capacity=3 * Charge.STEP, max_waiting=1)
        charge = Charge(budget)
        for received in range(0, 10 * Charge.STEP, Charge.STEP // 2):
            await charge.cover(received)
        return charge.held

    assert asyncio.run(scenario()) == 3 * Charge.STEP


def test_a_body_slower_than_the_minimum_rate_is_cut_off_after_the_grace_period() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(0.05)
            yield b"x"  # 20 bytes a second

    pace = Pace(timeout_s=30, min_bytes_per_s=1000, grace_s=0.3)
    with pytest.raises(ClientTimeout, match="too slowly"):
        asyncio.run(asyncio.wait_for(_collect(paced(trickle(), pace)), 10))


def test_a_body_that_stops_within_the_grace_period_is_told_the_total_timeout() -> None:
    """The total timeout ran out first (it is shorter than the grace): its sentence, every time."""

    async def stall() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(60)
        yield b"never"

    pace = Pace(timeout_s=0.2, min_bytes_per_s=10 * 1024, grace_s=5)
    for _ in range(5):
        with pytest.raises(ClientTimeout, match="did not arrive within 0.2 s"):
            asyncio.run(asyncio.wait_for(_collect(paced(stall(), pace)), 10))


def test_a_body_at_a_good_rate_is_never_cut_off() -> None:
    async def steady() -> AsyncIterator[bytes]:
        for _ in range(20):
            await asyncio.sleep(0.02)
            yield b"x" * 1000  # 50 KB a second

    pace = Pace(timeout_s=30, min_bytes_per_s=1000, grace_s=0.2)
    assert len(asyncio.run(_collect(paced(steady(), pace)))) == 20_000


def test_time_the_service_makes_a_body_wait_does_not_count_against_it() -> None:
    """A consumer that pauses (the upload budget is full) is not the client being slow."""

    async def quick() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"x"

    async def consume() -> int:
        count = 0
        async for _ in paced(quick(), Pace(timeout_s=0.2, min_bytes_per_s=1, grace_s=0.1)):
            await asyncio.sleep(0.3)  # longer than the whole body timeout
            count += 1
        return count

    assert asyncio.run(consume()) == 3


def test_a_declared_length_over_the_request_cap_is_refused_before_reading() -> None:
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(b"x")
        yield b"x"

    incoming = IncomingBody(MULTIPART, 65 * 2**20, body())
    with pytest.raises(TooLarge, match="larger than the 64.0 MB allowed"):
        asyncio.run(read_upload_form(incoming, 20 * 2**20, 16, max_bytes=64 * 2**20))
    assert read == []


def test_an_undeclared_body_over_the_request_cap_is_refused_as_it_arrives() -> None:
    async def endless_epilogue() -> AsyncIterator[bytes]:
        yield b"--b--\r\n"
        while True:
            yield b"\0" * 65536  # after the closing boundary: the parser ignores it

    incoming = IncomingBody(MULTIPART, None, endless_epilogue())
    with pytest.raises(TooLarge):
        asyncio.run(read_upload_form(incoming, 1000, 1, max_bytes=2**20))


def test_repeated_field_names_count_as_parts() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b'--b\r\nContent-Disposition: form-data; name="operating_point"\r\n\r\nx\r\n'
        yield b"--b--\r\n"

    with pytest.raises(TooLarge, match="too many form fields"):
        asyncio.run(read_upload_form(IncomingBody(MULTIPART, None, body()), 1000, 1))


def test_log_messages_stay_on_one_line() -> None:
    assert printable("/x\r\n2026-01-01 INFO forged\x1b[2J") == "/x\\x0d\\x0a2026-01-01 INFO forged\\x1b[2J"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "GET %s 404", ("/a\nb",), None)
    assert "\n" not in _OneLineFormatter("%(message)s").format(record)


def test_the_charge_covers_the_memory_the_parts_hold_not_only_the_bytes() -> None:
    """A 2 MB file arriving in 64 KB chunks: its bytearray over-allocates as it grows (the allocation,
    `sys.getsizeof`, ends above every byte received), and the charge covers that allocation."""
    charged_for: list[int] = []
    header = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    chunks = [header] + [b"\xff" * 65536] * 32 + [b"\r\n--b--\r\n"]

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def record(amount: int) -> None:
        charged_for.append(amount)

    form = asyncio.run(
        read_upload_form(IncomingBody(MULTIPART, None, body()), 4 << 20, 1, on_received=record)
    )
    held = sys.getsizeof(form.files[0].data)
    assert held > sum(map(len, chunks))  # the headroom is real: more held than was sent
    assert max(charged_for) >= held
