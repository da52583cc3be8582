"""Paired comparison of two models' predictions, clinical utility and the decision-curve figure."""

import numpy as np
import pytest

from pneumonia_zoo.evaluation import plots
from pneumonia_zoo.evaluation.paired import compare_predictions
from pneumonia_zoo.evaluation.utility import clinical_utility
from pneumonia_zoo.stats.calibration import brier_score
from pneumonia_zoo.stats.paired import delong_paired, mcnemar_exact, paired_auc_bootstrap
from pneumonia_zoo.stats.utility import predictive_values
from tests.evaluation.helpers import predictions


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 100)
    groups = np.array([f"p{i // 2}" for i in range(200)])
    good = 1 / (1 + np.exp(-(3 * (labels - 0.5) + rng.normal(size=200))))
    poor = 1 / (1 + np.exp(-(0.5 * (labels - 0.5) + rng.normal(size=200))))
    return predictions(labels, good, groups), predictions(labels, poor, groups)


def test_the_paired_block(pair) -> None:
    good, poor = pair
    result = compare_predictions(good, poor, 0.5, 0.6, "models:/m/2", "models:/m@champion", bootstrap=300)
    as_json = result.to_dict()
    expected = paired_auc_bootstrap(good.labels, good.probs, poor.probs, good.groups, 300)
    assert as_json["against"] == "models:/m@champion" and as_json["model"] == "models:/m/2"
    assert as_json["delta_auc"] == pytest.approx(expected.delta) and as_json["delta_auc"] > 0
    assert as_json["delta_auc_ci"] == pytest.approx(list(expected.ci))
    assert isinstance(as_json["delta_auc_ci"], list) and len(as_json["delta_auc_ci"]) == 2
    assert as_json["p_value"] == pytest.approx(expected.p_value)
    assert "patients" in as_json["method"] and as_json["patients"] == 100 and as_json["images"] == 200
    assert as_json["delong"]["p_value"] == pytest.approx(
        delong_paired(good.labels, good.probs, poor.probs).p_value
    )
    # McNemar at each model's own threshold.
    mcnemar = mcnemar_exact(good.labels, good.probs >= 0.5, poor.probs >= 0.6)
    assert as_json["mcnemar"]["p_value"] == pytest.approx(mcnemar.p_value)
    assert as_json["mcnemar"]["only_model_correct"] == mcnemar.only_a_correct
    assert (as_json["mcnemar"]["threshold"], as_json["mcnemar"]["threshold_against"]) == (0.5, 0.6)
    flat = result.flat_metrics("external")
    assert flat["external_paired_delta_auc_ci_low"] == pytest.approx(expected.ci[0])
    # The Brier score (the champion rule's), measured by scikit-learn independently of the bootstrap.
    brier = as_json["brier"]
    assert brier["brier"] == pytest.approx(brier_score(good.labels, good.probs))
    assert brier["brier_against"] == pytest.approx(brier_score(poor.labels, poor.probs))
    assert brier["delta_brier"] == pytest.approx(brier["brier"] - brier["brier_against"])
    assert brier["delta_brier_ci"][0] <= brier["delta_brier"] <= brier["delta_brier_ci"][1] < 0
    assert brier["p_value"] < 0.05 and "patients" in brier["method"]
    assert flat["external_paired_delta_brier_ci_high"] == pytest.approx(brier["delta_brier_ci"][1])
    assert any("ΔBrier" in line for line in result.lines())


def test_different_images_cannot_be_paired(pair) -> None:
    good, poor = pair
    shifted = predictions(poor.labels[1:], poor.probs[1:], poor.groups[1:])
    with pytest.raises(ValueError, match="same images"):
        compare_predictions(good, shifted, 0.5, 0.5, "a", "b")


def test_utility_at_the_data_prevalence_and_a_given_one(pair) -> None:
    good, _ = pair
    own = clinical_utility(good, 0.5, "balanced")
    assert own is not None and own.prevalence == 0.5 and own.prevalence_source == "data"
    predicted = good.probs >= 0.5
    sensitivity, specificity = predicted[good.labels == 1].mean(), (~predicted[good.labels == 0]).mean()
    assert (own.sensitivity, own.specificity) == pytest.approx((sensitivity, specificity))
    assert (own.ppv, own.npv) == pytest.approx(predictive_values(sensitivity, specificity, 0.5))
    rare = clinical_utility(good, 0.5, "balanced", prevalence=0.05)
    assert (
        rare is not None and rare.prevalence_source == "given" and rare.ppv < own.ppv and rare.npv > own.npv
    )
    as_json = rare.to_dict()
    assert as_json["prevalence"] == 0.05 and len(as_json["decision_curve"]["net_benefit"]) == 99
    assert set(rare.flat_metrics("external")) == {
        "external_ppv",
        "external_npv",
        "external_utility_prevalence",
    }
    assert clinical_utility(predictions([1, 1], [0.2, 0.9]), 0.5, "balanced") is None  # one class


def test_the_decision_curve_figure_draws_every_curve(pair) -> None:
    good, poor = pair
    curves = {name: clinical_utility(p, 0.5, "balanced").curve for name, p in (("v2", good), ("v1", poor))}
    figure = plots.decision_curve_figure(curves, "decision curve")
    labels = [line.get_label() for line in figure.axes[0].lines]
    assert labels == ["v2", "v1", "treat all", "treat none"]
    np.testing.assert_allclose(figure.axes[0].lines[0].get_ydata(), curves["v2"].net_benefit)
    plots.plt.close(figure)
