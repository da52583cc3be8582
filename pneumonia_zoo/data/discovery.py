"""Finding the images of Kaggle's `chest_xray/` layout and who they belong to."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.images import IMAGE_SUFFIXES
from pneumonia_zoo.errors import UserError

_PERSON = re.compile(r"^person(\d+)_", re.IGNORECASE)
# IM-0115-0001 and NORMAL2-IM-0115-0001 are merged on purpose: the two series' numbering may
# overlap in people, and merging can only prevent leakage, never cause it.
_NORMAL = re.compile(r"^(?:NORMAL2-)?IM-(\d+)-", re.IGNORECASE)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into CLASS_NAMES
    patient: str

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


def patient_id(filename: str) -> str:
    """The patient a Kermany file name belongs to; unknown names are their own patient."""
    if match := _PERSON.match(filename):
        return f"person{int(match.group(1))}"
    if match := _NORMAL.match(filename):
        return f"normal{int(match.group(1))}"
    return f"file:{Path(filename).stem}"


def list_split(root: Path, split: str) -> list[Sample]:
    """Every image under root/split/{NORMAL,PNEUMONIA}, sorted for reproducibility."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise UserError(f"no '{split}' folder in {root}: expected Kaggle's chest_xray/ layout")
    samples: list[Sample] = []
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = split_dir / class_name
        if not class_dir.is_dir():
            raise UserError(f"missing class folder {class_dir} (expected NORMAL/ and PNEUMONIA/)")
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        samples += [Sample(path, label, patient_id(path.name)) for path in files]
    if not samples:
        raise UserError(f"no .jpeg/.jpg/.png images in {split_dir}")
    return samples


def discover(root: Path) -> tuple[list[Sample], list[Sample]]:
    """(train pool, test): train with the official val/ merged in, and test if present."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    pool = list_split(root, "train")
    if (root / "val").is_dir():
        pool += list_split(root, "val")
    test = list_split(root, "test") if (root / "test").is_dir() else []
    return pool, test


def merge_duplicate_groups(samples: list[Sample]) -> list[Sample]:
    """Give byte-identical files one patient, so a copy can never sit on both sides of a split."""
    first_patient: dict[str, str] = {}
    merged = []
    for sample in samples:
        digest = hashlib.sha1(sample.path.read_bytes()).hexdigest()
        patient = first_patient.setdefault(digest, sample.patient)
        merged.append(Sample(sample.path, sample.label, patient))
    return merged
