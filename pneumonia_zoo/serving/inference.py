"""The inference service: uploads in, predictions and heatmaps out, without blocking the event loop.

The hooks run where they belong: decode and preprocess in a small pool of worker threads (one per
CPU the process may use), the network in the micro-batcher's single inference thread (as does
Grad-CAM: it hooks the same network), postprocessing (calibration, guard) back in the pool.

It knows nothing of HTTP: it reads a body given as its declared type, length and byte stream, and
refuses with the domain errors of `pneumonia_zoo.errors` (serving/errors.py maps them to statuses).
Observers (the Prometheus metrics) are plain callables handed in: `on_batch`, `on_prediction`.
"""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anyio
from PIL import Image

from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.errors import ImageDecodeError
from pneumonia_zoo.data.images import DecodedImage, decode_cost, decode_image
from pneumonia_zoo.errors import (
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    NotReady,
    PackageRejected,
    Unavailable,
    UserError,
)
from pneumonia_zoo.package.classifier import Classifier, Scores
from pneumonia_zoo.package.prediction import prediction_record
from pneumonia_zoo.resources import available_cpus
from pneumonia_zoo.serving.admission import Budget, admitted, charged
from pneumonia_zoo.serving.batcher import MicroBatcher
from pneumonia_zoo.serving.explain import gradcam_overlay
from pneumonia_zoo.serving.holder import LoadedModel, ModelHolder
from pneumonia_zoo.serving.uploads import IncomingBody, Pace, UploadedFile, UploadForm, read_upload_form
from pneumonia_zoo.tracking.uris import normalize_version

MB = 2**20
NO_IMAGE = "no image uploaded: send it in the multipart field 'file' (or 'files' for a batch)"
DEADLINE = "the request took longer than the service's deadline"

BatchObserver = Callable[[int, float, list[float]], None]  # rows, seconds, each request's queue wait
PredictionObserver = Callable[[str, str, bool], None]  # served version, label, out of population


def input_bytes(classifier: Classifier) -> int:
    """The float32 network inputs of one image: every distinct (preprocessing, test-time view)."""
    return sum(4 * 3 * preprocessing.image_size**2 for preprocessing, _ in classifier.distinct_inputs)


@dataclass
class Outcome:
    """Predictions for the images of one request, with the model that made them."""

    model: LoadedModel
    images: list[DecodedImage]
    scores: Scores
    latency_ms: float

    def label_index(self, row: int, operating_point: str | None = None) -> int:
        threshold = self.model.classifier.config.operating_point(operating_point).threshold
        return 1 if self.scores.probabilities[row, 1] >= threshold else 0

    def prediction(self, row: int, filename: str | None = None, operating_point: str | None = None) -> dict:
        return prediction_record(
            self.model.classifier.config,
            self.scores,
            row,
            self.model.info,
            operating_point,
            filename,
            self.latency_ms,
        )


def _named_dicom(upload: UploadedFile) -> bool:
    return upload.filename.lower().endswith((".dcm", ".dicom"))


