import shutil
from pathlib import Path

import pytest

from pneumonia_zoo.data.discovery import discover, list_split, merge_duplicate_groups, patient_id
from pneumonia_zoo.data.pipeline import prepare_data, split_samples
from pneumonia_zoo.data.split import earliest_split, grouped_split, stratified_subsample
from pneumonia_zoo.data.transforms import Preprocessing
from pneumonia_zoo.errors import UserError


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1004_bacteria_2935.jpeg", "person1004"),
        ("person1004_virus_12.jpeg", "person1004"),
        ("person447_virus_921_1.jpeg", "person447"),
        ("IM-0115-0001.jpeg", "normal115"),
        ("NORMAL2-IM-0115-0002.jpeg", "normal115"),
        ("scan.png", "file:scan"),
    ],
)
def test_patient_ids(name: str, patient: str) -> None:
    assert patient_id(name) == patient


def test_fixture_layout_is_discovered(fixture_data: Path) -> None:
    pool, test = discover(fixture_data)
    assert len(pool) == 28 and len(test) == 10
    assert {s.class_name for s in pool} == {"NORMAL", "PNEUMONIA"}


def test_official_val_folder_is_merged_into_the_pool(fixture_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    shutil.copytree(fixture_data, root)
    shutil.copytree(root / "test", root / "val")
    pool, _ = discover(root)
    assert len(pool) == 38


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "does not exist"),
        (lambda root: (root / "train" / "NORMAL").mkdir(parents=True), "no PNEUMONIA/ folder"),
        (
            lambda root: [(root / "train" / c).mkdir(parents=True) for c in ("NORMAL", "PNEUMONIA")],
            "no .jpeg",
        ),
    ],
)
def test_bad_layouts_give_clear_errors(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(UserError, match=message):
        discover(root)


def test_split_groups_patients_and_is_seeded(full_data: Path) -> None:
    pool = list_split(full_data, "train")
    train, val = grouped_split(pool, 0.15, seed=1)
    assert not {s.patient for s in train} & {s.patient for s in val}
    assert len(train) + len(val) == len(pool)
    share = sum(s.label for s in val) / len(val)
    overall = sum(s.label for s in pool) / len(pool)
    assert abs(share - overall) < 0.03  # stratified
    assert abs(len(val) / len(pool) - 0.15) < 0.03
    again, _ = grouped_split(pool, 0.15, seed=1)
    assert [s.path for s in again] == [s.path for s in train]
    other, _ = grouped_split(pool, 0.15, seed=2)
    assert [s.path for s in other] != [s.path for s in train]


def test_byte_identical_files_share_a_patient(fixture_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    shutil.copytree(fixture_data, root)
    normal = sorted((root / "train" / "NORMAL").iterdir())
    copy = normal[0].with_name("NORMAL2-IM-9999-0001.jpeg")
    shutil.copy(normal[0], copy)
    merged = {s.path.name: s.patient for s in merge_duplicate_groups(list_split(root, "train"))}
    assert merged[copy.name] == merged[normal[0].name]


def test_stratified_subsample_keeps_balance(fixture_data: Path) -> None:
    pool, _ = discover(fixture_data)
    kept = stratified_subsample(pool, 14, seed=0)
    assert len(kept) == 14 and sum(s.label for s in kept) == 7


def test_split_samples_never_puts_a_patient_on_both_sides(fixture_data: Path) -> None:
    train, val, test = split_samples(fixture_data, 0.2, seed=3, limit=None)
    assert val and not {s.patient for s in train} & {s.patient for s in val}
    assert len(test) == 10


def _number(patient: str) -> int:
    return int("".join(ch for ch in patient if ch.isdigit()))


def test_earliest_split_holds_out_each_class_lowest_patient_numbers(fixture_data: Path) -> None:
    pool, _ = discover(fixture_data)
    train, val = earliest_split(pool, 0.2)
    assert not {s.patient for s in train} & {s.patient for s in val}
    for label in (0, 1):
        val_numbers = [_number(s.patient) for s in val if s.label == label]
        train_numbers = [_number(s.patient) for s in train if s.label == label]
        assert val_numbers and max(val_numbers) < min(train_numbers)
        # the fixture has one image per patient: 20% of 14 images per class is 3 whole patients
        assert len(val_numbers) == 3
    # numeric, not string, order: person66 is before person299 (and "person1002" < "person299" as text)
    assert {s.patient for s in val if s.label == 1} == {"person66", "person299", "person379"}


def test_earliest_split_takes_whole_patients_and_ignores_the_seed(fixture_data: Path) -> None:
    first = split_samples(fixture_data, 0.2, seed=1, limit=None, val_split="earliest")
    second = split_samples(fixture_data, 0.2, seed=2, limit=None, val_split="earliest")
    assert [s.path for s in first[1]] == [s.path for s in second[1]]
    pool, _ = discover(fixture_data)
    twin = pool[0].__class__(pool[0].path.with_name("IM-0237-0002.jpeg"), 0, "normal237")
    train, val = earliest_split([*pool, twin], 0.2)
    assert {s.path.name for s in val if s.patient == "normal237"} == {
        "IM-0237-0001.jpeg",
        "IM-0237-0002.jpeg",
    }


def test_earliest_split_without_two_patients_per_class_is_a_clear_error(fixture_data: Path) -> None:
    pool, _ = discover(fixture_data)
    one_normal = [s for s in pool if s.label == 1] + [s for s in pool if s.label == 0][:1]
    with pytest.raises(UserError, match="each class needs at least 2"):
        earliest_split(one_normal, 0.2)


def test_unreadable_files_are_skipped_and_reported(fixture_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "chest_xray"
    shutil.copytree(fixture_data, root)
    (root / "train" / "PNEUMONIA" / "person9999_virus_1.jpeg").write_bytes(b"not a jpeg")
    data = prepare_data(root, Preprocessing(32), val_fraction=0.2, seed=0, quiet=True)
    assert [Path(path).name for path, _ in data.unreadable()] == ["person9999_virus_1.jpeg"]
    assert data.train.pixels.shape[1:] == (1, 32, 32)  # one grey channel
    assert len(data.train.labels) + len(data.val.labels) == 28


def test_all_corrupt_images_is_a_clear_error(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(6):
                prefix = "IM-00" if label == "NORMAL" else "person"
                (folder / f"{prefix}{index}{'-0001' if label == 'NORMAL' else '_virus_1'}.jpeg").write_bytes(
                    f"{split}{label}{index}".encode()
                )
    with pytest.raises(UserError, match="unreadable"):
        prepare_data(tmp_path, Preprocessing(32), quiet=True)
