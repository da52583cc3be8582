"""The site head (logistic regression, C by patient-grouped CV) and the whole site fit, on synthetic
features whose answers are known."""

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from pneumonia_zoo.adaptation.features import SiteFeatures
from pneumonia_zoo.adaptation.fit import fit_site_model
from pneumonia_zoo.adaptation.head import C_GRID, _pipeline, fit_linear_head
from pneumonia_zoo.errors import InvalidInput
from pneumonia_zoo.stats.calibration import fit_temperature


def synthetic_site(patients: int = 80, per_patient: int = 2, seed: int = 0) -> SiteFeatures:
    """Two feature parts (12 'penultimate', 6 'channel statistics'); the class shows in both, on very
    different scales; every patient's images share the label and a patient effect."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(patients) % 2, per_patient)
    groups = np.repeat([f"p{i}" for i in range(patients)], per_patient)
    patient_effect = np.repeat(rng.normal(size=(patients, 18)), per_patient, axis=0)
    features = patient_effect + rng.normal(size=(len(labels), 18))
    features[:, :3] += 1.5 * labels[:, None]
    features[:, 12:] = 100 * (features[:, 12:] + 0.8 * labels[:, None])  # another scale
    return SiteFeatures(features, labels, groups, [12, 6], ["penultimate", "layer"])


def test_the_head_is_the_fitted_pipeline_with_the_scaling_folded_in() -> None:
    site = synthetic_site()
    head = fit_linear_head(site.features, site.labels, site.groups)
    # Refit on everything with the folds' penalty-to-data balance: C scaled by (k - 1) / k.
    fitted = _pipeline(head.C * (head.folds - 1) / head.folds).fit(site.features, site.labels)
    logits = head.logits(site.features)
    np.testing.assert_allclose(
        logits[:, 1] - logits[:, 0], fitted.decision_function(site.features), atol=1e-9
    )
    np.testing.assert_allclose(logits[:, 0], -logits[:, 1], atol=1e-12)  # symmetric rows
    assert head.C in C_GRID and head.cv_log_loss == min(head.grid.values()) and head.folds == 5
    assert 0.6 < head.cv_auc <= 1.0


def test_cross_validation_keeps_each_patient_in_one_fold() -> None:
    # Pure noise, every patient's image copied 6 times: folds that split a patient would score its
    # copies with a head that memorised them (an out-of-fold AUC near 1). Grouped folds cannot.
    rng = np.random.default_rng(1)
    patients = 40
    features = np.repeat(rng.normal(size=(patients, 30)), 6, axis=0)
    labels = np.repeat(np.arange(patients) % 2, 6)
    groups = np.repeat(np.arange(patients).astype(str), 6)
    head = fit_linear_head(features, labels, groups)
    assert head.cv_auc < 0.75


def test_calibration_comes_from_heads_that_never_saw_the_patient() -> None:
    site = synthetic_site()
    model = fit_site_model(site, "both", seed=3)
    # The temperature is fitted on out-of-fold predictions: refit every fold head by hand and compare.
    oof = model.head.out_of_fold
    assert oof.shape == site.labels.shape and model.figures()["site_calibration_images"] == len(oof)
    folds = StratifiedGroupKFold(n_splits=model.head.folds, shuffle=True, random_state=3)
    for train, test in folds.split(site.features, site.labels, site.groups):
        assert not set(site.groups[train]) & set(site.groups[test])
        fold_head = fit_linear_head(
            site.features[train], site.labels[train], site.groups[train], 3, (model.head.C,)
        )
        expected = 1 / (1 + np.exp(-(fold_head.logits(site.features[test]) @ [-1.0, 1.0])))
        assert np.allclose(oof[test], expected, atol=0.05)
    assert model.temperature == pytest.approx(fit_temperature(model.head.out_of_fold_logits(), site.labels))
    # The guard: Gaussians from one patient-grouped part, thresholds from the other.
    head_patients = set(site.groups[model.head_rows])
    calibration_patients = set(site.groups[model.calibration_rows])
    assert not head_patients & calibration_patients
    assert len(model.head_rows) + len(model.calibration_rows) == len(site.labels)
    assert model.prior == 0.5 and set(model.operating_points) >= {"balanced", "youden"}
    assert model.operating_points["balanced"].threshold == 0.5


def test_feature_sets() -> None:
    site = synthetic_site()
    both = fit_site_model(site, "both")
    penultimate = fit_site_model(site, "penultimate")
    assert both.head.weight.shape == (2, 18) and penultimate.head.weight.shape == (2, 12)
    # The guard always scores both parts, whatever the head reads.
    assert both.guard.dims == penultimate.guard.dims == [12, 6]
    with pytest.raises(InvalidInput, match="unknown feature set"):
        fit_site_model(site, "everything")  # type: ignore[arg-type]


def test_the_site_guard_keeps_the_site_in_and_flags_what_is_far() -> None:
    site = synthetic_site(patients=200)
    model = fit_site_model(site, "both", flag_rate=0.05)
    fresh = synthetic_site(patients=200, seed=9)
    assert model.guard.flag(fresh.features).mean() < 0.2
    far = fresh.features.copy()
    far[:, :12] += 8.0  # what the images show has moved
    assert model.guard.flag(far).mean() > 0.9
    assert model.flag_rate == 0.05


def test_float16_heads_are_what_float16_storage_holds() -> None:
    model = fit_site_model(synthetic_site(), "penultimate", float16_head=True)
    np.testing.assert_array_equal(model.head.weight.astype(np.float16).astype(np.float64), model.head.weight)


def test_too_few_patients_of_a_class_are_refused() -> None:
    site = synthetic_site(patients=6, per_patient=10)  # 3 patients of each class
    with pytest.raises(InvalidInput, match="too few NORMAL patients"):
        fit_site_model(site)


def test_a_site_package_drops_the_parents_platt_bias() -> None:
    """The site head has its own intercept and temperature: the parent's bias would shift its answers."""
    from pneumonia_zoo.adaptation.package import site_config
    from pneumonia_zoo.package.format import PackageConfig

    parent = PackageConfig(architecture="small_cnn", preprocessing=None, temperature=2.0, logit_bias=1.5)
    model = fit_site_model(synthetic_site(), "penultimate")
    config = site_config(parent, model, {}, {})
    assert config.temperature == model.temperature and config.logit_bias == 0.0
