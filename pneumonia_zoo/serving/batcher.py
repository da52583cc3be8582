"""Micro-batching: concurrent requests share one network call, run off the event loop.

Requests queue (predictor, inputs, future); one asyncio task takes the first, waits up to
`max_wait_ms` for more (up to `max_batch_size` images), runs each predictor's group in the
inference thread and hands every request its own rows back. Requests for different versions
queue together but never share a call.

It waits only while more requests are on their way (`announce()`d: being preprocessed). A lone
request runs at once: at low load the wait was pure latency, and under load the requests that queue
up while a batch runs make the next batch anyway.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pneumonia_zoo.serving.predictors import Predictor


@dataclass
class _Item:
    predictor: Predictor
    inputs: torch.Tensor
    future: asyncio.Future


class MicroBatcher:
    def __init__(
        self,
        executor: ThreadPoolExecutor,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._incoming = 0  # requests announced but not queued yet

    def announce(self) -> None:
        """A request will call predict() soon (it is being preprocessed): worth waiting for."""
        self._incoming += 1

    def arrived(self) -> None:
        """The announced request is about to queue, or gave up."""
        self._incoming = max(0, self._incoming - 1)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def predict(self, predictor: Predictor, inputs: torch.Tensor) -> np.ndarray:
        """Probabilities for `inputs` (N x 3 x S x S), computed in some shared batch."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(predictor, inputs, future))
        return await future

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            rows = len(items[0].inputs)
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
                items.append(item)
                rows += len(item.inputs)
            for group in _by_predictor(items):
                await self._run(group)

    async def _run(self, group: list[_Item]) -> None:
        batch = torch.cat([item.inputs for item in group])
        if self.on_batch is not None:
            self.on_batch(len(batch))
        try:
            probabilities = await asyncio.get_running_loop().run_in_executor(
                self.executor, group[0].predictor, batch
            )
        except Exception as exc:  # every waiting request gets the failure, the loop lives on
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in group:
            end = start + len(item.inputs)
            if not item.future.done():  # a client that went away cancelled its future
                item.future.set_result(probabilities[start:end])
            start = end


def _by_predictor(items: list[_Item]) -> list[list[_Item]]:
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(id(item.predictor), []).append(item)
    return list(groups.values())
