"""The starter model: a champion shipped inside the package, so a fresh install serves real predictions.

`assets/starter/` holds a model package exactly like the one inside a registered version, plus its
`MODEL_CARD.md`. `ensure_champion` registers it and makes it champion only when the registry has no
champion; `export_starter` builds that folder from a registered version.
"""

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.package.build import to_float16
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import CONFIG_FILE, ReferenceDistributions
from pneumonia_zoo.package.io import read_config, record_files, sha256_file
from pneumonia_zoo.resources import STARTER_DIR
from pneumonia_zoo.tracking.cards import CARD_ARTIFACT, render_card
from pneumonia_zoo.tracking.publish import register_package
from pneumonia_zoo.tracking.records import Lineage, lineage_tags
from pneumonia_zoo.tracking.store import Store

log = logging.getLogger(__name__)

MODEL_CARD = "MODEL_CARD.md"


def _package_digest(directory: Path) -> str:
    """Identifies a package by its model.json (which holds every other file's sha256)."""
    return sha256_file(directory / CONFIG_FILE)


def _copy_package(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(MODEL_CARD))


def ensure_champion(store: Store, starter_dir: Path = STARTER_DIR) -> str | None:
    """Make the starter the champion if the registry has none; returns the champion version.

    Never moves an existing champion. A starter already registered (same model.json) is reused rather
    than registered again. Returns None when no starter model is shipped.
    """
    starter_dir = Path(starter_dir)
    if not (starter_dir / CONFIG_FILE).is_file():
        log.warning("no starter model is shipped (no %s): nothing to register", starter_dir / CONFIG_FILE)
        return None
    champion = store.champion_version()
    if champion is not None:
        return champion
    load_classifier(starter_dir)  # checks every sha256 before anything is logged
    digest = _package_digest(starter_dir)
    existing = [v for v in store.versions() if v.lineage.starter and v.lineage.package_sha256 == digest]
    version = str(existing[-1].version) if existing else _register_starter(store, starter_dir, digest)
    store.set_alias(version)
    log.info("starter model registered as %s version %s and made champion", store.model_name, version)
    return version


def _register_starter(store: Store, starter_dir: Path, digest: str) -> str:
    config = read_config(starter_dir)
    card = starter_dir / MODEL_CARD
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = Path(tmp) / "package"  # the same layout as a trained version: data/package/
        _copy_package(starter_dir, package_dir)
        if card.is_file():
            shutil.copy2(card, Path(tmp) / CARD_ARTIFACT)  # what /models links to, under the usual name
        size = config.preprocessing.image_size if config.preprocessing else "mixed"
        tags = lineage_tags(
            Lineage(starter=True, package_sha256=digest, source_run_id=config.info.run_id or "unknown")
        )
        return register_package(
            store,
            package_dir,
            f"starter-{config.architecture}-{size}px",
            tags,
            artifacts=[Path(tmp) / CARD_ARTIFACT] if card.is_file() else [],
        )


def add_reference(directory: Path, data: Path) -> None:
    """The monitor's drift reference (validation P and guard scores, as this package serves them),
    for a package made before packages kept it; its validation split is rebuilt from its own seed."""
    from pneumonia_zoo.data.cache import decode_all
    from pneumonia_zoo.data.transforms import Preprocessing
    from pneumonia_zoo.evaluation.predict import predict_images
    from pneumonia_zoo.evaluation.report import evaluate
    from pneumonia_zoo.workflows.evaluate import select_data

    classifier = load_classifier(directory)
    validation = select_data(classifier, data, None, "val", None)
    images = decode_all(validation.samples, Preprocessing(classifier.input_size), "decode val", quiet=True)
    evaluation = evaluate("val", predict_images(classifier, images), classifier.config, bootstrap=0)
    config = read_config(directory)
    predictions = evaluation.predictions
    config.reference = ReferenceDistributions.from_scores(predictions.probs, predictions.ood_scores)
    # Only model.json changes: the recorded files keep their hashes (re-hashing the folder would also
    # take in what lies beside the package, such as the starter's MODEL_CARD.md).
    (directory / CONFIG_FILE).write_text(config.to_json())


# --- export: a registered version -> assets/starter/ ---------------------------------------------


@dataclass
class ExportResult:
    directory: Path
    total_bytes: int
    float16: bool
    max_probability_change: float | None  # exported vs registered package on the check images


def export_starter(
    store: Store,
    model_uri: str,
    out: Path,
    float16: bool = False,
    check_images: list[Path] | None = None,
    data: Path | None = None,
) -> ExportResult:
    """Write a registered version's package (and its model card) to `out`; the result is verified.

    With `float16`, weights are rounded to float16 and the ONNX exports rebuilt from exactly those
    weights; `check_images` then measure the largest change in a probability. `data` (the Kaggle folder
    it was trained on): a package without the monitor's drift reference gets it, from its own
    validation split as exported.
    """
    with tempfile.TemporaryDirectory(prefix="pneumonia-zoo-export-") as tmp:
        resolved, source = store.load(model_uri, destination=Path(tmp) / "download")
        staging = Path(tmp) / "starter"
        _copy_package(source.directory, staging)
        config = read_config(staging)
        config.info = config.info.model_copy(update={"source_model": resolved.uri})
        record_files(staging, config)
        if float16:
            to_float16(staging)
        if data is not None and read_config(staging).reference is None:
            add_reference(staging, data)
        exported = load_classifier(staging)  # refuse to leave behind a package that does not load
        change = None
        if check_images:
            images = [read_image(path, min_side=exported.input_size) for path in check_images]
            change = float(
                np.abs(exported.predict(images).probabilities - source.predict(images).probabilities).max()
            )
        card = render_card(
            read_config(staging),
            staging,
            resolved.name,
            resolved.version,
            store.find_run(resolved.run_id),
            store.evaluations(resolved.version),
            source_model=resolved.uri,
            record=resolved,
        )
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staging, out)
        (out / MODEL_CARD).write_text(card)
    total = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return ExportResult(out, total, float16, change)
