"""Paired comparison of two models on the same images: DeLong, the paired patient bootstrap, McNemar."""

import numpy as np
import pytest
from scipy.stats import norm

from pneumonia_zoo.stats.paired import (
    delong_components,
    delong_paired,
    mcnemar_exact,
    paired_auc_bootstrap,
    paired_brier_bootstrap,
)


def brute_force_placements(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 and V01 from their definition: psi = 1 if x > y, 1/2 if equal, over every pair."""
    x, y = scores[labels == 1], scores[labels == 0]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def brute_force_delta_variance(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Var(AUC_a - AUC_b) = S10 / m + S01 / n, S the (m - 1)- and (n - 1)-normalised placement covariances."""
    a10, a01 = brute_force_placements(labels, a)
    b10, b01 = brute_force_placements(labels, b)
    m, n = len(a10), len(a01)

    def cov(u: np.ndarray, v: np.ndarray, size: int) -> float:
        return float(((u - u.mean()) * (v - v.mean())).sum() / (size - 1))

    s10 = cov(a10, a10, m) + cov(b10, b10, m) - 2 * cov(a10, b10, m)
    s01 = cov(a01, a01, n) + cov(b01, b01, n) - 2 * cov(a01, b01, n)
    return s10 / m + s01 / n


def test_delong_by_hand_on_four_images() -> None:
    # Positives score 0.9, 0.4; negatives 0.6, 0.1. Pairs: (0.9 > 0.6, 0.9 > 0.1, 0.4 < 0.6, 0.4 > 0.1):
    # AUC 3/4, V10 = (1, 1/2), V01 = (1/2, 1). Model b ranks perfectly (AUC 1, constant placements).
    # Var(delta) = var(1, 1/2) / 2 + var(1/2, 1) / 2 = 1/8 + ... = 0.125 / 2 + 0.125 / 2 = 0.125.
    labels = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.4, 0.6, 0.1])
    b = np.array([0.8, 0.7, 0.2, 0.3])
    v10, v01, auc = delong_components(labels, a)
    np.testing.assert_allclose(v10, [1.0, 0.5])
    np.testing.assert_allclose(v01, [0.5, 1.0])
    assert auc == 0.75
    result = delong_paired(labels, a, b)
    assert (result.auc_a, result.auc_b, result.delta) == (0.75, 1.0, -0.25)
    assert result.variance == pytest.approx(0.125)
    assert result.z == pytest.approx(-0.25 / np.sqrt(0.125))
    assert result.p_value == pytest.approx(2 * norm.sf(0.25 / np.sqrt(0.125)))
    half = norm.ppf(0.975) * np.sqrt(0.125)
    assert result.ci == pytest.approx((-0.25 - half, -0.25 + half))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_the_brute_force_placements_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 80)
    a = np.round(labels * 0.8 + rng.normal(size=80), 1)  # rounded: many ties, within and across classes
    b = np.round(labels * 0.3 + 0.5 * a + rng.normal(size=80), 1)
    for scores in (a, b):
        v10, v01, auc = delong_components(labels, scores)
        expected10, expected01 = brute_force_placements(labels, scores)
        np.testing.assert_allclose(v10, expected10, atol=1e-12)
        np.testing.assert_allclose(v01, expected01, atol=1e-12)
        assert auc == pytest.approx(expected10.mean())
    assert delong_paired(labels, a, b).variance == pytest.approx(brute_force_delta_variance(labels, a, b))


def test_delong_of_one_ranking_twice_is_no_difference() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.7, 0.4, 0.5, 0.9, 0.2])
    result = delong_paired(labels, scores, np.log(scores))  # a monotone transform: the same ranking
    assert result.delta == 0 and result.variance == 0 and result.p_value == 1.0


