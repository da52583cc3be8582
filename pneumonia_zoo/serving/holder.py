"""The model holder: which version serves, loaded in the background and swapped atomically.

Requests read `holder.current` once and keep that LoadedModel for their whole life, so a swap
never mixes two versions inside one request: the old one is freed when its last request ends.
"""

import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from pneumonia_zoo.config import Settings
from pneumonia_zoo.errors import NotFound, PackageRejected, UserError
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.io import package_digest
from pneumonia_zoo.package.prediction import ModelInfo
from pneumonia_zoo.serving.explain import warm_up_explainer
from pneumonia_zoo.tracking.records import VersionRecord
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.tracking.uris import normalize_version

log = logging.getLogger(__name__)

# Readiness states reported by /readyz.
STARTING, READY = "starting", "ready"
NO_CHAMPION, UNREACHABLE, INVALID_ARTIFACT = "no_champion", "registry_unreachable", "invalid_artifact"

# While no model is loaded and the registry cannot be reached, retry after 1, 2, 4 ... seconds, at most
# this long (or the reload interval, if shorter): a registry that comes up is found soon, a dead one is
# not hammered.
FIRST_RETRY_S, MAX_RETRY_S = 1.0, 60.0

# MLflow's own HTTP client retries a refused connection 7 times with exponential backoff (minutes, a
# warning line each), so a registry that is down would hold readiness at "starting" that long. The
# holder retries by itself, so each registry call fails fast instead, unless the operator set these.
_REGISTRY_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    classifier: Classifier
    memory_bytes: int = 0  # what loading it added to the process (the cache is bounded by this)

    @property
    def architecture(self) -> str:
        return self.classifier.config.architecture

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.name, self.version, self.architecture, self.classifier.runtime)

    def describe(self) -> dict[str, str]:
        return self.info.to_dict()


def _import_runtime_libraries() -> None:
    import onnxruntime  # noqa: F401  (torch is imported only by a version that needs it)


class VersionNotFound(NotFound):
    """A version number the registry does not hold."""


