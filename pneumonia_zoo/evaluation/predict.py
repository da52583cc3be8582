"""Running a classifier over a decoded set of images, in batches."""

from dataclasses import dataclass, field

import numpy as np

from pneumonia_zoo.data.cache import DecodedImages
from pneumonia_zoo.package.classifier import Classifier


@dataclass
class Predictions:
    labels: np.ndarray
    probs: np.ndarray  # calibrated P(PNEUMONIA)
    groups: np.ndarray  # patient of every image
    ood_flags: np.ndarray
    ood_scores: np.ndarray
    files: list[str]
    # Per manifest column (sex, view, ...), every image's value ("" where a sample has none).
    attributes: dict[str, np.ndarray] = field(default_factory=dict)


def predict_images(classifier: Classifier, images: DecodedImages, batch_size: int = 32) -> Predictions:
    probs, flags, scores = [], [], []
    for start in range(0, len(images.labels), batch_size):
        batch = [images.decoded(i) for i in range(start, min(start + batch_size, len(images.labels)))]
        result = classifier.predict(batch)
        probs.append(result.pneumonia)
        flags.append(result.ood_flags)
        scores.append(result.ood_scores)
    empty = np.empty(0)
    return Predictions(
        labels=images.labels.numpy(),
        probs=np.concatenate(probs) if probs else empty,
        groups=images.groups,
        ood_flags=np.concatenate(flags) if flags else empty.astype(bool),
        ood_scores=np.concatenate(scores) if scores else empty,
        files=[str(sample.path) for sample in images.samples],
        attributes=sample_attributes(images),
    )


def sample_attributes(images: DecodedImages) -> dict[str, np.ndarray]:
    columns: list[str] = []
    for sample in images.samples:
        columns += [key for key in sample.attributes if key not in columns]
    return {
        column: np.array([sample.attributes.get(column, "") for sample in images.samples], dtype=object)
        for column in columns
    }
