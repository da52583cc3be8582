"""`pneumonia-zoo predict`: image files classified by a model package folder or a registered version
(the champion by default), one prediction record per file, as every caller reports it.

A package folder predicts without MLflow (and, with its ONNX export, without torch): the store is
opened only for a registry URI or the champion.
"""

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pneumonia_zoo.config import Settings
from pneumonia_zoo.data.errors import ImageDecodeError
from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.prediction import ModelInfo, prediction_record
from pneumonia_zoo.tracking.uris import is_registry_uri


@contextmanager
def loaded_model(
    settings: Settings, model: str | None, runtime: str = "auto"
) -> Iterator[tuple[Classifier, ModelInfo]]:
    """`model`: a package folder, a registry URI, or None for the champion. A registered version is
    downloaded into a temporary folder that lives as long as the block (the classifier reads its guard
    and weights lazily) and is removed after it."""
    if model is not None and not is_registry_uri(model):
        classifier = load_classifier(Path(model), runtime)
        yield (
            classifier,
            ModelInfo(Path(model).name, "local", classifier.config.architecture, classifier.runtime),
        )
        return
    from pneumonia_zoo.tracking.store import Store

    store = Store(settings)
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-predict-") as tmp:
        resolved, classifier = store.load(model or store.champion_uri, runtime, destination=Path(tmp))
        yield (
            classifier,
            ModelInfo(resolved.name, resolved.version, classifier.config.architecture, classifier.runtime),
        )


def predict_files(
    settings: Settings,
    images: list[Path],
    model: str | None = None,
    runtime: str = "auto",
    operating_point: str | None = None,
) -> list[dict]:
    """Load the model, decode every file, classify them in one batch: a prediction record per file
    (`latency_ms` is the mean per image of decoding and classifying)."""
    with loaded_model(settings, model, runtime) as (classifier, info):
        classifier.config.operating_point(operating_point)  # an unknown name fails before any decoding
        started = time.perf_counter()
        decoded = []
        for path in images:
            try:
                decoded.append(read_image(path, min_side=classifier.input_size))
            except ImageDecodeError as exc:
                raise UserError(f"{path}: {exc}") from None
        scores = classifier.predict(decoded)
        latency = (time.perf_counter() - started) * 1000 / len(images)
    return [
        prediction_record(classifier.config, scores, row, info, operating_point, str(path), latency)
        for row, path in enumerate(images)
    ]
