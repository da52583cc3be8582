"""Admission control: budgets of bytes in flight across the whole process, waited for in order.

Two budgets: upload bytes while a body is read and held, and decoded pixels (the decoder's peak plus
the network input) from decoding until the network has run. The pixel budget is taken all at once per
request. The upload budget is charged as bytes arrive (`Charge`), never for what a header merely
declares: a client that declares a huge body and stalls holds nothing. A request that holds part of
it goes before those that hold nothing yet; holders could still wait on each other for more, so when
every holder waits, the newest waiter is refused (AtCapacity) and the others go on. A request that
cannot have its share waits in a bounded queue; past the queue it is refused at once (AtCapacity), and
past the request's deadline while waiting it gets DeadlineExceeded. Memory freed by a burst is handed
back to the OS when the budgets fall idle (glibc keeps it otherwise).
"""

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable

from pneumonia_zoo.errors import AtCapacity

log = logging.getLogger(__name__)


class Overloaded(AtCapacity):
    """The budget's waiting queue is full."""


TRIM_AFTER_S = 0.25  # a budget empty this long (no new charge) gives glibc's free lists back


@functools.cache
def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once: find_library runs `ldconfig -p` in a child process, and a
    fork of a process holding a gigabyte during a burst is one more copy in its tree's resident size."""
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None  # None: not glibc


def malloc_trim() -> None:
    """Give glibc's free lists back to the system (a no-op elsewhere)."""
    trim = _glibc_malloc_trim()
    if trim is not None:
        trim(0)


class Budget:
    """`capacity` bytes shared by every request; `acquire(n)` waits (in order) until n of them are free."""

    def __init__(
        self, name: str, capacity: int, max_waiting: int, trim_after_s: float = TRIM_AFTER_S
    ) -> None:
        self.name, self.capacity, self.max_waiting = name, capacity, max_waiting
        self.trim_after_s = trim_after_s
        self.in_use = 0
        self.charges = 0  # how many times part of it was taken: a trim waits until none came for a while
        self.trims = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []  # FIFO: a big request is not starved
        self.holders = 0  # charges holding part of the budget (see Charge)
        self._holding_waiters: list[asyncio.Future] = []  # those of them now waiting for more

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def clamp(self, amount: int) -> int:
        return min(max(0, amount), self.capacity)  # one request alone may always use it all

    async def acquire(self, amount: int, holding: bool = False) -> None:
        """Take `amount` (clamped), waiting behind earlier requests; Overloaded when too many wait, or
        (`holding`: the caller holds part of the budget already) when every holder would be waiting."""
        amount = self.clamp(amount)
        # A holder goes before the requests that hold nothing yet: finishing a body frees memory soonest.
        ahead = sum(not f.done() for f in self._holding_waiters) if holding else len(self._waiters)
        if not ahead and self.in_use + amount <= self.capacity:
            self.in_use += amount
            self.charges += 1
            return
        if not holding and len(self._waiters) >= self.max_waiting:
            raise Overloaded()
        future = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._waiters.insert(ahead, entry)
        if holding:
            self._holding_waiters.append(future)
            self._break_deadlock()
        try:
            await future  # granted: in_use already counts it
        except (asyncio.CancelledError, Overloaded):
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif future.done() and not future.cancelled() and future.exception() is None:
                self.in_use -= amount  # granted just as we were cancelled: give it back
                self._wake()
            raise
        finally:
            if future in self._holding_waiters:
                self._holding_waiters.remove(future)

    def release(self, amount: int) -> None:
        self.in_use -= self.clamp(amount)
        self._wake()
        if self.in_use == 0 and not self._waiters:
            # A burst can leave hundreds of MB in glibc's free lists. The trim waits until the budget has
            # stayed empty a while: one request at a time empties it after each answer, and a trim per
            # answer (a thread and a few ms of CPU) cost them latency for nothing to give back.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # released outside an event loop: trim now
                self._trim()
            else:
                loop.call_later(self.trim_after_s, self._trim_if_idle, self.charges)

    def _trim_if_idle(self, charges: int) -> None:
        if self.in_use == 0 and not self._waiters and self.charges == charges:
            self._trim()

    def _trim(self) -> None:
        self.trims += 1  # trimming takes a few ms: off the event loop
        threading.Thread(target=malloc_trim, name="malloc-trim", daemon=True).start()

    def hold_until(self, amount: int, job: concurrent.futures.Future) -> None:
        """Charge `amount` more (at once, even past the capacity) until `job` (a pool's work that its
        request no longer waits for) has finished: its memory is in use until then."""
        amount = self.clamp(amount)
        self.in_use += amount
        self.charges += 1
        loop = asyncio.get_running_loop()
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(self.release, amount))

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, future = self._waiters.pop(0)
            if not future.done():
                self.in_use += amount
                self.charges += 1
                future.set_result(None)
        self._break_deadlock()

    def _break_deadlock(self) -> None:
        """Every holder waits for more and none can have it: refuse the newest, whose share then frees."""
        waiting = [f for f in self._holding_waiters if not f.done()]
        if not waiting or len(waiting) < self.holders:
            return
        newest = waiting[-1]
        self._holding_waiters.remove(newest)
        self._waiters = [entry for entry in self._waiters if entry[1] is not newest]
        log.info("the %s budget is held by requests that all wait for more: the newest is refused", self.name)
        newest.set_exception(Overloaded())


class Charge:
    """One request's share of a budget, taken in steps as its bytes arrive (`cover`), given back at
    the end (`release`). A request never holds more than the whole budget: one request alone may use
    it all, as with `acquire`."""

    STEP = 1 << 20  # taken a megabyte at a time: a few dozen acquisitions for the largest upload

    def __init__(self, budget: Budget, wait_timeout_s: float | None = None) -> None:
        self.budget, self.wait_timeout_s = budget, wait_timeout_s
        self.held = 0

    async def cover(self, received: int) -> None:
        """Hold at least `received` bytes (clamped to the budget); AtCapacity when the service stays full."""
        budget = self.budget
        wanted = budget.clamp(received)
        if wanted <= self.held:
            return
        step = min(max(wanted - self.held, self.STEP), budget.capacity - self.held)
        try:
            async with asyncio.timeout(self.wait_timeout_s):
                await budget.acquire(step, holding=self.held > 0)
        except TimeoutError:
            raise AtCapacity() from None
        if self.held == 0:
            budget.holders += 1
        self.held += step

    def release(self) -> None:
        if self.held:
            self.budget.holders -= 1
            held, self.held = self.held, 0
            self.budget.release(held)


@contextlib.asynccontextmanager
async def charged(budget: Budget, wait_timeout_s: float | None = None) -> AsyncIterator[Charge]:
    """A Charge on `budget` for the block: whatever it came to hold is given back at the end."""
    charge = Charge(budget, wait_timeout_s)
    try:
        yield charge
    finally:
        charge.release()


@contextlib.asynccontextmanager
async def admitted(budget: Budget, amount: int, wait_timeout_s: float | None = None) -> AsyncIterator[None]:
    """Hold `amount` of the budget for the block. AtCapacity when too many requests wait already, or
    when the wait outlasts `wait_timeout_s` (the service was full all that time). A wait cut short by
    the request's own deadline (a timeout around this) is the caller's DeadlineExceeded."""
    try:
        async with asyncio.timeout(wait_timeout_s):
            await budget.acquire(amount)
    except TimeoutError:
        raise AtCapacity() from None
    try:
        yield
    finally:
        budget.release(amount)
