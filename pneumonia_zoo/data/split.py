"""Patient-grouped, label-stratified validation split and stratified subsampling."""

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pneumonia_zoo.data.discovery import Sample
from pneumonia_zoo.errors import UserError


def grouped_split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split so that no patient is on both sides and both sides keep the class balance."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError("val_fraction must be in (0, 0.5)")
    labels = np.array([s.label for s in samples])
    groups = np.array([s.patient for s in samples])
    patients_per_class = [len(set(groups[labels == label])) for label in np.unique(labels)]
    if len(patients_per_class) < 2 or min(patients_per_class) < 2:
        raise UserError("too few patients to make a validation split: each class needs at least 2")
    # Small sets: fewer folds (a larger validation share) rather than an impossible split.
    folds = max(2, min(round(1.0 / val_fraction), min(patients_per_class)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(samples)), labels, groups))
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


def stratified_subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most `limit` samples with the class balance kept (whole list when limit is None)."""
    if limit is None or limit >= len(samples):
        return samples
    labels = [s.label for s in samples]
    keep, _ = train_test_split(samples, train_size=limit, stratify=labels, random_state=seed)
    return sorted(keep, key=lambda s: str(s.path))
