"""Decoding any upload to one grey channel, DCT-scaled when big, and refusing what is not an X-ray file."""

import io

import numpy as np
import pytest
from PIL import Image

from pneumonia_zoo.data.images import (
    ImageDecodeError,
    ImageTooLargeError,
    decode_cost,
    decode_image,
    read_image,
)
from pneumonia_zoo.data.transforms import Preprocessing


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "1", "I;16"])
def test_every_mode_becomes_one_grey_channel(mode: str) -> None:
    image = (
        Image.fromarray(gradient()).convert(mode)
        if mode != "I;16"
        else Image.fromarray(gradient().astype(np.uint16) * 200)
    )
    decoded = decode_image(encode(image))
    assert decoded.image.mode == "L" and decoded.image.size == (40, 30) and decoded.size == (40, 30)
    assert decoded.format == "PNG" and decoded.colourfulness < 1.0  # grey content, whatever the mode


def test_colour_is_measured_before_it_is_dropped() -> None:
    rng = np.random.default_rng(0)
    colourful = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    decoded = decode_image(encode(Image.fromarray(colourful, "RGB"), "JPEG", quality=95))
    assert decoded.image.mode == "L" and decoded.colourfulness > 30


def test_16bit_png_is_stretched_to_the_full_8bit_range() -> None:
    array = (np.tile(np.linspace(1000, 3000, 40), (30, 1))).astype(np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(array))).image)
    assert decoded.min() == 0 and decoded.max() == 255
    assert np.all(np.diff(decoded[0].astype(int)) >= 0)  # monotonic, not wrapped


def test_a_big_16bit_scan_is_reduced_in_16_bits_first() -> None:
    rng = np.random.default_rng(1)
    smooth = np.kron(rng.integers(500, 4000, (30, 40)), np.ones((50, 50))).astype(np.uint16)  # 2000 x 1500
    data = encode(Image.fromarray(smooth))
    small = decode_image(data, min_side=224)
    assert min(small.image.size) == 224 and small.size == (2000, 1500)
    full = decode_image(data)
    reference = Preprocessing(224).pixels(full)
    assert np.abs(Preprocessing(224).pixels(small).astype(int) - reference).mean() < 2.0


def test_jpegs_are_dct_scaled_to_just_above_the_input_size(originals) -> None:
    path = originals / "IM-0061-0001.jpeg"  # 1754 x 1318
    full = read_image(path)
    scaled = read_image(path, min_side=224)
    assert full.image.size == (1754, 1318) and scaled.size == (1754, 1318)
    assert min(scaled.image.size) >= 224 and max(scaled.image.size) < 1754 / 2  # 1/4 or 1/8 of each side
    preprocessing = Preprocessing(224)
    difference = np.abs(preprocessing.pixels(scaled).astype(int) - preprocessing.pixels(full).astype(int))
    assert difference.mean() < 1.5  # grey levels; the DCT-scaled decode is nearly the full one


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(gradient(40, 20)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(encode(image, "JPEG", exif=exif))
    assert decoded.image.size == (20, 40)


@pytest.mark.parametrize("orientation", [None, 3, 6])
def test_a_big_image_is_turned_upright_after_its_reduction_never_copied_at_full_size(
    orientation: int | None, monkeypatch
) -> None:
    """Pillow's exif_transpose copies (or turns) the full-size image: twice a big PNG's memory, which
    the pixel budget's estimate (decode_cost) does not count."""
    array = gradient(3000, 2000)
    array[:100, :100] = 255  # a mark in the top-left corner, to see where it ends up
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    data = encode(Image.fromarray(array), "PNG", exif=exif)
    full_size: list[str] = []
    for name in ("copy", "transpose"):
        original = getattr(Image.Image, name)

        def spy(self, *args, _original=original, _name=name, **kwargs):
            if self.width * self.height >= 3000 * 2000:
                full_size.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Image.Image, name, spy)
    decoded = decode_image(data, min_side=224)
    assert full_size == []
    pixels = np.asarray(decoded.image)
    height, width = pixels.shape
    assert (height > width) == (orientation == 6)  # 6: turned a quarter
    corner = {None: pixels[:5, :5], 3: pixels[-5:, -5:], 6: pixels[:5, -5:]}[orientation]
    assert corner.mean() > 200, orientation  # the mark where an upright display shows it


def test_a_progressive_jpeg_costs_its_full_resolution_coefficients() -> None:
    """libjpeg keeps every DCT coefficient of a progressive JPEG until its last scan, whatever the DCT
    scaling: the pixel budget must be charged for them (2 bytes a sample), not for the scaled output."""
    rgb = Image.fromarray(gradient(2048, 2048)).convert("RGB")
    progressive = encode(rgb, "JPEG", quality=90, progressive=True)  # 4:2:0: 1.5 samples a pixel
    baseline = encode(rgb, "JPEG", quality=90)
    assert decode_cost(progressive, 224) >= 2048 * 2048 * 3
    assert decode_cost(baseline, 224) < 2048 * 2048 // 4  # decoded 1/8 a side, line by line


def test_transparency_is_composited_on_black() -> None:
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., :3] = 255  # white, fully transparent
    decoded = decode_image(encode(Image.fromarray(rgba, "RGBA")))
    assert np.asarray(decoded.image).max() == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not a JPEG, PNG or DICOM"),
        (encode(Image.new("RGB", (10, 10)), "GIF"), "unsupported image type GIF"),
    ],
)
def test_bad_bytes_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_image(data)


def test_truncated_jpeg_is_reported(originals) -> None:
    data = (originals / "person56_virus_112.jpeg").read_bytes()
    with pytest.raises(ImageDecodeError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


def test_pixel_limit_refuses_huge_images_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        decode_image(encode(Image.new("L", (300, 300))), max_pixels=300 * 299)


def test_a_dcm_file_name_is_read_as_dicom(tmp_path) -> None:
    from tests.dicom_factory import SECRETS  # noqa: F401  (the factory is shared with the API tests)

    path = tmp_path / "scan.dcm"
    path.write_bytes(b"not really dicom at all")
    with pytest.raises(ImageDecodeError) as caught:
        read_image(path)
    assert "DICOM" in str(caught.value)
