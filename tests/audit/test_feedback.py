"""Feedback: one label per request and source, corrections, by sha256, unknown ids; a record read back."""

import hashlib

import pytest

from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.errors import InvalidInput, NotFound
from tests.audit.conftest import record, write


def statuses(outcome) -> dict[str, str]:
    return outcome.statuses


def test_posting_again_changes_nothing_and_another_label_corrects(trail: AuditTrail) -> None:
    write(trail, record("r1"))
    assert statuses(trail.add_feedback("NORMAL", request_id="r1", source="ward")) == {"r1": "created"}
    assert statuses(trail.add_feedback("NORMAL", request_id="r1", source="ward")) == {"r1": "unchanged"}
    assert statuses(trail.add_feedback("PNEUMONIA", request_id="r1", source="ward")) == {"r1": "updated"}
    assert statuses(trail.add_feedback("NORMAL", request_id="r1", source="radiology")) == {"r1": "created"}
    labels = {(f["source"], f["label"]) for f in trail.prediction("r1")["feedback"]}
    assert labels == {("ward", "PNEUMONIA"), ("radiology", "NORMAL")}


def test_no_source_is_one_source(trail: AuditTrail) -> None:
    write(trail, record("r1"))
    trail.add_feedback("NORMAL", request_id="r1")
    assert statuses(trail.add_feedback("NORMAL", request_id="r1", source="  ")) == {"r1": "unchanged"}
    assert trail.prediction("r1")["feedback"][0]["source"] == "unspecified"


def test_by_sha256_every_answered_request_of_the_input_is_labelled(trail: AuditTrail) -> None:
    same = b"the same X-ray sent twice"
    write(trail, record("first", data=same), record("second", data=same), record("other"))
    digest = hashlib.sha256(same).hexdigest()
    outcome = trail.add_feedback("PNEUMONIA", sha256=digest.upper(), source="pacs")
    assert statuses(outcome) == {"first": "created", "second": "created"}


def test_unknown_requests_and_inputs_are_not_found(trail: AuditTrail) -> None:
    write(trail, record("known"))
    with pytest.raises(NotFound):
        trail.add_feedback("NORMAL", request_id="unknown")
    with pytest.raises(NotFound):
        trail.add_feedback("NORMAL", sha256="0" * 64)
    with pytest.raises(NotFound):
        trail.prediction("unknown")


def test_a_shadow_score_alone_is_not_an_answer(trail: AuditTrail) -> None:
    write(trail, record("shadow-only", kind="shadow", version="2"))
    with pytest.raises(NotFound):
        trail.add_feedback("NORMAL", request_id="shadow-only")
    with pytest.raises(NotFound):
        trail.prediction("shadow-only")


def test_bad_labels_and_missing_keys_are_refused(trail: AuditTrail) -> None:
    write(trail, record("r1"))
    with pytest.raises(InvalidInput):
        trail.add_feedback("normal", request_id="r1")
    with pytest.raises(InvalidInput):
        trail.add_feedback("NORMAL")


def test_the_record_shows_its_shadow_and_no_paths(keeping_trail: AuditTrail) -> None:
    write(keeping_trail, record("r1", data=b"jpeg"))
    write(keeping_trail, record("r1", kind="shadow", version="2", label="NORMAL", p=0.2))
    view = keeping_trail.prediction("r1")
    assert view["kind"] == "champion" and view["model"]["version"] == "1"
    assert view["input"] == {"sha256": hashlib.sha256(b"jpeg").hexdigest(), "bytes": 4, "kept": True}
    assert [(s["model"]["version"], s["label"]) for s in view["shadow"]] == [("2", "NORMAL")]
    assert "/" not in str(view["input"]) and "path" not in str(view)
