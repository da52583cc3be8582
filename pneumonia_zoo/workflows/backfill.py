"""`pneumonia-zoo backfill-guard`: give a package made before the out-of-population guard its guard.

The Gaussians are fitted on the package's own training split and the threshold on its validation
split (both rebuilt from the seed, fraction and subsample it records), exactly as training does. A
registered version is never changed in place: the guarded package is registered as a new version
(tagged `backfilled_from`); a package folder (`--dir`, the starter) is rewritten in place.
"""

import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np

from pneumonia_zoo.data.cache import DecodedImages, decode_all
from pneumonia_zoo.data.pipeline import split_samples
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.evaluation.predict import predict_images
from pneumonia_zoo.package.build import rebuild_onnx
from pneumonia_zoo.package.classifier import Classifier, load_classifier
from pneumonia_zoo.package.format import GUARD_FILE, ONNX_FILE
from pneumonia_zoo.package.io import guard_config, read_config, record_files, save_guard
from pneumonia_zoo.tracking.cards import log_model_card
from pneumonia_zoo.tracking.publish import publish
from pneumonia_zoo.tracking.store import Store
from pneumonia_zoo.training.calibrate import fit_guard
from pneumonia_zoo.zoo.architectures import get_architecture


def _features(classifier: Classifier, images: DecodedImages) -> np.ndarray:
    """Penultimate features through the package's own PyTorch network (old ONNX exports lack them)."""
    import torch

    member = classifier.members[0]
    batches = []
    with torch.inference_mode():
        for start in range(0, len(images.labels), 32):
            decoded = [images.decoded(i) for i in range(start, min(start + 32, len(images.labels)))]
            batches.append(member.network(torch.from_numpy(member.preprocessing.batch(decoded)))[1].numpy())
    return np.concatenate(batches)


def add_guard(directory: Path, data: Path, flag_rate: float = 0.02, quiet: bool = False) -> float:
    """Fit and write the guard into the package folder; returns the validation flag rate reached."""
    classifier = load_classifier(directory)
    config = classifier.config
    if config.is_ensemble:
        raise UserError("backfill the members of an ensemble, then build the ensemble again")
    info = config.info
    train, val, _ = split_samples(data, info.val_fraction, info.seed, info.limit, info.val_split)
    assert config.preprocessing is not None
    preprocessing = Preprocessing(config.preprocessing.image_size)
    train_images = decode_all(train, preprocessing, "decode train", quiet)
    val_images = decode_all(val, preprocessing, "decode val", quiet)
    train_features, val_features = _features(classifier, train_images), _features(classifier, val_images)
    penultimate = int(classifier.members[0].network.head.in_features)
    arch = get_architecture(config.architecture)
    guard = fit_guard(arch, penultimate, train_features, train_images.labels.numpy(), val_features, flag_rate)
    save_guard(guard, directory / GUARD_FILE, float16=config.info.weights_dtype == "float16")
    config.guard = guard_config(guard, flag_rate)
    config.info = config.info.model_copy(update={"guard": "backfilled"})
    record_files(directory, config)
    # An older ONNX export gives the logits only: rebuild it, so ONNX Runtime yields the guard's features.
    if (directory / ONNX_FILE).is_file():
        rebuild_onnx(directory)
    return float(predict_images(load_classifier(directory), val_images).ood_flags.mean())


def backfill_version(store: Store, model_uri: str, data: Path, flag_rate: float, quiet: bool) -> str:
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-backfill-") as tmp:
        resolved, classifier = store.load(model_uri, destination=Path(tmp) / "download")
        package_dir = Path(tmp) / "package"
        shutil.copytree(classifier.directory, package_dir)
        rate = add_guard(package_dir, data, flag_rate, quiet)
        config = read_config(package_dir)
        config.metrics = config.metrics | {"val_flag_rate": rate}
        record_files(package_dir, config)
        store.activate()
        with mlflow.start_run(run_name=f"backfill-guard-v{resolved.version}"):
            mlflow.set_tags({"backfilled_from": resolved.version, "architecture": config.architecture})
            mlflow.log_metrics({k: v for k, v in config.metrics.items() if np.isfinite(v)})
            version = publish(store, package_dir, extra_tags={"backfilled_from": resolved.version})
    log_model_card(store, version)
    return version
