"""The robust augmentations: each does what it says, within its options, on one grey channel."""

import math
import random

import pytest
import torch
import torchvision.transforms.v2.functional as F

from pneumonia_zoo.data.augment import AugmentParams, RobustAugmentation
from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig

NOTHING = AugmentParams(
    affine_degrees=0,
    affine_translate=0,
    affine_scale=0,
    gamma_p=0,
    contrast_p=0,
    noise_p=0,
    blur_p=0,
    sharpen_p=0,
    rescale_p=0,
    jpeg_p=0,
)


@pytest.fixture
def xray(fixture_data) -> torch.Tensor:
    from pneumonia_zoo.data.cache import load_pixels
    from pneumonia_zoo.data.transforms import Preprocessing

    path = next((fixture_data / "train" / "PNEUMONIA").iterdir())
    return torch.from_numpy(load_pixels(path, Preprocessing(96))[0].copy())[None]


def test_with_everything_off_the_image_is_unchanged(xray) -> None:
    assert torch.equal(RobustAugmentation(NOTHING)(xray), xray)


def test_jpeg_recompression_at_the_drawn_quality(xray) -> None:
    params = NOTHING.model_copy(update={"jpeg_p": 1.0, "jpeg_quality_min": 30, "jpeg_quality_max": 30})
    out = RobustAugmentation(params)(xray)
    assert out.dtype == torch.uint8 and out.shape == xray.shape
    assert torch.equal(out, F.jpeg(xray, 30)) and not torch.equal(out, xray)


def test_rescaling_loses_detail_but_keeps_the_size(xray) -> None:
    params = NOTHING.model_copy(update={"rescale_p": 1.0, "rescale_min": 0.3})
    random.seed(0)
    out = RobustAugmentation(params)(xray)
    assert out.shape == xray.shape

    # Down and up again smooths: the high-frequency energy drops.
    def detail(image: torch.Tensor) -> float:
        return float((image.float().diff(dim=-1).abs()).mean())

    assert detail(out) < detail(xray)


def test_exposure_and_noise_change_pixels_within_range(xray) -> None:
    params = NOTHING.model_copy(update={"gamma_p": 1.0, "contrast_p": 1.0, "noise_p": 1.0})
    random.seed(1)
    torch.manual_seed(1)
    out = RobustAugmentation(params)(xray)
    assert out.dtype == torch.uint8 and not torch.equal(out, xray)


def test_draws_are_reproducible_from_the_seed(xray) -> None:
    augment = RobustAugmentation(AugmentParams())
    outputs = []
    for _ in range(2):
        random.seed(7)
        torch.manual_seed(7)
        outputs.append(augment(xray))
    assert torch.equal(*outputs)


def test_options_are_validated_and_logged_flat(fixture_data) -> None:
    config = TrainConfig.build(arch="small_cnn", data=fixture_data, augmentation={"jpeg_p": 0.5})
    assert config.flat()["aug_jpeg_p"] == 0.5
    assert TrainConfig.from_flat(config.flat()) == config
    with pytest.raises(UserError, match="--aug-jpeg-p"):
        TrainConfig.from_flat({"arch": "small_cnn", "data": fixture_data, "aug_jpeg_p": 2})
    with pytest.raises(UserError, match="jpeg-quality-min"):
        TrainConfig.build(
            arch="small_cnn", data=fixture_data, augmentation={"jpeg_quality_min": 90, "jpeg_quality_max": 40}
        )


def test_aspect_stretch_changes_the_width_alone(xray) -> None:
    params = NOTHING.model_copy(update={"aspect_p": 1.0, "aspect_log_range": 0.3})
    side = xray.shape[-1]
    for seed in range(6):
        random.seed(seed)
        draw = random.random(), random.uniform(-0.3, 0.3)  # the two draws the augmentation makes
        random.seed(seed)
        out = RobustAugmentation(params)(xray)
        width = round(side * math.exp(draw[1]))
        expected = F.center_crop(F.resize(xray, [side, width], antialias=True), [side, side])
        assert out.shape == xray.shape and torch.equal(out, expected)
        if width < side:  # narrower anatomy: black columns either side, the rows untouched in between
            assert out[..., : (side - width) // 2].max() == 0 and out[..., side // 2].max() > 0
    assert NOTHING.aspect_p == 0  # off unless asked: runs logged before it existed reproduce as they were


def test_the_aspect_stretch_draws_nothing_when_off(xray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Off, it takes no number from `random`: a run logged before it existed draws the same augmentations."""
    draws = []
    real = random.random
    monkeypatch.setattr(random, "random", lambda: draws.append(1) or real())
    RobustAugmentation(NOTHING)(xray)
    off = len(draws)
    RobustAugmentation(NOTHING.model_copy(update={"aspect_p": 0.5}))(xray)
    assert off == 6 and len(draws) - off == off + 1  # gamma, contrast, noise, blur, rescale, jpeg (+ aspect)
