"""A site's data for tests: manifests with extra columns, built from the fixture X-rays."""

import csv
from pathlib import Path

from PIL import Image, ImageOps

from pneumonia_zoo.data.discovery import patient_id


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def fixture_site_manifest(path: Path, fixture_data: Path) -> Path:
    """The 38 fixture images (absolute paths), two per patient, with sex, age, age_band and view."""
    rows = []
    for index, image in enumerate(sorted(fixture_data.rglob("*.jpeg"))):
        rows.append(
            {
                "path": str(image),
                "label": image.parent.name,
                "patient": f"p{index // 2}",
                "sex": "F" if index % 3 else "M",
                "age": str(20 + index),
                "age_band": "<40" if index < 20 else "40-59",
                "view": "AP" if index % 2 else "PA",
            }
        )
    return write_rows(path, rows)


VARIANTS = ("as_is", "mirrored", "cropped")


def _variant(image: Image.Image, variant: str) -> Image.Image:
    if variant == "mirrored":
        return ImageOps.mirror(image)
    if variant == "cropped":
        width, height = image.size
        return image.crop((width // 12, height // 12, width - width // 12, height - height // 12))
    return image


def site_images(root: Path, fixture_data: Path, variants: tuple[str, ...] = VARIANTS) -> list[dict[str, str]]:
    """Every fixture X-ray saved under root/ in each variant (one patient per source X-ray's patient):
    19 X-rays of each class, so 57 per class with the three variants. Returns manifest rows."""
    rows = []
    for source in sorted(fixture_data.rglob("*.jpeg")):
        label = source.parent.name
        grey = Image.open(source).convert("L")
        for variant in variants:
            target = root / label / f"{source.stem}-{variant}.jpeg"
            target.parent.mkdir(parents=True, exist_ok=True)
            _variant(grey, variant).save(target, quality=90)
            rows.append(
                {
                    "path": str(target),
                    "label": label,
                    "patient": patient_id(source.name),
                    "view": "AP" if variant == "mirrored" else "PA",
                }
            )
    return rows
