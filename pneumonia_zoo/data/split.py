"""Patient-grouped, label-stratified splits and stratified subsampling."""

import re
from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from pneumonia_zoo.data.discovery import Sample
from pneumonia_zoo.errors import UserError


def grouped_indices(
    labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, val): no group (patient) on both sides, both sides keeping the class balance."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError("val_fraction must be in (0, 0.5)")
    labels, groups = np.asarray(labels), np.asarray(groups)
    patients_per_class = [len(set(groups[labels == label])) for label in np.unique(labels)]
    if len(patients_per_class) < 2 or min(patients_per_class) < 2:
        raise UserError("too few patients to make a validation split: each class needs at least 2")
    # Small sets: fewer folds (a larger validation share) rather than an impossible split.
    folds = max(2, min(round(1.0 / val_fraction), min(patients_per_class)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(labels)), labels, groups))
    return train_idx, val_idx


def grouped_split(samples: list[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split so that no patient is on both sides and both sides keep the class balance."""
    labels = np.array([s.label for s in samples])
    groups = np.array([s.patient for s in samples])
    train_idx, val_idx = grouped_indices(labels, groups, val_fraction, seed)
    return [samples[i] for i in train_idx], [samples[i] for i in val_idx]


_NUMBER = re.compile(r"(\d+)")


def _acquisition_key(patient: str) -> tuple[int, int, str]:
    """Patients with a number first, in numeric order; the rest after them, by name."""
    match = _NUMBER.search(patient)
    return (0, int(match.group(1)), patient) if match else (1, 0, patient)


def earliest_split(samples: list[Sample], val_fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(train, val): per class, whole patients in acquisition order until `val_fraction` of the class's
    images are in validation. A patient with images of both classes goes where its first class puts it."""
    if not 0.0 < val_fraction < 0.5:
        raise ValueError("val_fraction must be in (0, 0.5)")
    chosen: set[str] = set()
    for label in sorted({s.label for s in samples}):
        images_of = Counter(s.patient for s in samples if s.label == label)
        wanted, taken = val_fraction * sum(images_of.values()), 0
        for patient in sorted(images_of, key=_acquisition_key):
            if taken >= wanted:
                break
            if patient not in chosen:
                chosen.add(patient)
                taken += images_of[patient]
    train = [s for s in samples if s.patient not in chosen]
    val = [s for s in samples if s.patient in chosen]
    if len({s.label for s in train}) < 2 or len({s.label for s in val}) < 2:
        raise UserError("too few patients to make a validation split: each class needs at least 2")
    return train, val


def split_by_patient(
    samples: list[Sample], test_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """(fit, test): `test_fraction` of the patients to test, stratified by whether a patient has any
    PNEUMONIA image, seeded; every image of a patient goes where the patient goes. Order is kept."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"the test fraction must lie between 0 and 1, got {test_fraction}")
    has_pneumonia: dict[str, int] = {}
    for sample in samples:
        has_pneumonia[sample.patient] = max(has_pneumonia.get(sample.patient, 0), sample.label)
    patients = sorted(has_pneumonia)
    strata = [has_pneumonia[p] for p in patients]
    if min(strata.count(0), strata.count(1)) < 2:
        raise UserError("too few patients to split: each class needs at least 2 patients")
    try:
        _, test_patients = train_test_split(
            patients, test_size=test_fraction, stratify=strata, random_state=seed
        )
    except ValueError as exc:  # a fraction that leaves a side with fewer patients than classes
        raise UserError(
            f"cannot split {len(patients)} patients at test fraction {test_fraction}: {exc}"
        ) from None
    chosen = set(test_patients)
    return [s for s in samples if s.patient not in chosen], [s for s in samples if s.patient in chosen]


def stratified_subsample(samples: list[Sample], limit: int | None, seed: int) -> list[Sample]:
    """At most `limit` samples with the class balance kept (whole list when limit is None)."""
    if limit is None or limit >= len(samples):
        return samples
    labels = [s.label for s in samples]
    keep, _ = train_test_split(samples, train_size=limit, stratify=labels, random_state=seed)
    return sorted(keep, key=lambda s: str(s.path))
