"""Does the answer depend on how an X-ray was saved? Agreement and |dP| between versions of one image.

(a) a folder of full-resolution originals against the dataset's 224 x 224 copies of the same files
    (the copies were squashed and saved as JPEG at about quality 75);
(b) the test split re-encoded as JPEG at several qualities, resized, and reframed (its sides cropped, or
    padded with black), against the images as they are. Reframing changes how much the anatomy is squashed
    on its way to the square input: a model that learned the squash of each class's originals (Kermany's
    train NORMALs are squarer than its PNEUMONIAs) answers differently.
Agreement is at the model's default operating point.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pneumonia_zoo.data.discovery import list_labelled
from pneumonia_zoo.data.images import DecodedImage, ImageDecodeError, read_image
from pneumonia_zoo.package.classifier import Classifier

if TYPE_CHECKING:  # the cache needs torch; model cards read ROBUSTNESS_LABELS where torch is not installed
    from pneumonia_zoo.data.cache import DecodedImages

JPEG_QUALITIES = (30, 50, 75, 95)
WIDTHS = (0.8, 1.25)  # of the width: the sides cropped, or padded with black (the height kept)
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


def _reframed(image: Image.Image, width: float) -> DecodedImage:
    """The same X-ray framed wider (black columns either side) or narrower (its sides cropped)."""
    size = max(8, round(image.width * width)), image.height
    canvas = Image.new("L", size, 0)
    canvas.paste(image.convert("L"), ((size[0] - image.width) // 2, 0))  # a negative offset crops
    return DecodedImage(canvas, size, 0.0, "PNG")


Perturbation = Callable[[Image.Image], DecodedImage]
PERTURBATIONS: dict[str, tuple[str, Perturbation]] = {
    **{
        f"jpeg{q}": (f"test split re-encoded as JPEG quality {q}", partial(_reencoded, quality=q))
        for q in JPEG_QUALITIES
    },
    # a smaller and a larger export of the same image
    "scale0.5": ("test split at half size", partial(_rescaled, scale=0.5)),
    "scale2": ("test split at double size", partial(_rescaled, scale=2.0)),
    **{
        f"width{w:g}": (
            f"test split {'cropped' if w < 1 else 'padded'} to {w:g} x its width",
            partial(_reframed, width=w),
        )
        for w in WIDTHS
    },
}
"""Name (its metrics are robust_<name>_*) -> (what it is, for model cards; the perturbation)."""
ROBUSTNESS_LABELS = {
    "robust_originals": "full-resolution originals vs the dataset's 224 px copies",
    **{f"robust_{name}": label for name, (label, _) in PERTURBATIONS.items()},
}


def perturbations(classifier: Classifier, images: "DecodedImages") -> dict[str, Agreement]:
    """Every perturbation in PERTURBATIONS, against the unperturbed images."""
    originals = [images.decoded(i) for i in range(len(images.labels))]
    reference = _probabilities(classifier, originals)
    threshold = classifier.config.threshold
    return {
        name: _agreement(
            reference, _probabilities(classifier, [perturb(i.image) for i in originals]), threshold
        )
        for name, (_, perturb) in PERTURBATIONS.items()
    }


def robustness_metrics(
    classifier: Classifier, test: "DecodedImages | None", originals: Path | None, copies: Path | None
) -> dict[str, float]:
    """Everything above as flat `robust_*` metrics (parts without data are left out)."""
    metrics: dict[str, float] = {}
    if originals is not None and copies is not None and originals.is_dir() and copies.is_dir():
        metrics |= originals_vs_copies(classifier, originals, copies).flat("robust_originals")
    if test is not None and len(test.labels):
        for name, agreement in perturbations(classifier, test).items():
            metrics |= agreement.flat(f"robust_{name}")
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
