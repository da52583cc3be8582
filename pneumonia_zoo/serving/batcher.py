"""Micro-batching: concurrent requests share one network call, run off the event loop.

Requests queue (classifier, inputs, future); one asyncio task takes the first, waits up to
`max_wait_ms` for more (up to `max_batch_size` images), runs each classifier's group in the
inference thread (the networks, then the guard, each over the whole batch) and hands every request
its own rows back. No network call ever takes more than `max_batch_size` images, since the runtimes'
memory grows with the largest batch they ran: a request that would overflow the batch starts the
next one, and a request with more images than that runs in several calls. Requests for different
versions queue together but never share a call. The queue is bounded: past `max_queue` waiting
requests a new one is refused at once (QueueFull, an AtCapacity) instead of waiting without end.

It waits only while more requests are on their way (`announce()`d: being preprocessed). A lone
request runs at once: at low load the wait was pure latency, and under load the requests that queue
up while a batch runs make the next batch anyway.

Memory pools given back: a classifier that ran batches of more than one image and then none for
`release_after_s` (the queue idle after a burst, or a version swapped out while the new champion
serves) has its runtimes' pools shrunk, on the inference thread between batches, and glibc's free lists
go back to the system: the process returns to about its idle size instead of keeping the largest
batch's memory, for every version it ever served, for ever.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pneumonia_zoo.errors import AtCapacity
from pneumonia_zoo.package.classifier import Classifier, Forwarded
from pneumonia_zoo.serving.admission import malloc_trim

log = logging.getLogger(__name__)

RELEASE_AFTER_S = 1.0  # idle this long after a burst: the memory pools are given back


class QueueFull(AtCapacity):
    """More requests are waiting for the network than the bounded queue holds."""


@dataclass
class _Item:
    classifier: Classifier
    inputs: list[np.ndarray]  # one batch per (member, view), all with the same number of rows
    future: asyncio.Future
    queued_at: float  # perf_counter, for the queue-wait histogram

    @property
    def rows(self) -> int:
        return len(self.inputs[0])


class MicroBatcher:
    def __init__(
        self,
        executor: ThreadPoolExecutor,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int = 256,
        on_batch: Callable[[int, float, list[float]], None] | None = None,  # rows, seconds, queue waits
        release_after_s: float | None = RELEASE_AFTER_S,  # None: never give memory back
    ) -> None:
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.release_after_s = release_after_s
        self.releases = 0  # how many times memory was given back (tests, and the curious)
        # Classifiers that ran a batch of more than one image since their last release: id -> (the
        # classifier, when it last ran), perf_counter seconds.
        self._to_release: dict[int, tuple[Classifier, float]] = {}
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._incoming = 0  # requests announced but not queued yet
        self._held: _Item | None = None  # taken from the queue, but it would have overflowed the batch

    @property
    def depth(self) -> int:
        queued = self._queue.qsize() if self._queue is not None else 0
        return queued + (self._held is not None)

    def announce(self) -> None:
        """A request will call forward() soon (it is being preprocessed): worth waiting for."""
        self._incoming += 1

    def arrived(self) -> None:
        """The announced request is about to queue, or gave up."""
        self._incoming = max(0, self._incoming - 1)

    async def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def forward(self, classifier: Classifier, inputs: list[np.ndarray]) -> list[Forwarded]:
        """The classifier's raw outputs for `inputs`, computed in some shared batch."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(classifier, inputs, future, time.perf_counter()))
        except asyncio.QueueFull:
            raise QueueFull from None
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._next_or_release()]
            rows = items[0].rows
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                    if remaining <= 0 or self._incoming == 0:  # nobody on the way: run now
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), remaining)
                    except TimeoutError:
                        break
                if rows + item.rows > self.max_batch_size:
                    self._held = item  # the first of the next batch
                    break
                items.append(item)
                rows += item.rows
            for group in _by_classifier(items):
                await self._run(group)
            await self._release(idle_for=self.release_after_s)  # versions no request uses any more

    async def _next_or_release(self) -> _Item:
        """The next queued request; if none comes within `release_after_s` after a burst, the memory is
        given back first (once per burst)."""
        assert self._queue is not None
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if self._to_release and self.release_after_s is not None:
            try:
                return await asyncio.wait_for(self._queue.get(), self.release_after_s)
            except TimeoutError:
                await self._release(idle_for=0.0)
        return await self._queue.get()

    async def _release(self, idle_for: float | None) -> None:
        """Give back the pools of the classifiers that have not run for `idle_for` seconds (None: off)."""
        if idle_for is None or not self._to_release:
            return
        now = time.perf_counter()
        idle = [key for key, (_, last) in self._to_release.items() if now - last >= idle_for]
        if idle:
            classifiers = [self._to_release.pop(key)[0] for key in idle]
            await asyncio.get_running_loop().run_in_executor(self.executor, _release, classifiers)
            self.releases += 1

    async def _run(self, group: list[_Item]) -> None:
        group = [item for item in group if not item.future.done()]  # a client that left cancelled its future
        if not group:
            return
        inputs = [np.concatenate([item.inputs[k] for item in group]) for k in range(len(group[0].inputs))]
        key = id(group[0].classifier)
        if len(inputs[0]) > 1 or key in self._to_release:  # a batch-1 run grows no pool beyond its own
            self._to_release[key] = (group[0].classifier, time.perf_counter())
        try:
            outputs = await self._forward(group, inputs)
        except Exception as exc:  # every waiting request gets the failure, the loop lives on
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in group:
            end = start + item.rows
            if not item.future.done():
                item.future.set_result([output.rows(start, end) for output in outputs])
            start = end

    async def _forward(self, group: list[_Item], inputs: list[np.ndarray]) -> list[Forwarded]:
        """The network over `inputs` in calls of at most `max_batch_size` images (more only come from
        one request with more images than that)."""
        calls = []
        for start in range(0, max(1, len(inputs[0])), self.max_batch_size):
            part = [batch[start : start + self.max_batch_size] for batch in inputs]
            started = time.perf_counter()
            outputs = await asyncio.get_running_loop().run_in_executor(
                self.executor, group[0].classifier.forward, part
            )
            if self.on_batch is not None:
                waits = [started - item.queued_at for item in group] if start == 0 else []
                self.on_batch(len(part[0]), time.perf_counter() - started, waits)
            calls.append(outputs)
        if len(calls) == 1:
            return calls[0]
        return [Forwarded.joined(view) for view in zip(*calls, strict=True)]


def _release(classifiers: list[Classifier]) -> None:
    for classifier in classifiers:
        try:
            classifier.release_memory()
        except Exception as exc:  # a pool not shrunk is no reason to stop serving
            log.warning("could not give the model's memory back: %s", exc)
    malloc_trim()


def _by_classifier(items: list[_Item]) -> list[list[_Item]]:
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(id(item.classifier), []).append(item)
    return list(groups.values())