def _decode_costs(uploads: list[UploadedFile], min_side: int) -> int:
    """The memory the uploads' decoding will hold at its peak, from their headers (bounded walks)."""
    return sum(decode_cost(bytes(u.data), min_side, _named_dicom(u)) for u in uploads)


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        holder: ModelHolder,
        on_batch: BatchObserver | None = None,
        on_prediction: PredictionObserver | None = None,
    ) -> None:
        self.settings, self.holder = settings, holder
        self.on_prediction = on_prediction
        # One inference thread: the network already uses every core, and Grad-CAM must not overlap it.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        # Decoding is CPU-bound (Pillow releases the GIL): more threads than cores only make every
        # request slower and hold more full-resolution images in memory at once.
        workers = settings.decode_threads or available_cpus()
        self.cpu_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.batcher = MicroBatcher(
            self.executor,
            settings.max_batch_size,
            settings.max_batch_wait_ms,
            settings.max_queued_batches,
            on_batch=on_batch,
        )
        self.uploads = Budget("uploads", int(settings.upload_budget_mb * MB), settings.max_waiting_requests)
        self.pixels = Budget("pixels", int(settings.pixel_budget_mb * MB), settings.max_waiting_requests)

    @property
    def budgets(self) -> tuple[Budget, Budget]:
        return self.uploads, self.pixels

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
                raise NotReady(self.holder.reason)
            return current
        version = normalize_version(version)  # "0001" is version 1: one cache entry, one load
        try:
            return await anyio.to_thread.run_sync(self.holder.get_version, version)
        except NotFound:  # VersionNotFound: its sentence names the version
            raise
        except UserError as exc:  # a refused package: the sentence is for users
            raise PackageRejected(f"version {version} could not be loaded: {exc}") from None
        except Exception as exc:  # anything else may hold hosts and paths: only its kind is told
            raise Unavailable(f"version {version} could not be loaded ({type(exc).__name__})") from None

    @staticmethod
    def check_operating_point(model: LoadedModel, name: str | None) -> None:
        try:
            model.classifier.config.operating_point(name)
        except UserError as exc:
            raise InvalidInput(str(exc)) from None

    # -- a request, stage by stage, within its budgets and deadline ----------------------------------

    @contextlib.asynccontextmanager
    async def receive(self, body: IncomingBody, max_files: int) -> AsyncIterator[UploadForm]:
        """Read the multipart body, charging the upload budget for its bytes as they arrive (never for
        what its header declares), and hold that share until the request is done."""
        settings = self.settings
        pace = Pace(settings.body_timeout_s, settings.min_body_rate_kb_s * 1024, settings.body_grace_s)
        # Waiting for the budget is the service's doing, not the client's: past the body timeout that
        # is AtCapacity (the service is full), never the ClientTimeout of a client that stalls; nor does
        # the wait count against the client's pace.
        async with charged(self.uploads, wait_timeout_s=settings.body_timeout_s) as charge:
            yield await read_upload_form(
                body,
                settings.max_upload_bytes,
                max_files,
                pace=pace,
                max_bytes=settings.max_request_bytes,
                on_received=charge.cover,
            )

    async def classify(
        self, model: LoadedModel, uploads: list[UploadedFile], min_side: int | None = None
    ) -> Outcome:
        """Decode and classify the uploads within the pixel budget and the request's deadline."""
        if not uploads:
            raise InvalidInput(NO_IMAGE)
        started = time.perf_counter()
        side = max(min_side or 0, model.classifier.input_size)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                # Reading untrusted headers is work like decoding: in the pool, never on the event loop.
                cost = await loop.run_in_executor(self.cpu_pool, _decode_costs, uploads, side)
                cost += len(uploads) * input_bytes(model.classifier)
                async with admitted(self.pixels, cost):
                    images = await self.decode(uploads, side, cost)
                    return await self.predict(model, images, started)
        except TimeoutError:
            raise DeadlineExceeded(DEADLINE) from None

    async def decode(
        self, uploads: list[UploadedFile], min_side: int | None, charged: int = 0
    ) -> list[DecodedImage]:
        """The uploads decoded in the pool. A request cancelled meanwhile (its deadline, its client gone)
        starts no further image, and the `charged` pixel budget stays held until the image being
        decoded is done: the pool's memory is in use until then, answered or not."""
        if not uploads:
            raise InvalidInput(NO_IMAGE)
        abandoned = threading.Event()
        job = self.cpu_pool.submit(self._decode_all, uploads, min_side, abandoned)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            abandoned.set()
            if not job.cancel():  # running: it cannot be stopped mid-image
                self.pixels.hold_until(charged, job)
            raise

    def _decode_all(
        self, uploads: list[UploadedFile], min_side: int | None, abandoned: threading.Event | None = None
    ) -> list[DecodedImage]:
        images: list[DecodedImage] = []
        for upload in uploads:
            if abandoned is not None and abandoned.is_set():
                return images  # nobody waits for the rest
            try:
                images.append(
                    decode_image(
                        bytes(upload.data),
                        self.settings.max_image_pixels,
                        min_side,
                        assume_dicom=_named_dicom(upload),
                    )
                )
            except ImageDecodeError as exc:
                name = f"'{upload.filename}'" if upload.filename else "the upload"
                # The same type (too large, or unusable), its sentence naming the file.
                raise type(exc)(f"{name}: {exc}") from None
        return images

    async def predict(self, model: LoadedModel, images: list[DecodedImage], started: float) -> Outcome:
        loop = asyncio.get_running_loop()
        classifier = model.classifier
        self.batcher.announce()  # so a batch being formed waits for this request
        try:
            inputs = await loop.run_in_executor(self.cpu_pool, classifier.preprocess, images)
        finally:
            self.batcher.arrived()  # no await between this and queueing: the batcher cannot miss it
        outputs = await self.batcher.forward(classifier, inputs)  # QueueFull: AtCapacity
        scores = await loop.run_in_executor(self.cpu_pool, classifier.postprocess, outputs, images)
        outcome = Outcome(model, images, scores, (time.perf_counter() - started) * 1000)
        if self.on_prediction is not None:
            for row in range(len(images)):
                label = classifier.config.class_names[outcome.label_index(row)]
                self.on_prediction(model.version, label, bool(scores.ood_flags[row]))
        return outcome

    async def explain(self, model: LoadedModel, image: DecodedImage, class_index: int) -> Image.Image:
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, gradcam_overlay, model.classifier, image, class_index
        )
