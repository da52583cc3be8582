"""From a `chest_xray/` folder to decoded train / val / test splits, in one call."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pneumonia_zoo.data.cache import DecodedImages, decode_all
from pneumonia_zoo.data.discovery import Sample, ValSplit, discover, merge_duplicate_groups
from pneumonia_zoo.data.split import earliest_split, grouped_split, stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError


@dataclass
class PreparedData:
    train: DecodedImages
    val: DecodedImages
    test: DecodedImages | None

    def splits(self) -> dict[str, DecodedImages]:
        named = {"train": self.train, "val": self.val}
        return named | ({"test": self.test} if self.test is not None else {})

    def file_table(self) -> pd.DataFrame:
        """One row per image used: split, path, label, patient. Saved with every run."""
        rows = [
            {"split": split, "path": str(s.path), "label": s.class_name, "patient": s.patient}
            for split, images in self.splits().items()
            for s in images.samples
        ]
        return pd.DataFrame(rows, columns=["split", "path", "label", "patient"])

    def unreadable(self) -> list[tuple[str, str]]:
        return [item for images in self.splits().values() for item in images.unreadable]

    def digest(self) -> str:
        """Identifies exactly which files went where (paths relative to the data root)."""
        table = self.file_table()
        text = "\n".join(
            f"{r.split},{Path(r.path).parent.name}/{Path(r.path).name}" for r in table.itertuples()
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def split_samples(
    root: Path, val_fraction: float, seed: int, limit: int | None, val_split: ValSplit = "random"
) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """Patient-grouped train/val from the train pool; `limit` caps the pool and the test set."""
    pool, test = discover(root)
    pool = merge_duplicate_groups(stratified_subsample(pool, limit, seed))
    if val_split == "earliest":
        train, val = earliest_split(pool, val_fraction)
    else:
        train, val = grouped_split(pool, val_fraction, seed)
    return train, val, stratified_subsample(test, limit, seed)


def prepare_data(
    root: Path,
    preprocessing: Preprocessing,
    val_fraction: float = 0.15,
    seed: int = 42,
    limit: int | None = None,
    quiet: bool = False,
    val_split: ValSplit = "random",
) -> PreparedData:
    train, val, test = split_samples(root, val_fraction, seed, limit, val_split)
    decoded = PreparedData(
        train=decode_all(train, preprocessing, "decode train", quiet),
        val=decode_all(val, preprocessing, "decode val", quiet),
        test=decode_all(test, preprocessing, "decode test", quiet) if test else None,
    )
    for name, images in decoded.splits().items():
        if len(images.labels) == 0:
            raise UserError(f"every {name} image in {root} is unreadable")
    return decoded
