"""Micro-batching: concurrent requests for different images share network calls, each caller gets its
own image's answer back, a full queue refuses at once, and a failure reaches every waiter cleanly."""

import asyncio
import copy
import threading
import time
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


def test_no_network_call_takes_more_than_max_batch_size(classifier, inputs) -> None:
    """The runtimes' memory grows with the largest call they ran: requests of 3 images never make a call
    of 6 when the limit is 4, and one request of 10 images runs as 4 + 4 + 2, its answer the same."""
    triples = [
        [np.concatenate(views) for views in zip(*inputs[i : i + 3], strict=True)] for i in (0, 3, 6, 9)
    ]
    results, batches = run_concurrently(classifier, triples, max_batch_size=4, max_wait_ms=50)
    assert batches == [3, 3, 3, 3]  # a second request would have overflowed every batch
    ten = [np.concatenate(views) for views in zip(*inputs[:10], strict=True)]
    (outputs,), batches = run_concurrently(classifier, [ten], max_batch_size=4, max_wait_ms=50)
    assert batches == [4, 4, 2]
    alone = classifier.forward(ten)
    for got, expected in zip(outputs, alone, strict=True):
        np.testing.assert_allclose(got.logits, expected.logits, atol=1e-5)
        np.testing.assert_allclose(got.features, expected.features, atol=1e-4)
        np.testing.assert_allclose(got.guard_ratios, expected.guard_ratios, rtol=1e-4)


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


def test_memory_is_given_back_once_the_queue_idles_after_a_burst(fixture_data: Path) -> None:
    """The starter at 224 px: a batch of 32 grows ONNX Runtime's arena by hundreds of MB; a second of
    idleness later the batcher has shrunk it and trimmed the heap, once, and predictions are unchanged."""
    import psutil

    from pneumonia_zoo.resources import STARTER_DIR

    starter = load_classifier(STARTER_DIR, runtime="onnx")
    paths = sorted(fixture_data.rglob("*.jpeg"))[:8]
    one = starter.preprocess([read_image(paths[0], min_side=starter.input_size)])
    burst = [
        [np.repeat(batch, 4, axis=0) for batch in starter.preprocess([read_image(p, min_side=224)])]
        for p in paths
    ]
    process = psutil.Process()

    async def scenario():
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(executor, max_batch_size=32, max_wait_ms=200, release_after_s=0.2)
            await batcher.start()
            try:
                before = await batcher.forward(starter, one)
                await asyncio.sleep(0.5)
                assert batcher.releases == 0  # batch-1 traffic leaves nothing to give back
                for _ in burst:
                    batcher.announce()
                tasks = []
                for item in burst:
                    batcher.arrived()
                    tasks.append(asyncio.create_task(batcher.forward(starter, item)))
                await asyncio.gather(*tasks)
                grown = process.memory_info().rss
                for _ in range(50):  # the release runs on the inference thread after 0.2 s of idleness
                    if batcher.releases:
                        break
                    await asyncio.sleep(0.1)
                released = process.memory_info().rss
                await asyncio.sleep(0.5)
                releases = batcher.releases
                after = await batcher.forward(starter, one)
                return before, after, grown, released, releases
            finally:
                await batcher.stop()

    before, after, grown, released, releases = asyncio.run(scenario())
    assert releases == 1  # once per burst, not once per idle second
    assert grown - released > 100 * 2**20, (grown / 2**20, released / 2**20)
    np.testing.assert_allclose(after[0].logits, before[0].logits, atol=1e-5)
    np.testing.assert_allclose(after[0].guard_ratios, before[0].guard_ratios, rtol=1e-5)


def test_a_version_no_request_uses_gives_its_memory_back_while_another_serves(classifier, inputs) -> None:
    """Version A's burst, then version B served without a pause: A's pools go back while B is busy
    (a swapped-out champion does not keep its memory until the service idles); B's once it idles."""
    other = load_classifier(classifier.directory)  # another loaded version: its own runtime
    pair = [np.concatenate([a, b]) for a, b in zip(inputs[0], inputs[1], strict=True)]  # 2 images

    async def scenario():
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(executor, max_batch_size=8, max_wait_ms=0, release_after_s=0.3)
            await batcher.start()
            try:
                await batcher.forward(classifier, pair)
                busy_until = time.perf_counter() + 1.5
                while time.perf_counter() < busy_until:  # B without a pause longer than a batch
                    await batcher.forward(other, pair)
                while_busy = batcher.releases
                await asyncio.sleep(1.0)
                return while_busy, batcher.releases
            finally:
                await batcher.stop()

    while_busy, after_idle = asyncio.run(scenario())
    assert while_busy == 1, "A's memory went back while B served"
    assert after_idle == 2, "and B's once the queue idled"