def test_mcnemar_textbook_example() -> None:
    # Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91: 1 and 7 discordant pairs give the
    # exact conditional p = 2 * (C(8,0) + C(8,1)) / 2^8 = 0.0703.
    labels = np.ones(8 + 5 + 2, dtype=int)
    # 1 image only a gets right, 7 only b gets right, 5 both right, 2 both wrong.
    a = np.array([1] + [0] * 7 + [1] * 5 + [0] * 2)
    b = np.array([0] + [1] * 7 + [1] * 5 + [0] * 2)
    result = mcnemar_exact(labels, a, b)
    assert (result.only_a_correct, result.only_b_correct, result.both_correct, result.both_wrong) == (
        1,
        7,
        5,
        2,
    )
    assert result.p_value == pytest.approx(18 / 256)
    assert mcnemar_exact(labels, b, a).p_value == pytest.approx(18 / 256)


def test_mcnemar_without_discordant_images_is_one() -> None:
    labels = np.array([0, 1, 1])
    assert mcnemar_exact(labels, [0, 1, 0], [0, 1, 0]).p_value == 1.0
    assert mcnemar_exact(labels, [1, 1, 1], [0, 0, 0]).p_value == 1.0  # one discordant each way


def test_paired_bootstrap_draws_one_resample_for_both_models() -> None:
    # b is a monotone transform of a: every resample gives both the same AUC, so the interval is exactly
    # [0, 0]. Independent draws for the two models would spread it.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 120)
    a = labels + rng.normal(size=120)
    result = paired_auc_bootstrap(labels, a, np.exp(a), np.arange(120), n_resamples=300)
    assert result.delta == 0 and result.ci == (0.0, 0.0) and result.p_value == 1.0


def test_paired_bootstrap_resamples_patients_not_images() -> None:
    # Every patient's image duplicated 3 times: AUC is unchanged by duplication, and resampling patients
    # draws the same patients as resampling the single images did, so the result is identical; an image
    # bootstrap would treat the copies as independent and narrow the interval.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    a, b = labels + rng.normal(size=60), 0.4 * labels + rng.normal(size=60)
    single = paired_auc_bootstrap(labels, a, b, np.arange(60), n_resamples=400, seed=3)
    tripled = paired_auc_bootstrap(
        np.repeat(labels, 3), np.repeat(a, 3), np.repeat(b, 3), np.repeat(np.arange(60), 3), 400, seed=3
    )
    assert tripled.delta == pytest.approx(single.delta)
    assert tripled.ci == pytest.approx(single.ci)
    assert tripled.p_value == pytest.approx(single.p_value)
    as_images = paired_auc_bootstrap(
        np.repeat(labels, 3), np.repeat(a, 3), np.repeat(b, 3), np.arange(180), 400, seed=3
    )
    assert as_images.ci[1] - as_images.ci[0] < 0.8 * (single.ci[1] - single.ci[0])


def test_paired_bootstrap_finds_a_real_difference_and_agrees_with_delong() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 400)
    noise = rng.normal(size=400)
    good, poor = 2.0 * labels + noise, 0.3 * labels + noise + rng.normal(size=400)
    result = paired_auc_bootstrap(labels, good, poor, np.arange(400), n_resamples=1000)
    delong = delong_paired(labels, good, poor)
    assert result.delta == pytest.approx(delong.delta) and result.delta > 0.2
    assert 0 < result.ci[0] < result.delta < result.ci[1]
    assert result.p_value < 0.01 and delong.p_value < 0.001
    # With independent images both intervals estimate the same spread.
    assert result.ci[1] - result.ci[0] == pytest.approx(delong.ci[1] - delong.ci[0], rel=0.2)
    # No difference: a p-value far from 0 and an interval around 0.
    same = paired_auc_bootstrap(labels, good, good + 1e-3 * rng.normal(size=400), np.arange(400), 500)
    assert same.ci[0] <= 0 <= same.ci[1] and same.p_value > 0.05


def test_one_class_is_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        paired_auc_bootstrap(np.ones(5), np.arange(5), np.arange(5), np.arange(5))
    with pytest.raises(ValueError, match="both classes"):
        delong_paired(np.zeros(5), np.arange(5), np.arange(5))


