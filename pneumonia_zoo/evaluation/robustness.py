"""Does the answer depend on how an X-ray was saved? Agreement and |dP| between versions of one image.

(a) a folder of full-resolution originals against the dataset's 224 x 224 copies of the same files
    (the copies were squashed and saved as JPEG at about quality 75);
(b) the test split re-encoded as JPEG at several qualities, and resized, against the images as they are.
Agreement is at the model's default operating point.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pneumonia_zoo.data.cache import DecodedImages
from pneumonia_zoo.data.discovery import list_labelled
from pneumonia_zoo.data.images import DecodedImage, ImageDecodeError, read_image
from pneumonia_zoo.package.classifier import Classifier

JPEG_QUALITIES = (30, 50, 75, 95)
SCALES = (0.5, 2.0)  # of the side: a smaller and a larger export of the same image
BATCH = 32


@dataclass
class Agreement:
    images: int
    agreement: float  # share of images whose label is unchanged
    mean_dp: float  # mean |P(PNEUMONIA) difference|
    max_dp: float

    def flat(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_agreement": self.agreement,
            f"{prefix}_mean_dp": self.mean_dp,
            f"{prefix}_max_dp": self.max_dp,
            f"{prefix}_images": float(self.images),
        }


def _agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> Agreement:
    if not len(reference):
        return Agreement(0, float("nan"), float("nan"), float("nan"))
    delta = np.abs(reference - other)
    same = (reference >= threshold) == (other >= threshold)
    return Agreement(len(reference), float(same.mean()), float(delta.mean()), float(delta.max()))


def _probabilities(classifier: Classifier, images: list[DecodedImage]) -> np.ndarray:
    return (
        np.concatenate(
            [classifier.predict(images[i : i + BATCH]).pneumonia for i in range(0, len(images), BATCH)]
        )
        if images
        else np.empty(0)
    )


def originals_vs_copies(classifier: Classifier, originals: Path, copies: Path) -> Agreement:
    """Each image under originals/{NORMAL,PNEUMONIA}/ against the same-named file under copies/."""
    pairs_a, pairs_b = [], []
    for sample in list_labelled(originals, require_both=False):
        copy = copies / sample.class_name / sample.path.name
        if not copy.is_file():
            continue
        try:
            pairs_a.append(read_image(sample.path, min_side=classifier.input_size))
            pairs_b.append(read_image(copy, min_side=classifier.input_size))
        except ImageDecodeError:
            continue
    threshold = classifier.config.threshold
    return _agreement(_probabilities(classifier, pairs_b), _probabilities(classifier, pairs_a), threshold)


def _reencoded(image: Image.Image, quality: int) -> DecodedImage:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    reloaded = Image.open(buffer)
    reloaded.load()
    return DecodedImage(reloaded.convert("L"), image.size, 0.0, "JPEG")


def _rescaled(image: Image.Image, scale: float) -> DecodedImage:
    side = max(8, round(image.width * scale)), max(8, round(image.height * scale))
    return DecodedImage(image.resize(side, Image.Resampling.BILINEAR), side, 0.0, "PNG")


def perturbations(classifier: Classifier, images: DecodedImages) -> dict[str, Agreement]:
    """JPEG re-encoding at JPEG_QUALITIES and resizing by SCALES, against the unperturbed images."""
    originals = [images.decoded(i) for i in range(len(images.labels))]
    reference = _probabilities(classifier, originals)
    threshold = classifier.config.threshold
    results = {}
    for quality in JPEG_QUALITIES:
        changed = [_reencoded(image.image, quality) for image in originals]
        results[f"jpeg{quality}"] = _agreement(reference, _probabilities(classifier, changed), threshold)
    for scale in SCALES:
        changed = [_rescaled(image.image, scale) for image in originals]
        results[f"scale{scale:g}"] = _agreement(reference, _probabilities(classifier, changed), threshold)
    return results


def robustness_metrics(
    classifier: Classifier, test: DecodedImages | None, originals: Path | None, copies: Path | None
) -> dict[str, float]:
    """Everything above as flat `robust_*` metrics (parts without data are left out)."""
    metrics: dict[str, float] = {}
    if originals is not None and copies is not None and originals.is_dir() and copies.is_dir():
        metrics |= originals_vs_copies(classifier, originals, copies).flat("robust_originals")
    if test is not None and len(test.labels):
        for name, agreement in perturbations(classifier, test).items():
            metrics |= agreement.flat(f"robust_{name}")
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
