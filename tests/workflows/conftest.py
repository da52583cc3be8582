"""A store with a site: the shipped starter as champion, and a version adapted to the fixture 'site'."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FIXTURE_DATA, store_for
from tests.site_helpers import site_images, write_rows


@dataclass(frozen=True)
class SiteStore:
    uri: str
    fit: Path  # manifest of the FIT images (variants of the fixture train/ X-rays)
    holdout: Path  # manifest of held-out files (never decodable: never decoded)
    test: Path  # manifest of the fixture test/ X-rays, with view and sex
    result: dict  # the adapted version's AdaptResult.to_dict()
    seconds: float


@pytest.fixture(scope="session")
def site_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteStore]:
    from pneumonia_zoo.workflows.adapt import adapt
    from pneumonia_zoo.workflows.starter import ensure_champion

    root = tmp_path_factory.mktemp("site-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = store_for(uri)
    assert ensure_champion(store) == "1"
    fit = write_rows(root / "fit.csv", site_images(root / "fit", FIXTURE_DATA / "train"))
    # The holdout: other patients' files that are not even images. Adapt reads their patients and
    # digests to refuse overlap; if anything decoded them, it would fail.
    holdout_rows = []
    for index in range(6):
        path = root / "holdout" / f"held-{index}.jpeg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an image " + bytes([index]))
        holdout_rows.append(
            {"path": str(path), "label": "NORMAL" if index % 2 else "PNEUMONIA", "patient": f"h{index}"}
        )
    holdout = write_rows(root / "holdout.csv", holdout_rows)
    test_rows = []
    for index, path in enumerate(sorted((FIXTURE_DATA / "test").rglob("*.jpeg"))):
        test_rows.append(
            {
                "path": str(path),
                "label": path.parent.name,
                "patient": f"t{index}",
                "view": "AP" if index % 2 else "PA",
                "sex": "F" if index % 3 else "M",
            }
        )
    test = write_rows(root / "test.csv", test_rows)
    result = adapt(store, store.champion_uri, "fixture-site", manifest=fit, holdout=holdout, quiet=True)
    yield SiteStore(uri, fit, holdout, test, result.to_dict(), result.seconds)
