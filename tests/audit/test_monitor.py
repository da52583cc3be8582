"""The monitor's figures against hand-counted ones, its window, drift against a reference, shadow pairs."""

from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.audit.trail import AuditTrail
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.drift import bin_counts, psi, reference_bins
from tests.audit.conftest import MODEL, record, write

CASES = [  # request, answered label, P, truth fed back (None: no feedback), flagged
    ("a", "PNEUMONIA", 0.91, "PNEUMONIA", False),
    ("b", "PNEUMONIA", 0.80, "NORMAL", True),
    ("c", "NORMAL", 0.30, "PNEUMONIA", False),
    ("d", "NORMAL", 0.10, "NORMAL", False),
    ("e", "NORMAL", 0.05, "NORMAL", False),
    ("f", "PNEUMONIA", 0.99, None, True),
]


@pytest.fixture
def filled(trail: AuditTrail) -> AuditTrail:
    write(trail, *[record(rid, label, p, flagged=flagged) for rid, label, p, _, flagged in CASES])
    for rid, _, _, truth, _ in CASES:
        if truth:
            trail.add_feedback(truth, request_id=rid)
    return trail


def test_figures_are_the_answers_labels_against_the_feedback(filled: AuditTrail) -> None:
    version = filled.monitor(MODEL, Window.parse("7d"))["versions"]["1"]
    assert version["predictions"] == 6 and version["labelled"] == 5
    assert version["confusion"] == {"tp": 1, "fn": 1, "tn": 2, "fp": 1}
    assert version["sensitivity"] == 0.5 and version["specificity"] == pytest.approx(2 / 3, abs=1e-4)
    labelled = [c for c in CASES if c[3]]
    expected_auc = roc_auc_score([c[3] == "PNEUMONIA" for c in labelled], [c[2] for c in labelled])
    assert version["auc"] == pytest.approx(expected_auc, abs=1e-4)
    assert version["flag_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert version["label_mix"] == {"NORMAL": 3, "PNEUMONIA": 3}
    assert version["mean_p_pneumonia"] == pytest.approx(np.mean([c[2] for c in CASES]), abs=1e-4)
    low, high = version["sensitivity_ci"]
    assert 0 <= low < 0.5 < high <= 1


def test_the_latest_label_of_a_request_counts(filled: AuditTrail) -> None:
    filled.add_feedback("PNEUMONIA", request_id="d", source="second opinion")  # d: NORMAL -> PNEUMONIA
    version = filled.monitor(MODEL, Window.parse("all"))["versions"]["1"]
    assert version["labelled"] == 5
    assert version["confusion"] == {"tp": 1, "fn": 2, "tn": 1, "fp": 1}


def test_the_window_leaves_older_records_out(trail: AuditTrail) -> None:
    write(trail, record("old", age=timedelta(days=3)), record("new"))
    assert trail.monitor(MODEL, Window.parse("24h"))["versions"]["1"]["predictions"] == 1
    assert trail.monitor(MODEL, Window.parse("4d"))["versions"]["1"]["predictions"] == 2
    assert trail.monitor(MODEL, Window.parse("all"))["versions"]["1"]["predictions"] == 2


@pytest.mark.parametrize("text", ["", "7", "7y", "-1d", "0h", "all of it", "1e3d"])
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        Window.parse(text)


def test_drift_is_the_psi_of_live_values_in_reference_bins(trail: AuditTrail) -> None:
    rng = np.random.default_rng(1)
    validation = rng.uniform(size=1000)
    edges, shares = reference_bins(validation)
    guard_edges, guard_shares = reference_bins(rng.uniform(0, 1, 1000))
    reference = {
        "p_pneumonia": {"edges": edges, "proportions": shares, "n": 1000},
        "guard_score": {"edges": guard_edges, "proportions": guard_shares, "n": 1000},
    }
    trail.remember_version(MODEL, "1", "small_cnn", reference)
    live = rng.uniform(0.6, 1.0, size=120)  # shifted to the top: an alert
    write(trail, *[record(f"r{i}", p=float(p), guard=None if i % 2 else 0.5) for i, p in enumerate(live)])
    drift = trail.monitor(MODEL, Window.parse("7d"))["versions"]["1"]["drift"]
    assert drift["p_pneumonia"]["live_counts"] == bin_counts(live, edges).tolist()
    assert drift["p_pneumonia"]["value"] == pytest.approx(psi(shares, bin_counts(live, edges)), abs=1e-4)
    assert drift["p_pneumonia"]["state"] == "alert"
    assert drift["guard_score"]["live"] == 60, "records without a guard score are left out"


def test_a_version_without_reference_says_so(trail: AuditTrail) -> None:
    trail.remember_version(MODEL, "1", "small_cnn", None)
    write(trail, record("r"))
    drift = trail.monitor(MODEL, Window.parse("7d"))["versions"]["1"]["drift"]
    assert drift == {"p_pneumonia": {"state": "no reference"}, "guard_score": {"state": "no reference"}}


def test_shadow_pairs_agreement_and_paired_figures(trail: AuditTrail) -> None:
    champion = [("a", "PNEUMONIA", 0.9), ("b", "NORMAL", 0.2), ("c", "NORMAL", 0.3), ("d", "PNEUMONIA", 0.7)]
    shadow = [("a", "PNEUMONIA", 0.8), ("b", "PNEUMONIA", 0.6), ("c", "NORMAL", 0.1), ("d", "NORMAL", 0.4)]
    write(trail, *[record(r, label, p) for r, label, p in champion])
    answered = {r: label for r, label, _ in champion}
    write(
        trail,
        *[
            record(r, label, p, kind="shadow", version="2", champion_version="1", champion_label=answered[r])
            for r, label, p in shadow
        ],
    )
    for rid, truth in (("a", "PNEUMONIA"), ("b", "NORMAL"), ("c", "NORMAL")):
        trail.add_feedback(truth, request_id=rid)
    found = trail.monitor(MODEL, Window.parse("7d"))
    (pair,) = found["shadow"]["pairs"]
    assert (pair["champion"], pair["challenger"], pair["paired"]) == ("1", "2", 4)
    assert pair["agreement"] == 0.5 and pair["labelled"] == 3
    assert pair["figures"]["1"]["specificity"] == 1.0 and pair["figures"]["2"]["specificity"] == 0.5
    assert pair["comparison"]["mcnemar"]["only_model_correct"] == 1
    # Both versions' own live figures, side by side.
    assert found["versions"]["2"]["kinds"]["shadow"] == 4 and found["versions"]["2"]["labelled"] == 3
