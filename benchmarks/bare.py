"""The yardsticks the service is compared to, measured in this process, without HTTP.

- the network alone: the classifier's own `forward` (its runner: what the service's inference thread
  calls) on preprocessed batches in memory, ONNX Runtime and PyTorch, at several batch sizes; a plain
  ONNX Runtime session with default options beside it, so a bad runner setting shows;
- decode + preprocess per image on one core (what every upload costs before the network);
- the in-process end-to-end ceiling: decode + preprocess + forward + postprocess of a stream of
  uploads, batched, on every core the process may use: what the service could reach without HTTP,
  multipart parsing and an event loop;
- the in-process single-image time: the same four steps for one image at a time (batch 1).
"""

import os
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pneumonia_zoo.data.images import DEFAULT_MAX_PIXELS, DecodedImage, decode_image
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.resources import available_cpus

Prepared = tuple[DecodedImage, list[np.ndarray]]


def _repeat(fn: Callable[[], object], seconds: float, min_runs: int = 3) -> list[float]:
    """Seconds per call, for at least `min_runs` calls and `seconds` in all (after one warm-up)."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def one_core() -> Iterator[int | None]:
    """Pin the calling thread to one CPU while the block runs, so "per image on one core" is what is
    measured whatever a library might parallelise. Linux applies sched_setaffinity(0) to the calling
    thread only: thread pools made earlier keep their CPUs. Yields the CPU (None where unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def prepare(classifier: Classifier, data: bytes) -> Prepared:
    """Decode + preprocess one upload exactly as the service does (same min_side, same limits)."""
    image = decode_image(data, DEFAULT_MAX_PIXELS, classifier.input_size)
    return image, classifier.preprocess([image])


def stack(items: Sequence[Prepared]) -> tuple[list[DecodedImage], list[np.ndarray]]:
    """Single-image inputs -> one batch per (member, view), as the micro-batcher concatenates them."""
    images = [image for image, _ in items]
    inputs = [np.concatenate([x[k] for _, x in items]) for k in range(len(items[0][1]))]
    return images, inputs


def decode_costs(classifier: Classifier, uploads: Sequence[bytes], seconds: float) -> dict:
    """ms per image to decode, to preprocess, and both, on one core, over the benchmark's images."""
    decode_ms, preprocess_ms = [], []
    with one_core() as cpu:
        deadline = time.perf_counter() + seconds
        while not decode_ms or time.perf_counter() < deadline:
            for data in uploads:
                start = time.perf_counter()
                image = decode_image(data, DEFAULT_MAX_PIXELS, classifier.input_size)
                middle = time.perf_counter()
                classifier.preprocess([image])
                decode_ms.append((middle - start) * 1000)
                preprocess_ms.append((time.perf_counter() - middle) * 1000)
    total = [d + p for d, p in zip(decode_ms, preprocess_ms, strict=True)]
    return {
        "pinned_cpu": cpu,
        "samples": len(total),
        "decode_ms": round(statistics.median(decode_ms), 2),
        "preprocess_ms": round(statistics.median(preprocess_ms), 2),
        "decode_preprocess_ms": round(statistics.median(total), 2),
        # mean, not median: throughput over a mix of image sizes is set by the mean
        "decode_preprocess_mean_ms": round(statistics.fmean(total), 2),
    }


def preprocess_matches_training(classifier: Classifier, images: Sequence[DecodedImage]) -> bool:
    """The service's numpy preprocessing must give what training's torch cache path gives, bit for bit."""
    import torch

    from pneumonia_zoo.data.cache import normalize_tensor

    preprocessing = classifier.members[0].preprocessing
    grey = np.stack([preprocessing.pixels(image) for image in images])[:, None]
    trained = normalize_tensor(preprocessing, torch.from_numpy(grey)).numpy()
    return bool(np.array_equal(preprocessing.batch(list(images)), trained))


def _tile(inputs: list[np.ndarray], size: int) -> list[np.ndarray]:
    return [np.resize(batch, (size, *batch.shape[1:])) for batch in inputs]


def _default_session(classifier: Classifier) -> Callable[[list[np.ndarray]], object] | None:
    """A plain ONNX Runtime session (default options) on the same file, for one-member packages."""
    path = classifier.members[0].onnx_path
    if len(classifier.members) != 1 or path is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda inputs: [session.run(None, {name: batch}) for batch in inputs]


def network_speeds(
    classifiers: dict[str, Classifier], sample: list[np.ndarray], batch_sizes: Sequence[int], seconds: float
) -> dict[str, dict]:
    """Per runtime: batch-1 median latency and images/s at each batch size (the best one named)."""
    runs: dict[str, Callable[[list[np.ndarray]], object]] = {
        name: classifier.forward for name, classifier in classifiers.items()
    }
    if "onnx" in classifiers and (plain := _default_session(classifiers["onnx"])) is not None:
        runs["onnx, default session"] = plain
    results = {}
    for name, run in runs.items():
        by_size = {}
        for size in batch_sizes:
            batch = _tile(sample, size)
            times = _repeat(lambda batch=batch, run=run: run(batch), seconds)
            by_size[size] = {
                "median_ms": round(statistics.median(times) * 1000, 2),
                "images_per_s": round(size / statistics.median(times), 2),
            }
        best = max(by_size, key=lambda size: by_size[size]["images_per_s"])
        results[name] = {
            "batch1_ms": by_size[1]["median_ms"] if 1 in by_size else None,
            "best_batch": best,
            "best_images_per_s": by_size[best]["images_per_s"],
            "by_batch_size": by_size,
        }
    return results


def _pipelined(
    classifier: Classifier, uploads: Sequence[bytes], batch: int, seconds: float, workers: int
) -> float:
    """The service's shape without HTTP: a pool decodes and preprocesses ahead (two batches in flight)
    while this thread runs the network on the previous batch and postprocesses it."""
    done, started = 0, 0.0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Prepared]] = deque()
        sent = 0

        def submit() -> None:
            nonlocal sent
            pending.append(pool.submit(prepare, classifier, uploads[sent % len(uploads)]))
            sent += 1

        for _ in range(2 * batch):
            submit()
        warm = True
        while warm or done == 0 or time.perf_counter() - started < seconds:
            items = [pending.popleft().result() for _ in range(batch)]
            for _ in range(batch):
                submit()
            images, inputs = stack(items)
            classifier.postprocess(classifier.forward(inputs), images)
            if warm:  # the first batch loads kernels and fills the pipeline: not timed
                warm, started = False, time.perf_counter()
            else:
                done += batch
        elapsed = time.perf_counter() - started
        for future in pending:
            future.cancel()
    return done / elapsed


