"""Training-time augmentation on cached uint8 images (1 x S x S), teaching invariance to how an X-ray
was acquired, stored and scaled, not only to small shifts.

In the order an image meets them on its way to us: pose (affine), the squash of its aspect ratio to a
square, exposure (gamma, contrast, brightness), detector noise, the scanner's sharpening or blur,
down-scaling by whoever exported it, and JPEG compression at any quality (the dataset's own copies were
saved at about quality 75, and a model can learn those artefacts instead of the lungs). Flips are off by
default: chest anatomy (heart on the left) is not mirror-symmetric.
"""

import math
import random
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

if TYPE_CHECKING:  # torch and torchvision load only when an augmentation is made, not to validate options
    import torch


class AugmentParams(BaseModel):
    """Probabilities and ranges; each is a `--aug-*` option of `pneumonia-zoo train`, logged as a param."""

    model_config = {"extra": "forbid", "frozen": True}

    affine_degrees: float = Field(7.0, ge=0, le=45, description="Random rotation, degrees either way.")
    affine_translate: float = Field(0.05, ge=0, le=0.5, description="Random shift, share of the side.")
    affine_scale: float = Field(0.1, ge=0, lt=1, description="Random zoom, +- this share.")
    aspect_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Probability of stretching the width alone (the squash of an original's aspect ratio).",
    )
    aspect_log_range: float = Field(0.25, ge=0, le=1, description="Width x [exp(-r), exp(r)], height kept.")
    gamma_p: float = Field(0.5, ge=0, le=1, description="Probability of a random gamma (exposure curve).")
    gamma_log_range: float = Field(0.35, ge=0, le=2, description="Gamma in [exp(-r), exp(r)].")
    contrast_p: float = Field(0.5, ge=0, le=1, description="Probability of a contrast/brightness change.")
    contrast_range: float = Field(0.25, ge=0, lt=1, description="Contrast x[1-r, 1+r], brightness +-r/3.")
    noise_p: float = Field(0.25, ge=0, le=1, description="Probability of Gaussian detector noise.")
    noise_std: float = Field(
        0.03, ge=0, le=0.5, description="Noise standard deviation, up to this share of the range."
    )
    blur_p: float = Field(0.2, ge=0, le=1, description="Probability of a Gaussian blur (sigma 0.3-1.3 px).")
    sharpen_p: float = Field(0.15, ge=0, le=1, description="Probability of sharpening (factor 1.5-3).")
    rescale_p: float = Field(0.5, ge=0, le=1, description="Probability of scaling down and back up.")
    rescale_min: float = Field(0.35, gt=0, le=1, description="Smallest down-scale, share of the side.")
    jpeg_p: float = Field(0.75, ge=0, le=1, description="Probability of JPEG re-compression.")
    jpeg_quality_min: int = Field(30, ge=1, le=100, description="Lowest JPEG quality.")
    jpeg_quality_max: int = Field(95, ge=1, le=100, description="Highest JPEG quality.")
    horizontal_flip: bool = Field(
        False, description="Random horizontal flips (off: anatomy is not symmetric)."
    )


class RobustAugmentation:
    """Callable on one uint8 C x S x S tensor; draws from Python's `random` (seeded per run)."""

    def __init__(self, params: AugmentParams) -> None:
        import torchvision.transforms.v2.functional as functional
        from torchvision.transforms import v2

        self.params, self.F = params, functional
        p = params
        self.affine = v2.RandomAffine(
            degrees=p.affine_degrees,
            translate=(p.affine_translate, p.affine_translate),
            scale=(1 - p.affine_scale, 1 + p.affine_scale),
        )

    def __call__(self, image: "torch.Tensor") -> "torch.Tensor":
        p, F = self.params, self.F
        image = self.affine(image)
        if p.aspect_p and random.random() < p.aspect_p:  # no draw when off: older runs' draws unchanged
            image = self._stretch_width(image)
        if p.horizontal_flip and random.random() < 0.5:
            image = F.horizontal_flip(image)
        image = self._exposure_and_noise(image)
        roll = random.random()
        if roll < p.blur_p:
            image = F.gaussian_blur(image, [5, 5], [random.uniform(0.3, 1.3)] * 2)
        elif roll < p.blur_p + p.sharpen_p:
            image = F.adjust_sharpness(image, random.uniform(1.5, 3.0))
        if random.random() < p.rescale_p:
            side = image.shape[-1]
            small = max(8, int(side * random.uniform(p.rescale_min, 0.95)))
            image = F.resize(F.resize(image, [small, small], antialias=True), [side, side], antialias=True)
        if random.random() < p.jpeg_p:
            image = F.jpeg(image, random.randint(p.jpeg_quality_min, p.jpeg_quality_max))
        return image

    def _stretch_width(self, image: "torch.Tensor") -> "torch.Tensor":
        """The anatomy wider or narrower, the side kept (cropped, or padded with black as the affine does).

        Images are squashed to a square whatever their aspect ratio, and in Kermany's train split the
        originals' aspect ratios differ by class (NORMAL median 1.18, PNEUMONIA 1.45 in fullres_train/):
        without this, the squash itself is a cue to the label that other sites do not share."""
        side, log_range = image.shape[-1], self.params.aspect_log_range
        width = max(8, round(side * math.exp(random.uniform(-log_range, log_range))))
        return self.F.center_crop(self.F.resize(image, [side, width], antialias=True), [side, side])

    def _exposure_and_noise(self, image: "torch.Tensor") -> "torch.Tensor":
        import torch

        p = self.params
        use_gamma = random.random() < p.gamma_p
        use_contrast = random.random() < p.contrast_p
        use_noise = random.random() < p.noise_p
        if not (use_gamma or use_contrast or use_noise):
            return image
        x = image.float() / 255.0
        if use_gamma:
            x = x.clamp_min(1e-4) ** math.exp(random.uniform(-p.gamma_log_range, p.gamma_log_range))
        if use_contrast:
            mean = x.mean()
            factor = random.uniform(1 - p.contrast_range, 1 + p.contrast_range)
            shift = random.uniform(-p.contrast_range / 3, p.contrast_range / 3)
            x = (x - mean) * factor + mean + shift
        if use_noise:
            x = x + torch.randn_like(x) * random.uniform(0.0, p.noise_std)
        return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)
