"""The export: a manifest that evaluate and adapt read, from the kept inputs; the records otherwise."""

import csv
from pathlib import Path

from pneumonia_zoo.audit.export import MANIFEST, RECORDS, export_feedback
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.data.discovery import read_manifest
from tests.audit.conftest import record, write
from tests.conftest import FIXTURE_DATA

IMAGES = (
    sorted((FIXTURE_DATA / "test" / "NORMAL").glob("*.jpeg"))[:2]
    + sorted((FIXTURE_DATA / "test" / "PNEUMONIA").glob("*.jpeg"))[:2]
)


def answer_and_label(trail: AuditTrail) -> dict[str, str]:
    """The four fixture images answered and labelled (the first with a patient); request id -> truth."""
    truths = {}
    for index, path in enumerate(IMAGES):
        truth = path.parent.name
        write(trail, record(f"r{index}", data=path.read_bytes(), input_format="JPEG"))
        trail.add_feedback(
            truth, request_id=f"r{index}", source="pacs", patient="p-7" if index == 0 else None
        )
        truths[f"r{index}"] = truth
    write(trail, record("unlabelled", data=b"never labelled"))
    return truths


def test_kept_inputs_become_a_manifest_that_read_manifest_reads(
    keeping_trail: AuditTrail, tmp_path: Path
) -> None:
    truths = answer_and_label(keeping_trail)
    result = export_feedback(keeping_trail.engine, tmp_path / "out" / "site.csv")
    assert (result.kind, result.rows, result.without_input) == (MANIFEST, 4, 0)
    samples = read_manifest(tmp_path / "out" / "site.csv")
    assert sorted(s.class_name for s in samples) == sorted(truths.values())
    assert {s.attributes["request_id"] for s in samples} == set(truths)
    assert {s.attributes["source"] for s in samples} == {"pacs"}
    first = next(s for s in samples if s.attributes["request_id"] == "r0")
    assert first.patient == "p-7"
    assert first.path.read_bytes() == IMAGES[0].read_bytes()
    assert "manifest of 4" in result.message()


def test_the_same_input_twice_is_one_row_with_its_latest_label(
    keeping_trail: AuditTrail, tmp_path: Path
) -> None:
    data = IMAGES[0].read_bytes()
    write(keeping_trail, record("first", data=data), record("again", data=data))
    keeping_trail.add_feedback("PNEUMONIA", request_id="first")
    keeping_trail.add_feedback("NORMAL", request_id="again")
    result = export_feedback(keeping_trail.engine, tmp_path / "m.csv")
    (sample,) = read_manifest(tmp_path / "m.csv")
    assert result.rows == 1 and sample.class_name == "NORMAL"


def test_without_kept_inputs_the_records_are_exported_and_it_says_why(
    trail: AuditTrail, tmp_path: Path
) -> None:
    truths = answer_and_label(trail)
    result = export_feedback(trail.engine, tmp_path / "records.csv", keeping_inputs=False)
    assert (result.kind, result.rows) == (RECORDS, 4)
    assert "PNEUMONIA_ZOO_KEEP_INPUTS_DIR is not set" in result.message()
    with open(tmp_path / "records.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["request_id"]: row["label"] for row in rows} == truths
    assert "path" not in rows[0]


def test_inputs_past_their_retention_are_left_out_and_counted(
    keeping_trail: AuditTrail, tmp_path: Path
) -> None:
    answer_and_label(keeping_trail)
    gone = next((tmp_path / "kept").glob("*/*.jpg"))
    gone.unlink()
    result = export_feedback(keeping_trail.engine, tmp_path / "m.csv")
    assert (result.kind, result.rows, result.without_input) == (MANIFEST, 3, 1)
    assert "gone" in result.message()
    assert len(read_manifest(tmp_path / "m.csv")) == 3


def test_by_url_with_nothing_labelled(tmp_path: Path) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'a.db'}")
    trail.start()
    trail.stop()
    result = export_feedback(f"sqlite:///{tmp_path / 'a.db'}", tmp_path / "none.csv")
    assert (result.kind, result.rows) == (RECORDS, 0)
    assert "nothing is labelled yet" in result.message()
