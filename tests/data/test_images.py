import io

import numpy as np
import pytest
from PIL import Image

from pneumonia_zoo.data.images import ImageDecodeError, decode_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
def test_every_8bit_mode_becomes_rgb(mode: str) -> None:
    image = Image.fromarray(gradient()).convert(mode)
    decoded = decode_image(encode(image))
    assert decoded.mode == "RGB" and decoded.size == (40, 30)


def test_16bit_png_is_stretched_to_the_full_8bit_range() -> None:
    array = (np.tile(np.linspace(1000, 3000, 40), (30, 1))).astype(np.uint16)
    decoded = np.asarray(decode_image(encode(Image.fromarray(array))))
    assert decoded.min() == 0 and decoded.max() == 255
    assert np.all(np.diff(decoded[0, :, 0].astype(int)) >= 0)  # monotonic, not wrapped


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(gradient(40, 20)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    decoded = decode_image(encode(image, "JPEG", exif=exif))
    assert decoded.size == (20, 40)


def test_real_full_resolution_original(originals) -> None:
    decoded = decode_image((originals / "IM-0061-0001.jpeg").read_bytes())
    assert decoded.mode == "RGB" and decoded.size == (1754, 1318)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is text", "not a JPEG or PNG"),
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
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(encode(Image.new("L", (300, 300))), max_pixels=300 * 299)
