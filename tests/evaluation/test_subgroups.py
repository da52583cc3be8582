"""Subgroups: per value of any manifest column, the same metrics as the whole, patient-level intervals
where a group is large enough, a reason where it is not, and the largest gap between groups."""

import numpy as np
import pytest

from pneumonia_zoo.evaluation.subgroups import metric_name_part, subgroup_report
from pneumonia_zoo.stats.calibration import expected_calibration_error
from pneumonia_zoo.stats.classification import binary_metrics
from pneumonia_zoo.stats.intervals import cluster_bootstrap
from tests.evaluation.helpers import predictions


@pytest.fixture(scope="module")
def site():
    """120 images of 60 patients: AP films well separated, PA films barely; one tiny 'LL' group."""
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 60)
    view = np.where(np.arange(120) < 60, "AP", "PA").astype(object)
    view[[0, 1, 3]] = "LL"  # 1 NORMAL patient, 2 PNEUMONIA images
    strength = np.where(view == "AP", 3.0, 0.5)
    probs = 1 / (1 + np.exp(-(strength * (labels - 0.5) * 2 + rng.normal(size=120))))
    groups = np.array([f"p{i // 2}" for i in range(120)])
    flags = np.arange(120) % 10 == 0
    sex = ["F" if i % 4 < 2 else "M" for i in range(120)]
    sex[5] = ""  # one image without the column
    return predictions(labels, probs, groups, flags, view=list(view), sex=sex)


def test_each_group_has_the_metrics_of_its_own_images(site) -> None:
    report = subgroup_report(site, ["view", "sex"], threshold=0.5, bootstrap=200)
    assert set(report.groups) == {"view", "sex"}
    assert set(report.groups["view"]) == {"AP", "PA", "LL"}
    assert set(report.groups["sex"]) == {"F", "M", "(missing)"}
    for value in ("AP", "PA"):
        rows = site.attributes["view"] == value
        group = report.groups["view"][value]
        expected = binary_metrics(site.labels[rows], site.probs[rows], 0.5)
        assert group.n == rows.sum() and group.patients == len(set(site.groups[rows]))
        assert group.metrics["auc"] == pytest.approx(expected["auc"])
        assert group.metrics["sensitivity"] == pytest.approx(expected["sensitivity"])
        assert group.metrics["specificity"] == pytest.approx(expected["specificity"])
        assert group.metrics["ece"] == pytest.approx(
            expected_calibration_error(site.labels[rows], site.probs[rows])
        )
        assert group.metrics["flag_rate"] == pytest.approx(site.ood_flags[rows].mean())
        assert group.metrics["prevalence"] == pytest.approx(site.labels[rows].mean())
        # The intervals are evaluate's own cluster bootstrap, over this group's patients.
        found = cluster_bootstrap(
            site.labels[rows], site.probs[rows], site.groups[rows], 0.5, n_resamples=200
        )
        assert group.intervals is not None and group.intervals["auc"] == pytest.approx(found["auc"])
        assert group.large_enough and group.note is None
    assert report.groups["view"]["AP"].metrics["auc"] > report.groups["view"]["PA"].metrics["auc"]


def test_a_small_group_reports_n_and_why_it_has_no_interval(site) -> None:
    report = subgroup_report(site, ["view"], threshold=0.5, bootstrap=200)
    tiny = report.groups["view"]["LL"]
    assert tiny.n == 3 and tiny.intervals is None and not tiny.large_enough
    assert tiny.note is not None and "fewer than 5 patients" in tiny.note and "NORMAL 1" in tiny.note
    as_json = tiny.to_dict()
    assert as_json["n"] == 3 and as_json["auc_ci"] is None and as_json["note"] == tiny.note
    assert as_json["auc"] == pytest.approx(tiny.metrics["auc"])  # the point estimate is still given
    # The rule is a parameter: with 1 patient enough, the group gets intervals.
    assert subgroup_report(site, ["view"], 0.5, 200, min_patients=1).groups["view"]["LL"].intervals


def test_a_group_with_one_class_has_no_auc() -> None:
    preds = predictions([0, 0, 1, 1, 1, 1], [0.1, 0.6, 0.7, 0.8, 0.4, 0.9], view=["AP"] * 2 + ["PA"] * 4)
    group = subgroup_report(preds, ["view"], 0.5, bootstrap=50).groups["view"]["PA"]
    assert np.isnan(group.metrics["auc"]) and np.isnan(group.metrics["specificity"])
    assert group.metrics["sensitivity"] == 0.75
    assert "NORMAL absent" in group.note and group.intervals is None


def test_the_largest_gap_compares_large_enough_groups_only(site) -> None:
    report = subgroup_report(site, ["view"], threshold=0.5, bootstrap=0)
    gap = report.gaps["view"]["auc"]
    ap, pa = (report.groups["view"][v].metrics["auc"] for v in ("AP", "PA"))
    assert gap is not None and gap.highest == "AP" and gap.lowest == "PA" and gap.groups == 2
    assert gap.gap == pytest.approx(ap - pa)
    assert all(group.intervals is None for group in report.groups["view"].values())  # bootstrap 0
    single = predictions([0, 1] * 10, np.linspace(0, 1, 20), view=["AP"] * 20)
    assert subgroup_report(single, ["view"], 0.5, 0).gaps["view"]["auc"] is None


def test_json_and_flat_metrics(site) -> None:
    report = subgroup_report(site, ["view", "sex"], threshold=0.5, bootstrap=100)
    as_json = report.to_dict()
    low, high = as_json["view"]["AP"]["auc_ci"]
    assert low <= as_json["view"]["AP"]["auc"] <= high
    assert set(as_json["view"]["AP"]) >= {
        "n",
        "patients",
        "auc",
        "auc_ci",
        "sensitivity",
        "specificity",
        "ece",
    }
    assert report.gaps_dict()["view"]["auc"]["highest"] == "AP"
    flat = report.flat_metrics("external")
    assert flat["external_subgroup_view_AP_auc"] == pytest.approx(as_json["view"]["AP"]["auc"])
    assert flat["external_subgroup_view_AP_auc_ci_low"] == pytest.approx(low)
    assert flat["external_subgroup_sex_missing_n"] == 1.0
    assert "external_subgroup_gap_view_auc" in flat
    assert all(np.isfinite(value) for value in flat.values())


@pytest.mark.parametrize(
    ("text", "name"),
    [("<40", "lt40"), ("60+", "60plus"), ("40-59", "40-59"), ("(missing)", "missing"), ("a b", "a_b")],
)
def test_values_become_metric_names_mlflow_accepts(text: str, name: str) -> None:
    assert metric_name_part(text) == name


def test_an_unknown_column_is_refused(site) -> None:
    with pytest.raises(KeyError):
        subgroup_report(site, ["ward"], 0.5)
