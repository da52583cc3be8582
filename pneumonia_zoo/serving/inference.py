"""The inference service: uploads in, predictions and heatmaps out, without blocking the event loop.

Decoding and preprocessing run in a small pool of worker threads, one per core; the network runs in
the micro-batcher's single inference thread, as does Grad-CAM (it hooks the same network).
"""

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
import numpy as np
from PIL import Image

from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.images import ImageDecodeError, ImageTooLargeError, decode_image
from pneumonia_zoo.serving.batcher import MicroBatcher
from pneumonia_zoo.serving.errors import ServingError
from pneumonia_zoo.serving.explain import gradcam_overlay
from pneumonia_zoo.serving.holder import LoadedModel, ModelHolder, VersionNotFound
from pneumonia_zoo.serving.metrics import ServiceMetrics
from pneumonia_zoo.serving.schemas import ModelRef, Prediction
from pneumonia_zoo.serving.uploads import UploadedFile


@dataclass
class Outcome:
    """Predictions for the images of one request, with the model that made them."""

    model: LoadedModel
    images: list[Image.Image]
    probabilities: np.ndarray  # N x 2
    latency_ms: float

    def label_index(self, row: int) -> int:
        pneumonia = self.model.class_names.index("PNEUMONIA")
        return pneumonia if self.probabilities[row, pneumonia] >= self.model.threshold else 1 - pneumonia

    def prediction(self, row: int, filename: str | None = None) -> Prediction:
        names = self.model.class_names
        return Prediction(
            label=names[self.label_index(row)],
            probabilities={
                name: round(float(p), 6) for name, p in zip(names, self.probabilities[row], strict=True)
            },
            threshold=self.model.threshold,
            model=ModelRef(**self.model.describe()),
            latency_ms=round(self.latency_ms, 1),
            filename=filename,
        )


class InferenceService:
    def __init__(self, settings: Settings, holder: ModelHolder, metrics: ServiceMetrics) -> None:
        self.settings, self.holder, self.metrics = settings, holder, metrics
        # One inference thread: the network already uses every core, and Grad-CAM must not overlap it.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        # Decoding is CPU-bound (Pillow releases the GIL): more threads than cores only make every
        # request slower and hold more full-resolution images in memory at once.
        self.cpu_pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="decode")
        self.batcher = MicroBatcher(
            self.executor,
            settings.max_batch_size,
            settings.max_batch_wait_ms,
            on_batch=metrics.batch_size.observe,
        )

    async def start(self) -> None:
        await self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.cpu_pool.shutdown(wait=False, cancel_futures=True)

    async def model(self, version: str | None = None) -> LoadedModel:
        """The champion (as of now: the caller keeps this reference), or a given version."""
        if version is None or version == "":
            current = self.holder.current
            if current is None:
                raise ServingError(503, self.holder.reason)
            return current
        if not version.isdigit():
            raise ServingError(422, f"version must be a registry version number, not '{version[:40]}'")
        try:
            return await anyio.to_thread.run_sync(self.holder.get_version, version)
        except VersionNotFound as exc:
            raise ServingError(404, str(exc)) from None
        except Exception as exc:
            detail = f"version {version} could not be loaded ({type(exc).__name__}: {exc})"
            raise ServingError(503, detail) from None

    async def decode(self, uploads: list[UploadedFile]) -> list[Image.Image]:
        if not uploads:
            raise ServingError(
                422, "no image uploaded: send it in the multipart field 'file' (or 'files' for a batch)"
            )
        return await asyncio.get_running_loop().run_in_executor(self.cpu_pool, self._decode_all, uploads)

    def _decode_all(self, uploads: list[UploadedFile]) -> list[Image.Image]:
        images = []
        for upload in uploads:
            try:
                images.append(decode_image(bytes(upload.data), max_pixels=self.settings.max_image_pixels))
            except ImageDecodeError as exc:
                name = f"'{upload.filename}'" if upload.filename else "the upload"
                # Oversized images are "too large" (413); other content we cannot process is 422.
                status = 413 if isinstance(exc, ImageTooLargeError) else 422
                raise ServingError(status, f"{name}: {exc}") from None
        return images

    async def predict(self, model: LoadedModel, images: list[Image.Image], started: float) -> Outcome:
        self.batcher.announce()  # so a batch being formed waits for this request
        try:
            inputs = await asyncio.get_running_loop().run_in_executor(
                self.cpu_pool,
                model.package.batch,
                images,  # the package's own preprocessing
            )
        finally:
            self.batcher.arrived()  # no await between this and queueing: the batcher cannot miss it
        probabilities = await self.batcher.predict(model.predictor, inputs)
        outcome = Outcome(model, images, probabilities, (time.perf_counter() - started) * 1000)
        for row in range(len(images)):
            self.metrics.predictions.labels(model.class_names[outcome.label_index(row)]).inc()
        return outcome

    async def explain(self, model: LoadedModel, image: Image.Image, class_index: int) -> Image.Image:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, gradcam_overlay, model.package, image, class_index
        )
