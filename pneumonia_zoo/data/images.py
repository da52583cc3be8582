"""Decoding any X-ray file a user may have into one grey channel, at no more resolution than needed.

Big JPEGs are decoded with libjpeg's DCT scaling (`Image.draft`) to the smallest power-of-two scale
that still covers the model's input size; big 8-bit PNGs are box-reduced by an integer factor first;
16-bit scans are resized in 16 bits and only then stretched to 8 bits in float32, so no full-size
float copy is ever made. Colour stays only long enough to measure how colourful the image is (a
photograph is not an X-ray: the out-of-population guard uses it). The EXIF orientation is applied to
the reduced grey image: Pillow's `exif_transpose` copies the full-size image even when there is
nothing to turn (twice a 49-megapixel PNG's memory).
"""

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError
from pneumonia_zoo.data.raster_headers import check_structure

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "MPO"})  # MPO: multi-picture JPEGs from some cameras
_PILLOW_FORMATS = ("JPEG", "PNG")  # Pillow's JPEG opener returns an MPO when the file is one
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".dcm", ".dicom"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
DEFAULT_MAX_PIXELS = 50_000_000
_HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_COLOUR_PROBE = 64  # colourfulness is measured on a copy this small
_ORIENTATION = {  # EXIF orientation -> the transposition that shows the image upright (as ImageOps)
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class DecodedImage:
    """A grey X-ray ready to be resized to a model's input, and what was learnt decoding it."""

    image: Image.Image  # mode "L", EXIF orientation applied, possibly reduced (never below min_side)
    size: tuple[int, int]  # (width, height) as stored, before any reduction
    colourfulness: float  # Hasler-Suesstrunk colourfulness of the stored colours (0 for grey)
    format: str  # JPEG, PNG or DICOM ("cache": pixels from a training cache)
    # Set when the pixels were already resized and re-encoded at this JPEG quality (a training cache
    # made with the package's preprocessing): preprocessing then leaves them as they are.
    stored_quality: int | None = None

    @property
    def aspect_ratio(self) -> float:
        width, height = self.size
        return max(width, height) / max(1, min(width, height))


def colourfulness(rgb: Image.Image) -> float:
    """Hasler & Suesstrunk (2003): about 0 for a grey image, over 15 for most photographs."""
    probe = rgb.copy()
    probe.thumbnail((_COLOUR_PROBE, _COLOUR_PROBE), Image.Resampling.BILINEAR)
    r, g, b = np.moveaxis(np.asarray(probe, dtype=np.float32), -1, 0)
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _reduction(size: tuple[int, int], min_side: int | None) -> int:
    """The largest integer factor that keeps both sides at least `min_side`."""
    if not min_side:
        return 1
    return max(1, min(size) // min_side)


def _stretch_to_l(image: Image.Image, min_side: int | None) -> Image.Image:
    """16-bit / 32-bit / float scans: resize first (in their own depth), then map min..max to 0..255."""
    if min_side and min(image.size) > min_side:
        scale = min_side / min(image.size)
        target = (
            max(min_side, round(image.width * scale)),
            max(min_side, round(image.height * scale)),
        )
        image = image.resize(target, Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32)  # small here when min_side is given
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def _to_grey(image: Image.Image, min_side: int | None) -> tuple[Image.Image, float]:
    """Any PNG/JPEG mode -> (L image, colourfulness)."""
    if image.mode in _HIGH_BIT_MODES:
        return _stretch_to_l(image, min_side), 0.0
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "PA":
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode == "CMYK":
        image = image.convert("RGB")
    if (factor := _reduction(image.size, min_side)) > 1:
        image = image.reduce(factor)
    if image.mode in ("RGBA", "LA"):
        background = Image.new(image.mode, image.size, (0, 255) if image.mode == "LA" else (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)  # X-rays are dark outside the body
    if image.mode in ("RGB", "RGBA"):
        rgb = image.convert("RGB")
        return rgb.convert("L"), colourfulness(rgb)
    return image.convert("L"), 0.0


def _open(data: bytes) -> Image.Image:
    """Pillow's lazy image (header only), once the structure is known to be cheap to parse.

    Only the formats taken are tried: Pillow would otherwise run every plugin's parser on the bytes.
    """
    check_structure(data)
    return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)


def _refusal(prefix: bytes) -> ImageDecodeError:
    """What a file Pillow was not allowed to open is, from its signature alone (no parser runs)."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        with contextlib.suppress(Exception):
            if accept is not None and accept(prefix):
                return ImageDecodeError(f"unsupported image type {name}: upload a JPEG, PNG or DICOM file")
    return ImageDecodeError("the file is not a JPEG, PNG or DICOM image")


def _decode_raster(data: bytes, max_pixels: int, min_side: int | None) -> DecodedImage:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open(data)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLargeError(
                f"the image is {width}x{height} pixels, over the limit of {max_pixels:,} pixels"
            )
        file_format = "JPEG" if image.format == "MPO" else str(image.format)  # one of _PILLOW_FORMATS
        if file_format == "JPEG" and min_side:
            # DCT scaling inside libjpeg: 1/2, 1/4 or 1/8 of the pixels are ever produced.
            image.draft("L" if image.mode == "L" else "RGB", (min_side, min_side))
        image.load()
        turn = _ORIENTATION.get(image.getexif().get(ExifTags.Base.Orientation, 1))
        grey, colour = _to_grey(image, min_side)
        del image  # the full-size pixels go before the (small) grey image is turned
        if turn is not None:
            grey = grey.transpose(turn)
        return DecodedImage(grey, (width, height), colour, file_format)


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None, assume_dicom: bool = False
) -> DecodedImage:
    """Decode JPEG, PNG or DICOM bytes to one grey channel with EXIF orientation applied.

    `min_side`: both sides of the result stay at least this long (when the image is), but it may be
    reduced to about that: pass the largest input size the image is for. Raises ImageDecodeError for
    empty, non-image, unsupported, truncated or oversized input.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    from pneumonia_zoo.data import dicom  # pydicom is imported only for DICOM input

    if dicom.is_dicom(data) or assume_dicom:
        pixels = dicom.decode_dicom(data, max_pixels=max_pixels, assume_dicom=assume_dicom)
        height, width = pixels.shape
        grey = Image.fromarray(pixels, mode="L")
        if (factor := _reduction(grey.size, min_side)) > 1:
            grey = grey.reduce(factor)
        return DecodedImage(grey, (width, height), 0.0, "DICOM")
    try:
        return _decode_raster(data, max_pixels, min_side)
    except ImageDecodeError:  # our own, already clear
        raise
    except UnidentifiedImageError:
        raise _refusal(data[:16]) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("the image has too many pixels (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"the image is truncated or corrupt ({exc})") from None


# Bytes per pixel of each stage a mode goes through (stored, converted for compositing): the decode's peak.
_MODE_BYTES = {
    "1": 2,
    "L": 1,
    "LA": 4,
    "P": 5,
    "PA": 6,
    "RGB": 4,
    "RGBA": 8,
    "CMYK": 7,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "I;16N": 2,
    "I": 4,
    "F": 4,
}
_DICOM_BYTES_PER_PIXEL = 6  # stored uint16, a uint8 copy and LUT look-ups (measured: 246 MB for 49 MP)


def decode_cost(data: bytes, min_side: int | None = None, assume_dicom: bool = False) -> int:
    """An upper estimate of the bytes decoding `data` will hold at its peak, from the header alone.

    The service reserves this much of its memory budget before decoding, so a burst of small files
    that decode to huge images waits instead of exhausting memory. Unreadable headers cost their size:
    the decoder will refuse them at once.
    """
    from pneumonia_zoo.data import dicom

    if dicom.is_dicom(data) or assume_dicom:
        pixels, inflated = dicom.footprint(data) or (0, 0)
        return len(data) + inflated + pixels * _DICOM_BYTES_PER_PIXEL
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open(data)
            width, height, mode, file_format = image.width, image.height, image.mode, image.format
            coefficients = _coefficient_bytes(image) if image.info.get("progressive") else 0
    except Exception:  # not an image: decode_image will say so
        return len(data)
    if file_format in ("JPEG", "MPO") and min_side:
        scale = 1
        while scale < 8 and min(width, height) // (scale * 2) >= min_side:
            scale *= 2  # libjpeg's DCT scaling, as Image.draft picks it
        width, height = -(-width // scale), -(-height // scale)
    return len(data) + coefficients + width * height * _MODE_BYTES.get(mode, 8)


def _coefficient_bytes(image: Image.Image) -> int:
    """What libjpeg holds for a progressive JPEG until its last scan: every component's DCT coefficients
    at full resolution (2 bytes per sample, at the component's own sampling), whatever the DCT scaling
    (measured: 150 MB for a 49-megapixel 4:2:0 image that a 1/8 draft decodes to 2 MB)."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(h for _, h, _, _ in layers)
    v_max = max(v for _, _, v, _ in layers)
    total = 0
    for _, h, v, _ in layers:
        columns = -(-image.width * h // h_max)
        rows = -(-image.height * v // v_max)
        total += (-(-columns // 8) * 8) * (-(-rows // 8) * 8) * 2  # whole 8x8 blocks
    return total


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> DecodedImage:
    path = Path(path)
    return decode_image(
        path.read_bytes(), max_pixels, min_side, assume_dicom=path.suffix.lower() in DICOM_SUFFIXES
    )