class ModelHolder:
    def __init__(
        self, settings: Settings, store: Store, on_swap: Callable[[LoadedModel], None] | None = None
    ) -> None:
        self.settings, self.store = settings, store
        self.on_swap = on_swap
        self.current: LoadedModel | None = None  # replaced whole, never mutated: the atomic swap
        self.status = STARTING
        self.reason = "the champion model is loading"
        self.last_error: str | None = None
        self._refresh_lock = threading.Lock()  # one check-and-swap at a time (poller vs admin)
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # consecutive failed refreshes: repeats are logged quietly

    @property
    def name(self) -> str:
        return self.store.model_name

    @property
    def champion_uri(self) -> str:
        return self.store.champion_uri

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for name, value in _REGISTRY_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self._stop.clear()  # started again after a stop (a new lifespan of the same app)
        self._thread = threading.Thread(target=self._run, name="model-holder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)  # daemon thread: never hold shutdown for a slow download

    def _run(self) -> None:
        retry = FIRST_RETRY_S
        while True:
            self.refresh()
            delay = self._next_delay(retry)
            if delay is None or self._stop.wait(delay):
                return
            retry = min(retry * 2, MAX_RETRY_S) if self.current is None else FIRST_RETRY_S

    def _next_delay(self, retry: float) -> float | None:
        """Seconds until the next refresh; None: no more (re-checks are off and a model serves)."""
        interval = self.settings.reload_interval_s
        if self.current is None and self.status == UNREACHABLE:
            # Nothing serves because the registry is down: keep trying, even with re-checks off.
            return min(retry, interval) if interval > 0 else retry
        return interval if interval > 0 else None

    # -- the champion ------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Load the alias's version if it changed; True when a new model was swapped in.

        On failure the current model (if any) keeps serving and the error is recorded.
        """
        with self._refresh_lock:
            try:
                resolved = self.store.resolve(self.champion_uri)
            except UserError:
                self._fail(*self._classify_missing())
                return False
            except Exception as exc:  # the registry itself failed: keep serving what we have
                self._fail(UNREACHABLE, f"the model registry could not be read ({type(exc).__name__})", exc)
                return False
            if self.current is not None and self.current.version == resolved.version:
                self._recovered()
                return False
            try:
                # A version already loaded (asked for by number, or a champion being rolled back to)
                # is swapped in as it is: no second download, no second copy in memory.
                model = self._take_cached(resolved.version) or self._load(resolved.uri)
            except UserError as exc:  # PackageRejected (tampered or incomplete) is a UserError
                self._fail(
                    INVALID_ARTIFACT, f"version {resolved.version} (run {resolved.run_id}) was refused: {exc}"
                )
                return False
            except Exception as exc:
                reason = f"version {resolved.version} could not be downloaded ({type(exc).__name__})"
                self._fail(UNREACHABLE, reason, exc)
                return False
            previous, self.current = self.current, model
            self.status, self.reason = READY, "ready"
            self._recovered()
            log.info(
                "serving %s version %s (%s, %s, run %s)%s",
                model.name,
                model.version,
                model.architecture,
                model.classifier.runtime,
                resolved.run_id,
                f", replacing version {previous.version}" if previous is not None else "",
            )
            if previous is not None:
                self._remember(previous)  # a version just demoted is likely to be asked for again
            if self.on_swap is not None:
                self.on_swap(model)
            return True

    def _classify_missing(self) -> tuple[str, str]:
        if not self.store.reachable():
            return UNREACHABLE, "the model registry could not be read"
        return NO_CHAMPION, (
            f"no model is registered as {self.champion_uri}: train one with "
            "`pneumonia-zoo train`, then `pneumonia-zoo promote`"
        )

    def _fail(self, status: str, reason: str, cause: Exception | None = None) -> None:
        """Record a failed refresh. `reason` is public (/readyz); `cause`, for the log only, may hold
        hosts and paths."""
        repeated = reason == self.last_error
        self.last_error = reason
        self._failures += 1
        if self.current is None:
            self.status, self.reason = status, reason
        # One line per new problem, no traceback: a registry that stays down must not flood the log.
        if repeated:
            log.debug("model refresh failed again (%d in a row): %s", self._failures, reason)
        else:
            log.warning("model refresh failed: %s%s", reason, f": {cause}" if cause else "")

    def _recovered(self) -> None:
        if self._failures:
            log.info("model refresh succeeded after %d failed attempt(s)", self._failures)
        self.last_error, self._failures = None, 0

    # -- other versions ------------------------------------------------------------------------------

    def get_version(self, version: str) -> LoadedModel:
        """A specific version: the champion, a cached one, or loaded now (blocking; call in a thread).

        The cache is keyed by the normalised number: "01", "0001" and "1" are one entry, one load."""
        version = normalize_version(version)
        current = self.current
        if current is not None and current.version == version:
            return current
        with self._cache_lock:  # also serialises loads, so two requests never load the same version twice
            if version in self._cache:
                self._cache.move_to_end(version)
                return self._cache[version]
            try:
                model = self._load(self.store.version_uri(version))
            except NotFound:
                raise VersionNotFound(f"version {version} of '{self.name}' is not in the registry") from None
            self._remember_locked(model)
            return model

    def _take_cached(self, version: str) -> LoadedModel | None:
        with self._cache_lock:
            return self._cache.pop(version, None)

    def _remember(self, model: LoadedModel) -> None:
        with self._cache_lock:
            self._remember_locked(model)

    def _remember_locked(self, model: LoadedModel) -> None:
        """Keep `model` for later requests, within the cache's count and memory bounds (LRU)."""
        self._cache[model.version] = model
        self._cache.move_to_end(model.version)
        limit = self.settings.model_cache_mb * 2**20
        while self._cache and (
            len(self._cache) > self.settings.model_cache_size
            or sum(m.memory_bytes for m in self._cache.values()) > limit
        ):
            _, dropped = self._cache.popitem(last=False)
            log.info(
                "dropped version %s from the model cache (%.0f MB)",
                dropped.version,
                dropped.memory_bytes / 2**20,
            )

    def _load(self, model_uri: str) -> LoadedModel:
        """Download, verify and load a version (the store's load), and warm it up (an inference,
        Grad-CAM's network and imports): its first request pays for nothing. The download is needed
        only until then. NotFound when the registry lacks it, PackageRejected when its files are
        missing or altered."""
        _import_runtime_libraries()  # so the footprint below is the model's, not the libraries'
        process = psutil.Process()
        before = process.memory_info().rss
        with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-serve-") as tmp:
            resolved, classifier, digest = load_trusted(self.store, self.settings, model_uri, Path(tmp))
            files = sum(path.stat().st_size for path in classifier.directory.rglob("*") if path.is_file())
            classifier.warm_up()
            warm_up_explainer(classifier)
        footprint = max(files, process.memory_info().rss - before)
        log.info(
            "loaded version %s (%s, %.0f MB, model.json sha256 %s)",
            resolved.version,
            classifier.runtime,
            footprint / 2**20,
            digest,
        )
        return LoadedModel(self.name, resolved.version, classifier, footprint)


def load_trusted(
    store: Store, settings: Settings, model_uri: str, destination: Path, onnx_threads: int | None = None
) -> tuple[VersionRecord, Classifier, str]:
    """Download a version into `destination` and load it: (its record, the classifier, its digest).

    With PNEUMONIA_ZOO_TRUSTED_DIGESTS set, a package whose digest (package_digest: the sha256 of its
    model.json, which pins every file) is not listed is refused before a byte of it is parsed. The list
    lives in the service's settings, not in the registry: whoever can write to the registry (register a
    version, move an alias) still cannot get a package of their own run."""
    resolved = store.resolve(model_uri)
    directory = store.download_package(resolved.version, destination, resolved.name)
    digest = package_digest(directory)
    if settings.trusted_digests and digest not in settings.trusted_digests:
        raise PackageRejected(f"its model.json (sha256 {digest}) is not in PNEUMONIA_ZOO_TRUSTED_DIGESTS")
    classifier = load_classifier(directory, settings.runtime, onnx_threads or settings.onnx_threads)
    return resolved, classifier, digest
