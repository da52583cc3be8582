"""The model package: round trip, runtimes agreeing, float16, ensembles, no pickles, tampering refused."""

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from pneumonia_zoo.data.images import read_image
from pneumonia_zoo.package.build import to_float16, write_ensemble
from pneumonia_zoo.package.classifier import load_classifier
from pneumonia_zoo.package.format import (
    CONFIG_FILE,
    GUARD_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    PackageConfig,
    PackageError,
)
from pneumonia_zoo.package.io import read_config, record_files
from pneumonia_zoo.stats.calibration import apply_temperature
from tests.package.helpers import POINTS, make_package

TOLERANCE = 1e-4  # the README's promise: ONNX and PyTorch agree on probabilities within this


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("package") / "single"
    make_package(directory)
    return directory


@pytest.fixture(scope="module")
def images(originals: Path, fixture_data: Path) -> list:
    paths = sorted(originals.iterdir()) + sorted((fixture_data / "test").rglob("*.jpeg"))[:4]
    return [read_image(path, min_side=64) for path in paths]


def test_round_trip_keeps_calibration_points_and_guard(package_dir: Path, images) -> None:
    classifier = load_classifier(package_dir, runtime="torch")
    config = classifier.config
    assert config.temperature == 1.7 and config.preprocessing.image_size == 48
    assert config.operating_points == POINTS and config.threshold == 0.37
    assert config.guard is not None and classifier.members[0].guard is not None
    scores = classifier.predict(images)
    assert scores.probabilities.shape == (len(images), 2)
    assert np.allclose(scores.probabilities.sum(1), 1, atol=1e-6)
    # The temperature is really applied: the probabilities are softmax(logits / 1.7) of the raw network.
    logits, _ = classifier.members[0].runner(classifier.members[0].preprocessing.batch(images))
    assert np.allclose(scores.probabilities, apply_temperature(logits, 1.7), atol=1e-6)
    assert not np.allclose(scores.probabilities, apply_temperature(logits, 1.0), atol=1e-3)


def test_export_does_not_warn_about_the_captured_layers(tmp_path: Path) -> None:
    """torch.export advises making the hooks' captured outputs buffers; it does not apply (the export
    check compares those outputs with PyTorch's), and every `train` used to print it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_package(tmp_path / "quiet")
    assert (tmp_path / "quiet" / ONNX_FILE).is_file()
    assert not [w for w in caught if "_captured" in str(w.message)]


def test_float16_keeps_the_guard_arrays_float16_cannot_hold(
    tmp_path: Path, package_dir: Path, images
) -> None:
    """The small CNN's guard has precision entries of about 3e8: rounded to float16 they were infinite,
    every score nan, and nothing was flagged. They stay float32; the means, which fit, are halved."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "overflow encountered in cast"
        make_package(tmp_path / "half", float16=True, onnx=False)
    arrays = load_file(str(tmp_path / "half" / GUARD_FILE))
    assert {k: v.dtype.name for k, v in arrays.items() if "precision" in k} == {
        "part0.precision": "float32",
        "part1.precision": "float32",
    }
    assert {v.dtype.name for k, v in arrays.items() if "means" in k} == {"float16"}
    half = load_classifier(tmp_path / "half", runtime="torch").predict(images).ood_scores
    full = load_classifier(package_dir, runtime="torch").predict(images).ood_scores
    assert np.isfinite(half).all()
    np.testing.assert_allclose(half, full, rtol=0.01)


