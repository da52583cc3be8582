"""Writing manifests, and splitting one by patient into a FIT and a TEST manifest (a site's own data:
adapt learns from FIT, evaluate judges on TEST, and no patient is on both sides)."""

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from pneumonia_zoo.data.discovery import MANIFEST_COLUMNS, Sample, class_counts, read_manifest
from pneumonia_zoo.data.split import split_by_patient
from pneumonia_zoo.errors import InvalidInput


def write_manifest(samples: list[Sample], path: Path) -> Path:
    """A CSV that `read_manifest` reads back as `samples`: path (relative to the CSV's folder), label,
    patient, then every attribute column in the order the samples first name them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    for sample in samples:
        extra += [key for key in sample.attributes if key not in extra]
    folder = path.parent.resolve()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*MANIFEST_COLUMNS, *extra])
        for sample in samples:
            relative = Path(os.path.relpath(sample.path.resolve(), folder)).as_posix()
            writer.writerow(
                [relative, sample.class_name, sample.patient, *(sample.attributes.get(k, "") for k in extra)]
            )
    return path


@dataclass(frozen=True)
class ManifestPart:
    path: Path
    images: int
    patients: int
    per_class: dict[str, int]

    @classmethod
    def of(cls, path: Path, samples: list[Sample]) -> "ManifestPart":
        return cls(path, len(samples), len({s.patient for s in samples}), class_counts(samples))

    def to_dict(self) -> dict:
        return {"path": str(self.path), "images": self.images, "patients": self.patients} | {
            "per_class": self.per_class
        }


@dataclass(frozen=True)
class ManifestSplit:
    fit: ManifestPart
    test: ManifestPart
    seed: int
    test_fraction: float

    def to_dict(self) -> dict:
        return {
            "fit": self.fit.to_dict(),
            "test": self.test.to_dict(),
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "grouped_by": "patient",
        }


def split_manifest(
    manifest: Path, fit_out: Path, test_out: Path, test_fraction: float = 1 / 3, seed: int = 0
) -> ManifestSplit:
    """Split `manifest` by patient (stratified, seeded) into two manifests with the same columns."""
    if Path(fit_out).resolve() == Path(test_out).resolve():
        raise InvalidInput("the FIT and TEST manifests must be two different files")
    samples = read_manifest(manifest)
    fit, test = split_by_patient(samples, test_fraction, seed)
    write_manifest(fit, fit_out)
    write_manifest(test, test_out)
    return ManifestSplit(ManifestPart.of(fit_out, fit), ManifestPart.of(test_out, test), seed, test_fraction)
