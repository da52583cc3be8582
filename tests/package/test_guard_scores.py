"""The guard as the service runs it (whitened once at load, one product per part for a whole batch)
gives the scores the quadratic form gave, within 1e-6 relative, on the shipped starter package: on the
fixture images always, and on the official test split when it is present."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.package.classifier import Forwarded, load_classifier
from pneumonia_zoo.resources import STARTER_DIR
from tests.conftest import full_dataset_root
from tests.stats.test_outliers import direct_score


@pytest.fixture(scope="module")
def starter():
    return load_classifier(STARTER_DIR, runtime="onnx", threads=1)


def features_and_forwarded(classifier, paths: list[Path], batch: int = 16):
    features, ratios = [], []
    for start in range(0, len(paths), batch):
        images = [read_image(path, min_side=classifier.input_size) for path in paths[start : start + batch]]
        outputs = classifier.forward(classifier.preprocess(images))
        features.append(outputs[0].features)
        ratios.append(outputs[0].guard_ratios)
    return np.concatenate(features), np.concatenate(ratios)


def assert_scores_as_before(classifier, paths: list[Path]) -> None:
    member = classifier.members[0]
    guard = member.guard
    assert guard is not None and len(guard.parts) == 2
    assert all("whitening" in vars(part) for part in guard.parts)  # factored at load, not per request
    features, forwarded = features_and_forwarded(classifier, paths)
    bounds = np.cumsum([0, *guard.dims])
    before = (
        np.stack(
            [
                direct_score(part, features[:, a:b]) / part.threshold
                for part, a, b in zip(guard.parts, bounds[:-1], bounds[1:], strict=True)
            ],
            axis=1,
        ).max(axis=1)
        / guard.threshold
    )
    np.testing.assert_allclose(forwarded, before, rtol=1e-6)
    for part, a, b in zip(guard.parts, bounds[:-1], bounds[1:], strict=True):
        np.testing.assert_allclose(
            part.score(features[:, a:b]), direct_score(part, features[:, a:b]), rtol=1e-6
        )


def test_fixture_images(starter, fixture_data: Path) -> None:
    paths = sorted(fixture_data.rglob("*.jpeg"))
    assert len(paths) >= 30
    assert_scores_as_before(starter, paths)


def test_official_test_split(starter) -> None:
    root = full_dataset_root()
    if root is None or not (root / "test").is_dir():
        pytest.skip(
            "the official test split is not here (../shared/data/chest_xray/test or $PNEUMONIA_ZOO_DATA)"
        )
    paths = sorted((root / "test").rglob("*.jpeg"))
    assert len(paths) > 600
    assert_scores_as_before(starter, paths)


def test_a_batch_gets_the_ratios_each_image_gets_alone(starter, fixture_data: Path) -> None:
    paths = sorted(fixture_data.rglob("*.jpeg"))[:6]
    images = [read_image(path, min_side=starter.input_size) for path in paths]
    together = starter.forward(starter.preprocess(images))
    assert isinstance(together[0], Forwarded) and together[0].guard_ratios.shape == (6,)
    for row, image in enumerate(images):
        alone = starter.forward(starter.preprocess([image]))
        np.testing.assert_allclose(alone[0].guard_ratios, together[0].guard_ratios[row : row + 1], rtol=1e-5)
    # The postprocess of a runner's bare outputs (no ratios carried) scores the same.
    bare = [(output.logits, output.features) for output in together]
    np.testing.assert_allclose(
        starter.postprocess(bare, images).ood_scores,
        starter.postprocess(together, images).ood_scores,
        rtol=1e-6,
    )
