"""The ceiling: the champion network alone on preprocessed tensors in memory, and decoding alone.

Plain ONNX Runtime (default session options) and PyTorch eager (channels_last, inference mode),
not the service's predictors, so a bad setting in the service cannot lower its own yardstick.
"""

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pneumonia_zoo.tracking.package import ModelPackage, load_package

from pneumonia_zoo.data.images import decode_image


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


def decode_costs(package: ModelPackage, uploads: Sequence[bytes], seconds: float) -> dict:
    """Median ms per image to decode, to preprocess, and both, over the benchmark's images."""
    decode_ms, preprocess_ms, serving_ms = [], [], []
    deadline = time.perf_counter() + seconds
    while not decode_ms or time.perf_counter() < deadline:
        for data in uploads:
            start = time.perf_counter()
            image = decode_image(data)
            middle = time.perf_counter()
            package.config.preprocessing.tensor_path(image)
            end = time.perf_counter()
            package.batch([image])
            decode_ms.append((middle - start) * 1000)
            preprocess_ms.append((end - middle) * 1000)
            serving_ms.append((time.perf_counter() - end) * 1000)
    # The floor uses the faster of the two identical preprocessings, so the yardstick is never lenient.
    total = [d + min(p, q) for d, p, q in zip(decode_ms, preprocess_ms, serving_ms, strict=True)]
    return {
        "decode_ms": round(statistics.median(decode_ms), 2),
        "preprocess_ms": round(statistics.median(preprocess_ms), 2),
        # the service's own (numpy) implementation of the same preprocessing
        "preprocess_serving_ms": round(statistics.median(serving_ms), 2),
        "decode_preprocess_ms": round(statistics.median(total), 2),
        # mean, not median: throughput over a mix of image sizes is set by the mean
        "decode_preprocess_mean_ms": round(statistics.fmean(total), 2),
    }


def _runners(package: ModelPackage) -> dict[str, Callable[[np.ndarray], object]]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    network = package.network

    def torch_eager(batch: np.ndarray) -> object:
        with torch.inference_mode():
            return network(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))

    return {"onnx": lambda batch: session.run(None, {name: batch}), "torch": torch_eager}


def network_speeds(
    package: ModelPackage, sample: torch.Tensor, batch_sizes: Sequence[int], seconds: float
) -> dict[str, dict]:
    """Per runtime: batch-1 median latency and images/s at each batch size (the best one named)."""
    results = {}
    for runtime, run in _runners(package).items():
        by_size = {}
        for size in batch_sizes:
            batch = sample.repeat((size + len(sample) - 1) // len(sample), 1, 1, 1)[:size].numpy()
            times = _repeat(lambda batch=batch, run=run: run(batch), seconds)
            by_size[size] = {
                "median_ms": round(statistics.median(times) * 1000, 2),
                "images_per_s": round(size / statistics.median(times), 2),
            }
        best = max(by_size, key=lambda size: by_size[size]["images_per_s"])
        results[runtime] = {
            "batch1_ms": by_size[1]["median_ms"] if 1 in by_size else None,
            "best_batch": best,
            "best_images_per_s": by_size[best]["images_per_s"],
            "by_batch_size": by_size,
        }
    return results


def measure(package_dir: Path, uploads: Sequence[bytes], batch_sizes: Sequence[int], seconds: float) -> dict:
    package = load_package(package_dir)
    images = [decode_image(data) for data in uploads]
    sample = package.batch(images[:8])
    return {
        "threads": torch.get_num_threads(),
        # the service preprocesses in numpy: it must give training's torch tensors bit for bit
        "serving_preprocess_identical": torch.equal(
            package.batch(images), torch.stack([package.config.preprocessing.tensor_path(i) for i in images])
        ),
        "decode": decode_costs(package, uploads, seconds),
        "network": network_speeds(package, sample, batch_sizes, seconds),
    }
