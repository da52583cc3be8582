"""`evaluate` on a site's own manifest: subgroups by any column, a paired comparison with another version
on the same images, clinical utility at a prevalence, all in the JSON and logged with `--log`; and the
paired table of versions and the promotion guard built on it."""

from pathlib import Path

import numpy as np
import pytest

from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.paired import paired_auc_bootstrap
from pneumonia_zoo.workflows.evaluate import log_evaluation, run_evaluation
from pneumonia_zoo.workflows.paired import check_not_worse, paired_table
from tests.conftest import registry_client, store_for

ADAPTED = "models:/pneumonia-classifier/2"
CHAMPION = "models:/pneumonia-classifier@champion"


@pytest.fixture(scope="module")
def evaluated(site_store):
    store = store_for(site_store.uri)
    return run_evaluation(
        store,
        ADAPTED,
        None,
        site_store.test,
        bootstrap=100,
        quiet=True,
        by=["view", "sex"],
        against=CHAMPION,
        prevalence=0.2,
    )


def test_subgroups_paired_and_utility_in_the_json(evaluated) -> None:
    output = evaluated.to_dict()
    assert output["model"]["version"] == "2" and output["data"]["images"] == 10
    views = output["subgroups"]["view"]
    assert set(views) == {"AP", "PA"} and set(output["subgroups"]["sex"]) == {"F", "M"}
    assert views["AP"]["n"] + views["PA"]["n"] == 10
    # Five test patients per class in all: no view has five of each, so no interval, and it says why.
    assert views["AP"]["auc_ci"] is None and "fewer than 5 patients" in views["AP"]["note"]
    assert 0 <= views["AP"]["auc"] <= 1
    assert output["subgroup_gaps"]["view"]["auc"] is None  # no group large enough to compare
    paired = output["paired"]
    assert paired["against"] == CHAMPION and paired["against_version"] == "1" and paired["model"] == ADAPTED
    low, high = paired["delta_auc_ci"]
    assert low <= paired["delta_auc"] <= high
    assert paired["delta_auc"] == pytest.approx(output["metrics"]["auc"] - paired["auc_against"])
    assert paired["mcnemar"]["threshold"] == output["operating_point"]["threshold"]
    utility = output["utility"]
    assert utility["prevalence"] == 0.2 and utility["prevalence_source"] == "given"
    assert len(utility["decision_curve"]["thresholds"]) == 99
    assert "auc" in output["metrics"] and "ece" in output["calibration"]
    assert "flag_rate" in output["out_of_population"]
    text = "\n".join(evaluated.site_lines())  # what the CLI prints
    assert (
        "PPV" in text and "view=AP: n " in text and f"against {CHAMPION}: AUC" in text and "McNemar p" in text
    )


def test_the_paired_figures_are_the_two_versions_predictions_paired(evaluated, site_store) -> None:
    store = store_for(site_store.uri)
    champion = run_evaluation(store, CHAMPION, None, site_store.test, bootstrap=0, quiet=True)
    ours, theirs = evaluated.evaluation.predictions, champion.evaluation.predictions
    assert ours.files == theirs.files
    expected = paired_auc_bootstrap(ours.labels, ours.probs, theirs.probs, ours.groups, 100)
    assert evaluated.paired.delta_auc_ci == pytest.approx(expected.ci)
    assert evaluated.paired.bootstrap.value_b == pytest.approx(champion.evaluation.metrics["auc"])


def test_log_records_subgroups_paired_utility_and_the_decision_curve(
    evaluated, site_store, tmp_path: Path
) -> None:
    store = store_for(site_store.uri)
    run = registry_client(store).get_run(log_evaluation(store, evaluated))
    metrics = run.data.metrics
    assert metrics["external_subgroup_view_AP_n"] == evaluated.subgroups.groups["view"]["AP"].n
    assert metrics["external_subgroup_view_AP_auc"] == pytest.approx(
        evaluated.subgroups.groups["view"]["AP"].metrics["auc"]
    )
    assert metrics["external_paired_delta_auc"] == pytest.approx(evaluated.paired.delta_auc)
    assert metrics["external_ppv"] == pytest.approx(evaluated.utility.ppv)
    assert run.data.tags["evaluated_against"] == evaluated.against.uri
    artifacts = {f.path for f in registry_client(store).list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/external_decision_curve.png" in artifacts
    from pneumonia_zoo.tracking.cards import stored_card

    card = stored_card(store, "2")
    assert card is not None and "AUC by subgroup: " in card and "view_AP " in card
    assert "ΔAUC against models:/pneumonia-classifier/1" in card


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["ward"]}, "no column 'ward' in manifest test.csv: group by one of view, sex"),
        ({"prevalence": 1.5}, "--prevalence must lie strictly between 0 and 1"),
    ],
)
def test_bad_options_are_refused(site_store, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        run_evaluation(
            store_for(site_store.uri), ADAPTED, None, site_store.test, bootstrap=0, quiet=True, **kwargs
        )


def test_grouping_a_folder_is_refused(site_store, fixture_data: Path) -> None:
    with pytest.raises(InvalidInput, match="--by needs a manifest"):
        run_evaluation(
            store_for(site_store.uri), ADAPTED, fixture_data / "test", bootstrap=0, quiet=True, by=["view"]
        )


def test_the_paired_table_and_the_promotion_guard(site_store) -> None:
    store = store_for(site_store.uri)
    table = paired_table(store, [ADAPTED], None, site_store.test, bootstrap=100, quiet=True)
    assert [row.version.version for row in table.rows] == ["1", "2"]
    assert table.rows[0].comparison is None and table.rows[1].comparison is not None
    as_json = table.to_dict()
    assert as_json["against"] == "models:/pneumonia-classifier/1"
    assert (
        as_json["versions"][1]["site"] == "fixture-site"
        and len(as_json["versions"][1]["paired"]["delta_auc_ci"]) == 2
    )
    assert "(reference)" in table.markdown() and "| 2 | fixture-site |" in table.markdown()
    comparison = table.rows[1].comparison
    # Each row's Brier score, and the pair's ΔBrier the difference of the two rows'.
    brier = as_json["versions"][1]["paired"]["brier"]
    assert brier["brier"] == pytest.approx(table.rows[1].brier)
    assert brier["brier_against"] == pytest.approx(table.rows[0].brier)
    assert f"{brier['delta_brier']:+.4f}" in table.markdown() and "ΔBrier" in table.markdown()
    low, high = comparison.delta_auc_ci
    # A margin wider than any possible difference never refuses; the champion is never compared to itself.
    assert check_not_worse(store, ADAPTED, None, site_store.test, margin=0.999, bootstrap=100) is not None
    assert check_not_worse(store, CHAMPION, None, site_store.test) is None
    if high < 0:  # refused at margin 0 exactly when the interval lies below 0
        with pytest.raises(InvalidInput, match="worse than the champion"):
            check_not_worse(store, ADAPTED, None, site_store.test, margin=0.0, bootstrap=100)
    else:
        assert (
            np.isfinite(low) and check_not_worse(store, ADAPTED, None, site_store.test, 0.0, 100) is not None
        )
    with pytest.raises(InvalidInput, match="margin"):
        check_not_worse(store, ADAPTED, None, site_store.test, margin=-0.1)
