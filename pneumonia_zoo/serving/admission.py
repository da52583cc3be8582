"""Admission control: budgets of bytes in flight across the whole process, waited for in order.

Two budgets, each taken all at once per request (never piece by piece, so requests holding part of a
budget can never wait on each other): upload bytes while a body is read, and decoded pixels (the
decoder's peak plus the network input) from decoding until the network has run. A request that cannot
have its share waits in a bounded queue; past the queue it is refused at once (AtCapacity), and past
the request's deadline while waiting it gets DeadlineExceeded. Memory freed by a burst is handed back
to the OS when the budgets fall idle (glibc keeps it otherwise).
"""

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import threading
from collections.abc import AsyncIterator

from pneumonia_zoo.errors import AtCapacity

log = logging.getLogger(__name__)


class Overloaded(AtCapacity):
    """The budget's waiting queue is full."""


def malloc_trim() -> None:
    """Give glibc's free lists back to the system (a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is not None:  # glibc only
        trim(0)


class Budget:
    """`capacity` bytes shared by every request; `acquire(n)` waits (in order) until n of them are free."""

    def __init__(self, name: str, capacity: int, max_waiting: int) -> None:
        self.name, self.capacity, self.max_waiting = name, capacity, max_waiting
        self.in_use = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []  # FIFO: a big request is not starved

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def clamp(self, amount: int) -> int:
        return min(max(0, amount), self.capacity)  # one request alone may always use it all

    async def acquire(self, amount: int) -> None:
        """Take `amount` (clamped), waiting behind earlier requests; Overloaded when too many wait."""
        amount = self.clamp(amount)
        if not self._waiters and self.in_use + amount <= self.capacity:
            self.in_use += amount
            return
        if len(self._waiters) >= self.max_waiting:
            raise Overloaded()
        future = asyncio.get_running_loop().create_future()
        entry = (amount, future)
        self._waiters.append(entry)
        try:
            await future  # granted: in_use already counts it
        except asyncio.CancelledError:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif future.done() and not future.cancelled():
                self.in_use -= amount  # granted just as we were cancelled: give it back
                self._wake()
            raise

    def release(self, amount: int) -> None:
        self.in_use -= self.clamp(amount)
        self._wake()
        if self.in_use == 0 and not self._waiters:
            # A burst can leave hundreds of MB in glibc's free lists; trimming takes a few ms, off the loop.
            threading.Thread(target=malloc_trim, name="malloc-trim", daemon=True).start()

    def _wake(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            amount, future = self._waiters.pop(0)
            if not future.done():
                self.in_use += amount
                future.set_result(None)


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