def test_delong_auc_is_the_mann_whitney_auc_inside_its_interval() -> None:
    from sklearn.metrics import roc_auc_score

    from pneumonia_zoo.stats.paired import delong_auc

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = labels * 0.8 + rng.normal(size=300)
    auc, (low, high) = delong_auc(labels, scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores))
    assert 0 <= low < auc < high <= 1
    one_class, interval = delong_auc(np.ones(5), np.arange(5))
    assert np.isnan(one_class) and all(np.isnan(interval))


def test_paired_brier_by_hand_and_resampled_by_patient() -> None:
    # Two patients, two images each. a: squared errors (0.01, 0.04 | 0.09, 0.16), b: (0.04, 0.04 | 0.25,
    # 0.25): Brier 0.075 against 0.145, Δ -0.07. A resample draws patients, so its Δ is one of three
    # patient mixes, -0.015 (patient 1 twice), -0.07 or -0.125 (patient 2 twice): the interval stays
    # inside [-0.125, -0.015]. Drawing images instead reaches 0 (image 2 alone) and -0.16 (image 3).
    labels = np.array([1, 0, 1, 0])
    a = np.array([0.9, 0.2, 0.7, 0.4])
    b = np.array([0.8, 0.2, 0.5, 0.5])
    result = paired_brier_bootstrap(labels, a, b, np.array(["p1", "p1", "p2", "p2"]), n_resamples=400)
    assert (result.value_a, result.value_b) == pytest.approx((0.075, 0.145))
    assert result.delta == pytest.approx(-0.07) and result.metric == "brier"
    assert -0.125 - 1e-9 <= result.ci[0] < result.ci[1] <= -0.015 + 1e-9
    assert result.to_dict()["delta_brier"] == pytest.approx(-0.07)
    by_image = paired_brier_bootstrap(labels, a, b, np.arange(4), n_resamples=400)
    assert by_image.ci[0] < -0.125 or by_image.ci[1] > -0.015


def test_paired_brier_finds_a_real_difference_and_not_a_false_one() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 400)
    sharp = 1 / (1 + np.exp(-(4 * (labels - 0.5) + rng.normal(size=400))))
    vague = 1 / (1 + np.exp(-(1 * (labels - 0.5) + rng.normal(size=400))))
    better = paired_brier_bootstrap(labels, sharp, vague, np.arange(400), n_resamples=500)
    assert better.ci[0] <= better.delta <= better.ci[1] < 0 and better.p_value < 0.01
    # Swapped: the same difference with the other sign.
    worse = paired_brier_bootstrap(labels, vague, sharp, np.arange(400), n_resamples=500)
    assert worse.delta == pytest.approx(-better.delta) and worse.ci[0] > 0
    # A copy with noise far below the difference between images: no difference found.
    jittered = np.clip(sharp + 1e-3 * rng.normal(size=400), 0, 1)
    same = paired_brier_bootstrap(labels, sharp, jittered, np.arange(400), n_resamples=500)
    assert same.ci[0] <= 0 <= same.ci[1] and same.p_value > 0.05


def test_paired_brier_keeps_patients_together() -> None:
    # Each patient's image tripled: resampling patients reproduces the single-image result exactly; treating
    # the copies as independent images narrows the interval.
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 80)
    a = 1 / (1 + np.exp(-(3 * (labels - 0.5) + rng.normal(size=80))))
    b = 1 / (1 + np.exp(-(2 * (labels - 0.5) + rng.normal(size=80))))
    single = paired_brier_bootstrap(labels, a, b, np.arange(80), 400, seed=2)
    tripled = [np.repeat(x, 3) for x in (labels, a, b)]
    by_patient = paired_brier_bootstrap(*tripled, np.repeat(np.arange(80), 3), 400, seed=2)
    assert by_patient.ci == pytest.approx(single.ci) and by_patient.delta == pytest.approx(single.delta)
    by_image = paired_brier_bootstrap(*tripled, np.arange(240), 400, seed=2)
    assert by_image.ci[1] - by_image.ci[0] < 0.8 * (single.ci[1] - single.ci[0])


def test_paired_brier_refuses_scores_that_are_not_probabilities() -> None:
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        paired_brier_bootstrap(labels, np.array([0.1, 2.0, 0.2, 0.9]), np.full(4, 0.5), np.arange(4))
