"""The perturbations behind the robust_* metrics: each changes what it says and nothing else."""

import numpy as np
from PIL import Image

from pneumonia_zoo.evaluation.robustness import PERTURBATIONS, ROBUSTNESS_LABELS


def xray_like(width: int = 100, height: int = 80) -> Image.Image:
    """Grey levels that differ in every column and row, nothing black: where a pixel came from shows."""
    x = np.arange(width)[None, :] * 2 + np.arange(height)[:, None]
    return Image.fromarray((x % 200 + 20).astype(np.uint8), mode="L")


def test_cropping_the_sides_keeps_the_middle_and_the_height() -> None:
    image = xray_like()
    decoded = PERTURBATIONS["width0.8"][1](image)
    out = np.asarray(decoded.image)
    assert out.shape == (80, 80) and decoded.size == (80, 80)
    assert np.array_equal(out, np.asarray(image)[:, 10:90])  # 10 columns off each side


def test_padding_the_sides_adds_black_columns_only() -> None:
    image = xray_like()
    out = np.asarray(PERTURBATIONS["width1.25"][1](image).image)
    assert out.shape == (80, 125)
    left = (125 - 100) // 2
    assert not out[:, :left].any() and not out[:, left + 100 :].any()
    assert np.array_equal(out[:, left : left + 100], np.asarray(image))


def test_every_perturbation_has_a_card_label_under_its_metric_prefix() -> None:
    assert set(ROBUSTNESS_LABELS) == {"robust_originals"} | {f"robust_{name}" for name in PERTURBATIONS}
    assert {"jpeg30", "scale0.5", "scale2", "width0.8", "width1.25"} <= set(PERTURBATIONS)
    image = xray_like()
    for name, (_, perturb) in PERTURBATIONS.items():
        decoded = perturb(image)
        assert decoded.image.mode == "L" and decoded.image.size == decoded.size, name
