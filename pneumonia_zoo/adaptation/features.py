"""The parent's frozen features of a site's images, as its package computes them (ONNX or PyTorch)."""

from dataclasses import dataclass

import numpy as np

from pneumonia_zoo.data.cache import DecodedImages
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.package.classifier import Classifier, Member
from pneumonia_zoo.package.format import WEIGHTS_FILE
from pneumonia_zoo.zoo.architectures import get_architecture

BATCH = 32


@dataclass(frozen=True)
class SiteFeatures:
    features: np.ndarray  # N x D float64: [penultimate | guard layer channel statistics]
    labels: np.ndarray  # N, 1 = PNEUMONIA
    groups: np.ndarray  # N patients
    dims: list[int]  # widths of the two parts
    names: list[str]  # their names (penultimate, the guard layer)

    @property
    def penultimate(self) -> int:
        return self.dims[0]


def site_features(classifier: Classifier, images: DecodedImages) -> SiteFeatures:
    """One forward pass of the parent's network over `images` (the image as it is: no test-time views)."""
    if classifier.config.is_ensemble:
        raise InvalidInput("adapt needs a single model as parent, not an ensemble")
    member = classifier.members[0]
    chunks = []
    for start in range(0, len(images.labels), BATCH):
        batch = [images.decoded(i) for i in range(start, min(start + BATCH, len(images.labels)))]
        _, features = member.runner(member.preprocessing.batch(batch))
        if features is None:
            raise InvalidInput(
                "the parent's ONNX export has no features output: rebuild it (pneumonia-zoo backfill-guard)"
            )
        chunks.append(np.asarray(features, np.float64))
    features = np.concatenate(chunks)
    architecture = get_architecture(member.config.architecture)
    penultimate = _penultimate_width(member)
    return SiteFeatures(
        features=features,
        labels=images.labels.numpy().astype(int),
        groups=images.groups,
        dims=[penultimate, features.shape[1] - penultimate],
        names=["penultimate", architecture.guard_layer],
    )


def _penultimate_width(member: Member) -> int:
    """The width of the penultimate part: the guard's first part, or the network head's input."""
    guard = member.config.guard
    if guard is not None and guard.part_dims:
        return int(guard.part_dims[0])
    from safetensors import safe_open

    head = f"{get_architecture(member.config.architecture).head}.weight"
    with safe_open(str(member.directory / WEIGHTS_FILE), framework="numpy") as weights:
        return int(weights.get_slice(head).get_shape()[1])
