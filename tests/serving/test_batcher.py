"""Micro-batching: concurrent requests for different images share network calls, each caller gets its
own image's answer back, a full queue refuses at once, and a failure reaches every waiter cleanly."""

import asyncio
import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.serving.batcher import MicroBatcher, QueueFull
from tests.package.helpers import make_package


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    directory = tmp_path_factory.mktemp("batching") / "package"
    make_package(directory, size=48)
    return load_classifier(directory)


@pytest.fixture(scope="module")
def inputs(classifier, fixture_data: Path) -> list[list[np.ndarray]]:
    paths = sorted(fixture_data.rglob("*.jpeg"))[:12]
    return [classifier.preprocess([read_image(path, min_side=48)]) for path in paths]


def run_concurrently(classifier, inputs, **batcher_options):
    batches: list[int] = []

    async def scenario():
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(
                executor, on_batch=lambda rows, _s, _w: batches.append(rows), **batcher_options
            )
            await batcher.start()
            try:
                for _ in inputs:
                    batcher.announce()  # as the service does while it preprocesses
                tasks = []
                for item in inputs:
                    batcher.arrived()
                    tasks.append(asyncio.create_task(batcher.forward(classifier, item)))
                return await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                await batcher.stop()

    return asyncio.run(scenario()), batches


def test_different_images_batch_together_and_each_caller_gets_its_own_answer(classifier, inputs) -> None:
    results, batches = run_concurrently(classifier, inputs, max_batch_size=8, max_wait_ms=50)
    assert sum(batches) == len(inputs) and max(batches) > 1  # batches formed
    assert max(batches) <= 8
    for item, outputs in zip(inputs, results, strict=True):
        alone = classifier.forward(item)  # the same image on its own
        np.testing.assert_allclose(outputs[0][0], alone[0][0], atol=1e-5)
        np.testing.assert_allclose(outputs[0][1], alone[0][1], atol=1e-4)
    # And the rows really differ between images: a mix-up would be visible.
    assert len({round(float(r[0][0][0, 1]), 6) for r in results}) > 1


def test_a_failure_inside_a_batch_reaches_every_waiter(classifier, inputs) -> None:
    broken = copy.copy(classifier)

    def forward(_inputs):
        raise RuntimeError("the network failed")

    broken.forward = forward
    results, batches = run_concurrently(broken, inputs[:6], max_batch_size=8, max_wait_ms=50)
    assert all(isinstance(r, RuntimeError) and "network failed" in str(r) for r in results)


def test_a_full_queue_refuses_at_once(classifier, inputs) -> None:
    gate = threading.Event()

    async def scenario():
        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(gate.wait)  # the inference thread is busy: nothing leaves the queue
            batcher = MicroBatcher(executor, max_batch_size=1, max_wait_ms=0, max_queue=2)
            await batcher.start()
            try:
                first = asyncio.create_task(batcher.forward(classifier, inputs[0]))
                await asyncio.sleep(0.05)  # taken from the queue by the loop, waiting on the thread
                queued = [asyncio.create_task(batcher.forward(classifier, inputs[i])) for i in (1, 2)]
                await asyncio.sleep(0.05)
                with pytest.raises(QueueFull):
                    await batcher.forward(classifier, inputs[3])
                gate.set()
                await asyncio.gather(first, *queued)
            finally:
                gate.set()
                await batcher.stop()

    asyncio.run(scenario())
