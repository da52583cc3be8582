"""Manifests keep every column (anything can group a subgroup analysis), and split by patient."""

import math
from pathlib import Path

import pytest

from pneumonia_zoo.data.discovery import merge_duplicate_groups, read_manifest
from pneumonia_zoo.data.manifests import split_manifest, write_manifest
from pneumonia_zoo.errors import InvalidInput, UserError
from tests.site_helpers import fixture_site_manifest


@pytest.fixture
def manifest(tmp_path: Path, fixture_data: Path) -> Path:
    return fixture_site_manifest(tmp_path / "MANIFEST.csv", fixture_data)


def test_extra_columns_are_kept_in_order(manifest: Path) -> None:
    samples = read_manifest(manifest)
    assert len(samples) == 38
    first = samples[0]
    assert list(first.attributes) == ["sex", "age", "age_band", "view"]
    assert first.attributes["view"] in ("AP", "PA") and first.patient == "p0"
    # Path, label and patient are the sample's own fields, not attributes.
    assert not {"path", "label", "patient"} & set(first.attributes)
    # A sample with attributes is still hashable and compares by value.
    assert len({*samples, *read_manifest(manifest)}) == 38
    assert merge_duplicate_groups(samples)[0].attributes == first.attributes


def test_folders_give_no_attributes(fixture_data: Path) -> None:
    from pneumonia_zoo.data.discovery import list_labelled

    assert all(sample.attributes == {} for sample in list_labelled(fixture_data / "test"))


def test_write_manifest_round_trips(manifest: Path, tmp_path: Path) -> None:
    samples = read_manifest(manifest)
    copy = write_manifest(samples, tmp_path / "elsewhere" / "copy.csv")
    assert read_manifest(copy) == samples
    header = copy.read_text().splitlines()[0]
    assert header == "path,label,patient,sex,age,age_band,view"
    assert not copy.read_text().splitlines()[1].startswith("/")  # paths relative to the new manifest


def test_split_manifest_by_patient(manifest: Path, tmp_path: Path) -> None:
    result = split_manifest(
        manifest, tmp_path / "out" / "fit.csv", tmp_path / "out" / "test.csv", 1 / 3, seed=4
    )
    fit, test = read_manifest(tmp_path / "out" / "fit.csv"), read_manifest(tmp_path / "out" / "test.csv")
    everything = read_manifest(manifest)
    assert sorted(s.path for s in fit + test) == sorted(s.path for s in everything)
    assert not {s.patient for s in fit} & {s.patient for s in test}
    assert {s.label for s in test} == {0, 1} and {s.label for s in fit} == {0, 1}
    assert fit[0].attributes.keys() == everything[0].attributes.keys()
    assert result.fit.images == len(fit) and result.test.patients == len({s.patient for s in test})
    assert result.test.patients == math.ceil(len({s.patient for s in everything}) / 3)  # sklearn rounds up
    assert result.to_dict()["grouped_by"] == "patient"
    # Seeded: the same seed, the same split; another seed, another one.
    again = split_manifest(
        manifest, tmp_path / "again" / "fit.csv", tmp_path / "again" / "test.csv", 1 / 3, seed=4
    )
    assert again.test.per_class == result.test.per_class
    assert read_manifest(tmp_path / "again" / "test.csv") == test
    other = split_manifest(
        manifest, tmp_path / "other" / "fit.csv", tmp_path / "other" / "test.csv", 1 / 3, seed=5
    )
    assert read_manifest(tmp_path / "other" / "test.csv") != test and other.seed == 5


def test_bad_splits_are_refused(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="between 0 and 1"):
        split_manifest(manifest, tmp_path / "a.csv", tmp_path / "b.csv", 1.5)
    with pytest.raises(InvalidInput, match="two different files"):
        split_manifest(manifest, tmp_path / "a.csv", tmp_path / "a.csv")
