"""The whole loop on a real new site (../shared/data/external_nih_site: 300 NIH adults): split by patient,
adapt the starter on FIT, evaluate on TEST by view and sex against the champion, and the promotion guard.

The figures asserted are the ones this deterministic loop gives at seed 0 (see benchmarks/adapt.py for
five seeds); the thresholds sit well below them, so they fail only if the method breaks."""

import json

import pytest

from pneumonia_zoo.data.discovery import read_manifest
from pneumonia_zoo.data.manifests import split_manifest
from pneumonia_zoo.errors import InvalidInput
from tests.conftest import SHARED_DATA, store_for

NIH = SHARED_DATA / "external_nih_site"
CHAMPION = "models:/pneumonia-classifier@champion"

pytestmark = pytest.mark.skipif(
    not (NIH / "MANIFEST.csv").is_file(),
    reason="external_nih_site not found at ../shared/data (data not shipped)",
)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pneumonia_zoo.workflows.adapt import adapt
    from pneumonia_zoo.workflows.evaluate import run_evaluation
    from pneumonia_zoo.workflows.starter import ensure_champion

    root = tmp_path_factory.mktemp("nih")
    store = store_for(f"sqlite:///{root / 'mlflow.db'}")
    ensure_champion(store)
    split = split_manifest(NIH / "MANIFEST.csv", root / "fit.csv", root / "test.csv", 1 / 3, seed=0)
    adapted = adapt(store, CHAMPION, "nih", manifest=root / "fit.csv", holdout=root / "test.csv", quiet=True)
    evaluation = run_evaluation(
        store,
        f"models:/pneumonia-classifier/{adapted.version}",
        None,
        root / "test.csv",
        bootstrap=500,
        quiet=True,
        by=["view", "sex"],
        against=CHAMPION,
    )
    champion = run_evaluation(
        store, CHAMPION, None, root / "test.csv", bootstrap=0, quiet=True, by=["view", "sex"]
    )
    return {
        "root": root,
        "store": store,
        "split": split,
        "adapted": adapted,
        "output": json.loads(json.dumps(evaluation.to_dict(), default=float)),
        "champion": champion.to_dict(),
    }


def test_split_keeps_patients_apart(loop) -> None:
    fit, test = read_manifest(loop["root"] / "fit.csv"), read_manifest(loop["root"] / "test.csv")
    assert len(fit) + len(test) == 300 and not {s.patient for s in fit} & {s.patient for s in test}
    assert set(fit[0].attributes) == {"sex", "age", "age_band", "view", "findings"}


def test_the_adapted_version_beats_the_champion_on_other_patients(loop) -> None:
    store, adapted, output = loop["store"], loop["adapted"], loop["output"]
    assert store.champion_version() == "1" and adapted.version == "2"
    assert output["metrics"]["auc"] > 0.68 and loop["champion"]["metrics"]["auc"] < 0.55
    assert output["out_of_population"]["flag_rate"] <= 0.10  # the champion flags almost all of them
    assert loop["champion"]["out_of_population"]["flag_rate"] > 0.8
    assert 0 <= output["calibration"]["ece"] < 0.25
    low, high = output["paired"]["delta_auc_ci"]
    assert 0 < low < output["paired"]["delta_auc"] < high  # paired interval above 0
    assert output["paired"]["against_version"] == "1"


def test_subgroups_by_view_and_sex(loop) -> None:
    for output in (loop["output"], loop["champion"]):
        groups = output["subgroups"]
        for column, value in (("view", "AP"), ("view", "PA"), ("sex", "F"), ("sex", "M")):
            assert 0 <= groups[column][value]["auc"] <= 1, (column, value)
            assert len(groups[column][value]["auc_ci"] or []) in (0, 2)
        assert output["subgroup_gaps"]["view"]["auc"]["gap"] >= 0


def test_the_promotion_guard_refuses_a_version_shown_worse(loop) -> None:
    from pneumonia_zoo.workflows.paired import check_not_worse

    store = store_for(loop["store"].uri)
    test = loop["root"] / "test.csv"
    assert check_not_worse(store, "models:/pneumonia-classifier/2", None, test, bootstrap=500) is not None
    store.set_alias("2")  # the adapted version as champion: the starter is now the candidate
    try:
        with pytest.raises(InvalidInput, match="version 1 is worse than the champion .version 2."):
            check_not_worse(store, "models:/pneumonia-classifier/1", None, test, margin=0.05, bootstrap=500)
    finally:
        store.set_alias("1")