def _staged(
    classifier: Classifier, uploads: Sequence[bytes], batch: int, seconds: float, workers: int
) -> float:
    """Each batch in turn: decode + preprocess on every core, then the network (itself on every core)."""
    done, index = 0, 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

        def one_batch() -> None:
            nonlocal index
            chunk = [uploads[(index + i) % len(uploads)] for i in range(batch)]
            index += batch
            images, inputs = stack(list(pool.map(lambda data: prepare(classifier, data), chunk)))
            classifier.postprocess(classifier.forward(inputs), images)

        one_batch()  # warm-up
        started = time.perf_counter()
        while done == 0 or time.perf_counter() - started < seconds:
            one_batch()
            done += batch
        elapsed = time.perf_counter() - started
    return done / elapsed


def end_to_end(
    classifier: Classifier, uploads: Sequence[bytes], seconds: float, batches: Sequence[int] = (16,)
) -> dict:
    """Images/s for decode + preprocess + forward + postprocess, batched, on all allowed cores.

    Two schedules at each batch size; the best of all is the ceiling (the service could pick any).
    """
    workers = available_cpus()
    by_batch = {}
    for batch in dict.fromkeys(batches):  # unique, in order
        by_batch[batch] = {
            "pipelined": round(_pipelined(classifier, uploads, batch, seconds, workers), 2),
            "staged": round(_staged(classifier, uploads, batch, seconds, workers), 2),
        }
    best = max(by_batch, key=lambda b: max(by_batch[b].values()))
    return {
        "decode_threads": workers,
        "batch": best,
        "pipelined_images_per_s": by_batch[best]["pipelined"],
        "staged_images_per_s": by_batch[best]["staged"],
        "images_per_s": max(by_batch[best].values()),
        "by_batch_size": by_batch,
    }


def single_image(classifier: Classifier, uploads: Sequence[bytes], seconds: float) -> dict:
    """ms for one upload through decode + preprocess + forward + postprocess, one at a time (batch 1):
    the floor under the service's latency at concurrency 1."""
    times: list[float] = []
    prepare(classifier, uploads[0])  # warm-up
    deadline = time.perf_counter() + seconds
    while not times or time.perf_counter() < deadline:
        for data in uploads:
            start = time.perf_counter()
            image, inputs = prepare(classifier, data)
            classifier.postprocess(classifier.forward(inputs), [image])
            times.append((time.perf_counter() - start) * 1000)
    return {
        "samples": len(times),
        "median_ms": round(statistics.median(times), 2),
        "mean_ms": round(statistics.fmean(times), 2),
    }


def measure(package_dir: Path, uploads: Sequence[bytes], batch_sizes: Sequence[int], seconds: float) -> dict:
    """Everything above for the package at `package_dir`; the ceilings use ONNX Runtime when the
    package has it (runtime "auto", as the service's default)."""
    classifiers = {
        "onnx": load_classifier(package_dir, "onnx"),
        "torch": load_classifier(package_dir, "torch"),
    }
    served = load_classifier(package_dir, "auto")
    for classifier in (*classifiers.values(), served):
        classifier.warm_up()
    if served.runtime != "onnx":  # no ONNX file: "onnx" fell back to PyTorch, do not time it twice
        classifiers.pop("onnx")
    prepared = [prepare(served, data) for data in uploads]
    _, sample = stack(prepared[:8])
    network = network_speeds(classifiers, sample, batch_sizes, seconds)
    # The service batches up to 16 by default; the network's own best batch size is tried as well.
    best_batch = network[served.runtime]["best_batch"] if served.runtime in network else 16
    return {
        "package": str(package_dir),
        "runtime": served.runtime,
        "cpus": available_cpus(),
        "serving_preprocess_identical": preprocess_matches_training(served, [image for image, _ in prepared]),
        "decode": decode_costs(served, uploads, seconds),
        "network": network,
        "single_image": single_image(served, uploads, seconds),
        "end_to_end": end_to_end(served, uploads, max(seconds * 2, 2.0), (16, best_batch)),
    }
