"""Decoding any X-ray file a user may have into an RGB PIL image, safely."""

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "MPO"})  # MPO: multi-picture JPEGs from some cameras
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})


class ImageDecodeError(ValueError):
    """The bytes are not a usable JPEG or PNG image; the message says why."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than allowed (a decompression-bomb guard)."""


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float scans: stretch the actual range to 8 bits rather than clipping.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # X-rays are dark outside the body
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int = 50_000_000) -> Image.Image:
    """Decode JPEG/PNG bytes to RGB with EXIF orientation applied.

    Raises ImageDecodeError for empty, non-image, unsupported, truncated or oversized input.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in SUPPORTED_FORMATS:
                raise ImageDecodeError(
                    f"unsupported image type {image.format or 'unknown'}: upload a JPEG or PNG"
                )
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageDecodeError:  # our own, already clear
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError("the file is not a JPEG or PNG image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("the image has too many pixels (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"the image is truncated or corrupt ({exc})") from None


def read_image(path: Path, max_pixels: int = 50_000_000) -> Image.Image:
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels)
