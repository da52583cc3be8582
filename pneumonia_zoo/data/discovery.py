"""Finding the images of Kaggle's `chest_xray/` layout and who they belong to."""

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pneumonia_zoo import CLASS_NAMES
from pneumonia_zoo.data.images import IMAGE_SUFFIXES
from pneumonia_zoo.errors import UserError

_PERSON = re.compile(r"^person(\d+)_", re.IGNORECASE)
# IM-0115-0001 and NORMAL2-IM-0115-0001 are merged on purpose: the two series' numbering may
# overlap in people, and merging can only prevent leakage, never cause it.
_NORMAL = re.compile(r"^(?:NORMAL2-)?IM-(\d+)-", re.IGNORECASE)


MANIFEST_COLUMNS = ("path", "label", "patient")

# How the validation patients are drawn from the train pool (data/split.py): `random` (grouped, stratified,
# seeded) or `earliest` (each class's lowest patient numbers: Kermany numbers patients in acquisition
# order, so validation is the period before the training one, as the official test set is). Declared here,
# beside the patient ids, so that the package format can name it without importing scikit-learn.
ValSplit = Literal["random", "earliest"]


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into CLASS_NAMES
    patient: str
    # A manifest's other columns (sex, age_band, view, ...), in the manifest's order, as written there:
    # anything a subgroup analysis may group by. Empty for images found in folders.
    attributes: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


def class_counts(samples: list[Sample]) -> dict[str, int]:
    """Images per class, in CLASS_NAMES order."""
    return {name: sum(s.label == k for s in samples) for k, name in enumerate(CLASS_NAMES)}


def patient_id(filename: str) -> str:
    """The patient a Kermany file name belongs to; unknown names are their own patient."""
    if match := _PERSON.match(filename):
        return f"person{int(match.group(1))}"
    if match := _NORMAL.match(filename):
        return f"normal{int(match.group(1))}"
    return f"file:{Path(filename).stem}"


def _images_in(folder: Path) -> list[Path]:
    """Image files under `folder`, sorted; macOS resource forks (`._x.jpeg`) and hidden files skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith((".", "__MACOSX")) for part in path.relative_to(folder).parts)
    )


def list_labelled(folder: Path, require_both: bool = True) -> list[Sample]:
    """Every image under folder/{NORMAL,PNEUMONIA}/ (subfolders included), sorted for reproducibility.

    With `require_both=False` one class folder may be missing (an external set of one class).
    """
    folder = Path(folder)
    samples: list[Sample] = []
    present = [name for name in CLASS_NAMES if (folder / name).is_dir()]
    if not present or (require_both and len(present) < len(CLASS_NAMES)):
        missing = [name for name in CLASS_NAMES if name not in present]
        raise UserError(f"no {'/ and '.join(missing)}/ folder in {folder} (expected NORMAL/ and PNEUMONIA/)")
    for label, class_name in enumerate(CLASS_NAMES):
        if (folder / class_name).is_dir():
            samples += [
                Sample(path, label, patient_id(path.name)) for path in _images_in(folder / class_name)
            ]
    if not samples:
        raise UserError(f"no .jpeg/.jpg/.png/.dcm images in {folder}")
    return samples


def list_split(root: Path, split: str) -> list[Sample]:
    """Every image under root/split/{NORMAL,PNEUMONIA}."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise UserError(f"no '{split}' folder in {root}: expected Kaggle's chest_xray/ layout")
    return list_labelled(split_dir)


def dataset_root(root: Path) -> Path:
    """Kaggle's zip unpacks to chest_xray/chest_xray/ (and __MACOSX/): step into the inner folder."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist")
    inner = root / "chest_xray"
    if not (root / "train").is_dir() and (inner / "train").is_dir():
        return inner
    return root


def read_manifest(path: Path) -> list[Sample]:
    """A CSV with columns path, label (NORMAL/PNEUMONIA or 0/1) and optional patient; paths relative to it.

    Every other column is kept, stripped, in each sample's `attributes`.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise UserError(f"manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise UserError(f"manifest {path.name} needs a header with at least the columns path,label")
    samples = []
    for number, row in enumerate(rows, start=2):
        label_text = (row["label"] or "").strip().upper()
        if label_text in CLASS_NAMES:
            label = CLASS_NAMES.index(label_text)
        elif label_text in ("0", "1"):
            label = int(label_text)
        else:
            raise UserError(f"manifest {path.name} line {number}: label must be NORMAL, PNEUMONIA, 0 or 1")
        image = (path.parent / (row["path"] or "").strip()).resolve()
        if not image.is_file():
            raise UserError(f"manifest {path.name} line {number}: {row['path']} does not exist")
        patient = (row.get("patient") or "").strip() or patient_id(image.name)
        attributes = {
            key: (value or "").strip()
            for key, value in row.items()
            if key is not None and key not in MANIFEST_COLUMNS
        }
        samples.append(Sample(image, label, patient, attributes))
    return samples


def discover(root: Path) -> tuple[list[Sample], list[Sample]]:
    """(train pool, test): train with the official val/ merged in, and test if present."""
    root = dataset_root(root)
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
        merged.append(replace(sample, patient=patient))
    return merged