def test_a_guard_with_infinite_values_is_refused(tmp_path: Path, package_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(package_dir, broken)
    arrays = load_file(str(broken / GUARD_FILE))
    with np.errstate(over="ignore"):  # as builds before the fix did
        arrays["part0.precision"] = arrays["part0.precision"].astype(np.float16)
    save_file(arrays, str(broken / GUARD_FILE))
    record_files(broken, read_config(broken))
    with pytest.raises(PackageError, match="infinite or nan"):  # the service warms a version up on loading it
        load_classifier(broken, runtime="torch").warm_up()


def test_onnx_and_torch_agree_on_probabilities_and_guard(package_dir: Path, images) -> None:
    torch_scores = load_classifier(package_dir, runtime="torch").predict(images)
    onnx_classifier = load_classifier(package_dir, runtime="onnx")
    assert onnx_classifier.runtime == "onnx"
    onnx_scores = onnx_classifier.predict(images)
    assert np.abs(torch_scores.probabilities - onnx_scores.probabilities).max() < TOLERANCE
    assert np.allclose(torch_scores.ood_scores, onnx_scores.ood_scores, rtol=1e-3)


def test_float16_package_is_smaller_and_its_runtimes_still_agree(package_dir: Path, tmp_path: Path, images):
    half = tmp_path / "half"
    shutil.copytree(package_dir, half)
    to_float16(half)
    assert (half / WEIGHTS_FILE).stat().st_size < 0.6 * (package_dir / WEIGHTS_FILE).stat().st_size
    # The ONNX export keeps float32 what the exporter folded (batch norm into convolutions): never larger.
    assert (half / ONNX_FILE).stat().st_size <= (package_dir / ONNX_FILE).stat().st_size
    torch_probs = load_classifier(half, runtime="torch").predict(images).probabilities
    onnx_probs = load_classifier(half, runtime="onnx").predict(images).probabilities
    assert np.abs(torch_probs - onnx_probs).max() < TOLERANCE
    full = load_classifier(package_dir).predict(images).probabilities
    assert np.abs(full - torch_probs).max() < 5e-3  # float16 rounding changes little


def test_package_holds_no_pickles(package_dir: Path) -> None:
    names = sorted(p.name for p in package_dir.iterdir())
    assert names == sorted([CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, GUARD_FILE])
    recorded = json.loads((package_dir / CONFIG_FILE).read_text())["files"]
    assert sorted(recorded) == sorted([WEIGHTS_FILE, ONNX_FILE, GUARD_FILE])
    for name in (WEIGHTS_FILE, GUARD_FILE):  # safetensors: an 8-byte length, then a JSON header
        data = (package_dir / name).read_bytes()
        header = int.from_bytes(data[:8], "little")
        assert json.loads(data[8 : 8 + header])
        assert not data.startswith(b"\x80")  # a pickle's protocol opcode


@pytest.mark.parametrize("victim", [WEIGHTS_FILE, ONNX_FILE, GUARD_FILE])
def test_tampered_or_missing_files_are_refused(package_dir: Path, tmp_path: Path, victim: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(package_dir, copy)
    data = bytearray((copy / victim).read_bytes())
    data[-10] ^= 0xFF
    (copy / victim).write_bytes(bytes(data))
    with pytest.raises(PackageError, match=f"{victim} does not match"):
        load_classifier(copy)
    (copy / victim).unlink()
    with pytest.raises(PackageError, match=f"{victim} is missing"):
        load_classifier(copy)


def test_a_folder_that_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="not a pneumonia-zoo model package"):
        load_classifier(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(PackageError, match="malformed"):
        load_classifier(tmp_path)


def test_format_1_packages_still_load(package_dir: Path, tmp_path: Path, images) -> None:
    """The previous starter's model.json: one threshold, no temperature, no guard."""
    old = tmp_path / "old"
    shutil.copytree(package_dir, old)
    values = json.loads((old / CONFIG_FILE).read_text())
    (old / GUARD_FILE).unlink()
    files = {k: v for k, v in values["files"].items() if k != GUARD_FILE}
    legacy = {
        "format_version": 1,
        "architecture": "small_cnn",
        "preprocessing": values["preprocessing"],
        "threshold": 0.61,
        "threshold_sensitivity_95": 0.3,
        "class_names": values["class_names"],
        "metrics": {},
        "info": {},
        "files": files,
    }
    (old / CONFIG_FILE).write_text(json.dumps(legacy))
    classifier = load_classifier(old)
    assert classifier.config.temperature == 1.0 and classifier.config.guard is None
    assert classifier.config.threshold == 0.61
    assert classifier.config.operating_point("sensitivity_95").threshold == 0.3
    scores = classifier.predict(images)
    assert np.isnan(scores.ood_scores).all()


def test_a_platt_bias_is_applied_and_written_as_format_3(package_dir: Path, tmp_path: Path, images) -> None:
    plain = json.loads((package_dir / CONFIG_FILE).read_text())
    assert plain["format_version"] == 2 and "logit_bias" not in plain  # no bias: format 2 as before
    biased = tmp_path / "biased"
    shutil.copytree(package_dir, biased)
    config = PackageConfig.from_json((biased / CONFIG_FILE).read_text())
    config.logit_bias = 0.9
    (biased / CONFIG_FILE).write_text(config.to_json())
    written = json.loads((biased / CONFIG_FILE).read_text())
    assert written["format_version"] == 3 and written["logit_bias"] == 0.9  # a format 2 reader refuses it
    classifier = load_classifier(biased, runtime="onnx")
    logits, _ = classifier.members[0].runner(classifier.members[0].preprocessing.batch(images))
    probabilities = classifier.predict(images).probabilities
    assert np.allclose(probabilities, apply_temperature(logits, 1.7, 0.9), atol=1e-6)
    assert not np.allclose(probabilities, apply_temperature(logits, 1.7), atol=1e-3)
    written["format_version"] = 4
    (biased / CONFIG_FILE).write_text(json.dumps(written))
    with pytest.raises(PackageError, match="unsupported model package format 4"):
        load_classifier(biased)


def test_ensemble_round_trip_averages_calibrated_members(tmp_path: Path, images) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    make_package(first, size=48, temperature=1.5, seed=1)
    make_package(second, size=64, temperature=0.8, seed=2)
    points = {"balanced": POINTS["balanced"]}
    config = write_ensemble(
        [first, second], tmp_path / "ensemble", points, None, explain_member=1, tta=[], metrics={}, info={}
    )
    assert isinstance(config, PackageConfig) and config.is_ensemble
    ensemble = load_classifier(tmp_path / "ensemble", runtime="torch")
    assert ensemble.input_size == 64 and ensemble.explain_member.config.preprocessing.image_size == 64
    members = [load_classifier(first).predict(images), load_classifier(second).predict(images)]
    expected = (members[0].probabilities + members[1].probabilities) / 2
    scores = ensemble.predict(images)
    assert np.abs(scores.probabilities - expected).max() < 1e-6
    onnx = load_classifier(tmp_path / "ensemble", runtime="onnx").predict(images)
    assert np.abs(onnx.probabilities - scores.probabilities).max() < TOLERANCE
    # Every member file is hashed in the ensemble's model.json: tampering with one is refused.
    recorded = json.loads((tmp_path / "ensemble" / CONFIG_FILE).read_text())["files"]
    assert f"members/0/{WEIGHTS_FILE}" in recorded and f"members/1/{CONFIG_FILE}" in recorded
    victim = tmp_path / "ensemble" / "members" / "1" / WEIGHTS_FILE
    victim.write_bytes(victim.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(PackageError, match="members/1/weights.safetensors does not match"):
        load_classifier(tmp_path / "ensemble")


def test_ensemble_guard_flags_on_the_largest_member_ratio(tmp_path: Path, images) -> None:
    from pneumonia_zoo.package.format import GuardConfig, PackageInfo

    make_package(tmp_path / "a", seed=1)
    make_package(tmp_path / "b", seed=2)
    singles = [load_classifier(tmp_path / name).predict(images).ood_scores for name in ("a", "b")]
    largest = np.maximum(*singles)
    threshold = float(np.median(largest))
    guard = GuardConfig(threshold=threshold, val_flag_rate=0.02)
    write_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "e", {}, guard, 0, [], {}, PackageInfo())
    scores = load_classifier(tmp_path / "e").predict(images)
    assert np.allclose(scores.ood_scores, largest / threshold, rtol=1e-5)
    # Grey X-rays of ordinary shape: only the feature guard can flag them, exactly above the threshold.
    assert (scores.ood_flags == (largest > threshold)).all() and 0 < scores.ood_flags.sum() < len(images)
