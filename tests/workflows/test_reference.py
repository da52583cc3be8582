"""Packages made by `train` keep their validation distributions of P and of the guard score: what the
live monitor measures drift against (pneumonia_zoo/audit/monitor.py)."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.package.format import PackageConfig, ReferenceDistributions
from pneumonia_zoo.package.io import read_config
from tests.conftest import store_for


def test_a_trained_package_keeps_its_validation_distributions(registered_store: str, tmp_path: Path) -> None:
    config = read_config(store_for(registered_store).download_package("1", tmp_path))
    reference = config.reference
    assert reference is not None and reference.split == "validation"
    assert sum(reference.p_pneumonia.proportions) == pytest.approx(1.0)
    assert len(reference.p_pneumonia.proportions) == len(reference.p_pneumonia.edges) + 1
    assert reference.p_pneumonia.n == int(config.metrics["val_images"])
    assert reference.guard_score is not None and reference.guard_score.n == reference.p_pneumonia.n


def test_from_scores_without_a_guard_and_round_trip() -> None:
    reference = ReferenceDistributions.from_scores(np.linspace(0, 1, 50), np.full(50, np.nan))
    assert reference.guard_score is None and reference.p_pneumonia.n == 50
    config = PackageConfig(architecture="small_cnn", preprocessing=None, reference=reference)
    assert PackageConfig.from_json(config.to_json()).reference == reference
    assert PackageConfig(architecture="small_cnn", preprocessing=None).reference is None  # older packages
    with pytest.raises(ValueError):
        ReferenceDistributions.from_scores(np.array([np.nan]), np.array([np.nan]))
