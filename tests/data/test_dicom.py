"""DICOM input: real X-rays from tests/fixtures/ wrapped as DICOM on the fly, decoded back and compared.

Bounds. A lossless path must give the source's pixels back exactly: the models are sensitive enough
that +-1 grey level of noise can move a score by several hundredths, so only identical pixels
guarantee an identical prediction. Where the expected image is itself computed (a stretch of 14-bit
data) a pixel may round the other way: no pixel off by more than one level, mean <= 0.1. A lossy path
carries its codec's own loss, which no decoder can undo: JPEG quality 95 and JPEG 2000 at 10:1 stay
within 1.5 grey levels on average, and the DICOM decode of a JPEG matches Pillow's decode of the same
codestream (the app's JPEG path) within the two libraries' IDCT rounding.
"""

import io
import re
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    MPEG2MPML,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from pneumonia_zoo.data import dicom
from pneumonia_zoo.data.dicom import decode_dicom, is_dicom
from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError
from tests import dicom_factory as factory

FIXTURES = Path(__file__).parents[1] / "fixtures"
SMALL = FIXTURES / "chest_xray" / "test" / "NORMAL" / "IM-0050-0001.jpeg"  # 224 x 224, grey levels 0..244
FULL = FIXTURES / "originals" / "person56_virus_112.jpeg"  # 1088 x 576 original
UID_PATTERN = re.compile(r"\d+(\.\d+){2,}")
# Writing the privacy baits (a name as Modality or character set) warns; what decoding says is checked.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR CS"),
    pytest.mark.filterwarnings("ignore:Unknown encoding"),
]


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return factory.source_grey(SMALL)


@pytest.fixture(scope="module")
def full() -> np.ndarray:
    return factory.source_grey(FULL)


def differences(decoded: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    assert decoded.dtype == np.uint8 and decoded.shape == expected.shape
    difference = np.abs(decoded.astype(np.int16) - expected.astype(np.int16))
    return float(difference.mean()), int(difference.max())


def assert_same(decoded: np.ndarray, expected: np.ndarray) -> None:
    assert differences(decoded, expected) == (0.0, 0)


def assert_within_rounding(decoded: np.ndarray, expected: np.ndarray) -> None:
    mean, worst = differences(decoded, expected)
    assert mean <= 0.1 and worst <= 1, (mean, worst)


def with_syntax(ds: Dataset, syntax: UID) -> Dataset:
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def stretched(grey: np.ndarray) -> np.ndarray:
    """What an image without a window shows: its own range stretched to 0..255."""
    low, high = float(grey.min()), float(grey.max())
    return np.rint((grey - low) * (255.0 / (high - low))).astype(np.uint8)


# --- lossless paths: the source's pixels come back -------------------------------------------------

LOSSLESS: dict[str, Callable[[np.ndarray], Dataset]] = {
    "8-bit MONOCHROME2, explicit VR": factory.monochrome2,
    "8-bit MONOCHROME2, implicit VR": lambda g: with_syntax(factory.monochrome2(g), ImplicitVRLittleEndian),
    "12-bit MONOCHROME1 + window": factory.monochrome1_12bit,
    "12-bit MONOCHROME1, deflated": lambda g: with_syntax(
        factory.monochrome1_12bit(g), DeflatedExplicitVRLittleEndian
    ),
    "8-bit RLE": lambda g: factory.compressed(factory.monochrome2(g), RLELossless),
    "12-bit RLE": lambda g: factory.compressed(factory.monochrome1_12bit(g), RLELossless),
    "12-bit JPEG 2000 lossless": lambda g: factory.compressed(factory.monochrome1_12bit(g), JPEG2000Lossless),
    "8-bit JPEG lossless SV1": lambda g: factory.jpeg_lossless(factory.monochrome2(g)),
    "12-bit JPEG lossless SV1": lambda g: factory.jpeg_lossless(factory.monochrome1_12bit(g)),
    "12-bit JPEG lossless process 14": lambda g: with_syntax(
        factory.jpeg_lossless(factory.monochrome1_12bit(g)),
        JPEGLossless,  # SV1 is one of its predictors
    ),
    "8-bit JPEG-LS lossless": lambda g: factory.jpeg_ls(factory.monochrome2(g)),
    "12-bit JPEG-LS lossless": lambda g: factory.jpeg_ls(factory.monochrome1_12bit(g)),
}


@pytest.mark.parametrize("kind", LOSSLESS)
def test_lossless_syntaxes_give_the_source_pixels_back(kind: str, small: np.ndarray) -> None:
    data = factory.to_bytes(LOSSLESS[kind](small))
    assert is_dicom(data)
    assert_same(decode_dicom(data), small)


@pytest.mark.parametrize("kind", ["12-bit MONOCHROME1 + window", "12-bit RLE", "12-bit JPEG lossless SV1"])
def test_full_resolution_original(kind: str, full: np.ndarray) -> None:
    decoded = decode_dicom(factory.to_bytes(LOSSLESS[kind](full)))
    assert decoded.shape == (576, 1088)
    assert_same(decoded, full)


@pytest.mark.parametrize(
    "syntax",
    [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless]
    + [JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2K, RLELossless],
)
def test_every_compressed_syntax_has_a_pylibjpeg_decoder(syntax: UID) -> None:
    assert "pylibjpeg" in get_decoder(syntax).available_plugins


SPIED = {
    JPEGBaseline8Bit: factory.jpeg_baseline,
    JPEGLosslessSV1: lambda g: factory.jpeg_lossless(factory.monochrome2(g)),
    JPEGLSLossless: lambda g: factory.jpeg_ls(factory.monochrome2(g)),
    JPEG2000Lossless: lambda g: factory.compressed(factory.monochrome2(g), JPEG2000Lossless),
    RLELossless: lambda g: factory.compressed(factory.monochrome2(g), RLELossless),
}


@pytest.mark.parametrize("syntax", SPIED, ids=lambda syntax: syntax.name)
def test_pydicom_really_decodes_with_the_pylibjpeg_plugins(
    syntax: UID, small: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow (baseline, JPEG 2000) and pydicom itself (RLE) could decode these too: pylibjpeg comes first.
    decoder = get_decoder(syntax)
    plugin, calls = decoder._available["pylibjpeg"], []

    def spy(src: bytes, runner: object) -> bytearray:
        calls.append(syntax)
        return plugin(src, runner)

    monkeypatch.setitem(decoder._available, "pylibjpeg", spy)
    decode_dicom(factory.to_bytes(SPIED[syntax](small)))
    assert calls == [syntax]


# --- lossy paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(factory.jpeg_baseline, id="JPEG baseline, greyscale"),
        pytest.param(lambda g: factory.jpeg_baseline(g, colour=True), id="JPEG baseline, YBR_FULL_422"),
        pytest.param(
            lambda g: factory.compressed(factory.monochrome1_12bit(g), JPEG2000, j2k_cr=[10]),
            id="JPEG 2000 lossy 10:1, 12-bit",
        ),
    ],
)
def test_lossy_syntaxes_stay_within_a_few_grey_levels(make: Callable, small: np.ndarray) -> None:
    mean, _ = differences(decode_dicom(factory.to_bytes(make(small))), small)
    assert mean <= 1.5


def test_jpeg_baseline_decodes_like_pillow_decodes_the_same_bytes(small: np.ndarray) -> None:
    ds = factory.jpeg_baseline(small, quality=75)
    codestream = pydicom.encaps.get_frame(ds.PixelData, 0, number_of_frames=1)
    by_pillow = np.asarray(Image.open(io.BytesIO(codestream)))
    mean, worst = differences(decode_dicom(factory.to_bytes(ds)), by_pillow)
    assert mean <= 0.5 and worst <= 2  # libjpeg and libjpeg-turbo round their IDCTs differently


# --- the grey-level pipeline ------------------------------------------------------------------------


def test_8_bit_data_without_a_window_keeps_its_grey_levels(small: np.ndarray) -> None:
    decoded = decode_dicom(factory.to_bytes(factory.monochrome2(small)))
    assert small.max() == decoded.max() == 244  # display-ready already: not stretched to 255


def test_deep_data_without_a_window_is_stretched_over_its_own_range(small: np.ndarray) -> None:
    stored = (1000 + 10 * small.astype(np.uint16)).astype(np.uint16)  # 14 bits, a fifth of them used
    decoded = decode_dicom(factory.to_bytes(factory.with_pixels(stored, "MONOCHROME2", 14)))
    assert_within_rounding(decoded, stretched(small))


def test_signed_data_with_a_rescale(small: np.ndarray) -> None:
    ds = factory.with_pixels((10 * small.astype(np.int16) - 1200).astype(np.int16), "MONOCHROME2", 16)
    ds.RescaleSlope, ds.RescaleIntercept = 2, 100
    assert_within_rounding(decode_dicom(factory.to_bytes(ds)), stretched(small))


def test_monochrome1_is_inverted_once_with_or_without_an_inverse_presentation_shape(
    small: np.ndarray,
) -> None:
    ds = factory.monochrome1_12bit(small)
    del ds.PresentationLUTShape
    assert_same(decode_dicom(factory.to_bytes(ds)), small)


def test_an_inverse_presentation_shape_inverts_monochrome2(small: np.ndarray) -> None:
    ds = factory.monochrome2(small)
    ds.PresentationLUTShape = "INVERSE"
    assert_same(decode_dicom(factory.to_bytes(ds)), 255 - small)


def test_the_first_of_several_windows_is_used(small: np.ndarray) -> None:
    ds = factory.monochrome1_12bit(small)
    ds.WindowCenter, ds.WindowWidth = [ds.WindowCenter, 0], [ds.WindowWidth, 100]
    assert_same(decode_dicom(factory.to_bytes(ds)), small)


def test_a_narrow_window_clips_what_lies_outside_it(small: np.ndarray) -> None:
    ds = factory.monochrome2(small)
    ds.WindowCenter, ds.WindowWidth = 128, 64  # grey levels 96..159 spread over 0..255
    decoded = decode_dicom(factory.to_bytes(ds)).astype(int)
    assert np.all(decoded[small < 96] == 0) and np.all(decoded[small >= 160] == 255)
    middle = (small >= 100) & (small < 156)
    assert np.abs(decoded[middle] - (small[middle] - 96) * 4).max() <= 3


def test_a_voi_lut_takes_precedence_over_a_window(small: np.ndarray) -> None:
    ds = factory.monochrome2(small)
    ds.WindowCenter, ds.WindowWidth = 128, 10
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [256, 0, 8])  # both elements have an ambiguous VR: say which
    item.add_new("LUTData", "US", list(range(255, -1, -1)))  # an inverting LUT
    ds.VOILUTSequence = [item]
    assert_same(decode_dicom(factory.to_bytes(ds)), 255 - small)


def test_a_zero_window_width_falls_back_to_the_images_range(small: np.ndarray) -> None:
    ds = factory.monochrome2(small)
    ds.WindowCenter, ds.WindowWidth = 128, 0
    assert_same(decode_dicom(factory.to_bytes(ds)), small)


def test_a_missing_modality_is_accepted(small: np.ndarray) -> None:
    assert_same(decode_dicom(factory.to_bytes(factory.monochrome2(small, modality=None))), small)


@pytest.mark.parametrize("modality", sorted(dicom.PROJECTION_MODALITIES))
def test_projection_modalities_are_accepted(modality: str, small: np.ndarray) -> None:
    assert_same(decode_dicom(factory.to_bytes(factory.monochrome2(small, modality=modality))), small)


# --- files without the preamble -------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_a_bare_dataset_is_read_only_when_the_caller_assumes_dicom(syntax: UID, small: np.ndarray) -> None:
    data = factory.to_bytes(with_syntax(factory.monochrome1_12bit(small), syntax), preamble=False)
    assert not is_dicom(data)
    with pytest.raises(ImageDecodeError, match="not a DICOM file"):
        decode_dicom(data)
    assert_same(decode_dicom(data, assume_dicom=True), small)


def test_is_dicom_is_false_for_jpeg_png_and_short_input(small: np.ndarray) -> None:
    png = io.BytesIO()
    Image.fromarray(small).save(png, format="PNG")
    for data in (SMALL.read_bytes(), FULL.read_bytes(), png.getvalue(), b"", b"DICM", b"\0" * 131):
        assert not is_dicom(data)
    assert is_dicom(b"\0" * 128 + b"DICM")


# --- refusals -----------------------------------------------------------------------------------------


def truncated(ds: Dataset, fraction: float = 0.5) -> bytes:
    data = factory.to_bytes(ds)
    return data[: int(len(data) * fraction)]


def huge_header(grey: np.ndarray) -> Dataset:
    ds = factory.monochrome2(grey)
    ds.Rows = ds.Columns = 60_000  # 3.6 gigapixels claimed over 50 kB of pixel data
    return ds


def jpeg_bomb(rows: int, columns: int) -> Dataset:
    """A header that says `rows` x `columns` over a 4000 x 4000 (16-megapixel) JPEG codestream."""
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buffer, format="JPEG")
    return factory.encapsulated(buffer.getvalue(), JPEGBaseline8Bit, rows, columns, "MONOCHROME2", 8)


def with_element(ds: Dataset, **elements: object) -> Dataset:
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


GARBAGE = np.random.default_rng(0).bytes(4000)

# id: (make the bytes from the small image, decode_dicom keywords, exception, message fragment)
REFUSALS: dict[str, tuple[Callable[[np.ndarray], bytes], dict, type, str]] = {
    "empty": (lambda g: b"", {}, ImageDecodeError, "empty"),
    "not DICOM": (lambda g: SMALL.read_bytes(), {}, ImageDecodeError, "not a DICOM file"),
    "garbage after the preamble": (
        lambda g: b"\0" * 128 + b"DICM" + GARBAGE,
        {},
        ImageDecodeError,
        "corrupt",
    ),
    "garbage after the file meta": (
        lambda g: factory.to_bytes(factory.base_dataset())[:300] + GARBAGE,
        {},
        ImageDecodeError,
        "corrupt",
    ),
    "garbage with assume_dicom": (lambda g: GARBAGE, {"assume_dicom": True}, ImageDecodeError, "DICOM"),
    "truncated, uncompressed": (
        lambda g: truncated(factory.monochrome2(g)),
        {},
        ImageDecodeError,
        "truncated",
    ),
    "truncated in the header": (
        lambda g: factory.to_bytes(factory.monochrome2(g))[:600],  # past the file meta, before the pixels
        {},
        ImageDecodeError,
        "truncated",
    ),
    "truncated, JPEG": (lambda g: truncated(factory.jpeg_baseline(g)), {}, ImageDecodeError, "truncated"),
    "truncated, JPEG 2000": (
        lambda g: truncated(factory.compressed(factory.monochrome2(g), JPEG2000Lossless), 0.9),
        {},
        ImageDecodeError,
        "truncated",
    ),
    "corrupt JPEG codestream": (
        lambda g: factory.to_bytes(
            factory.encapsulated(b"\xff\xd8\xff\xc0" + GARBAGE, JPEGBaseline8Bit, 224, 224, "MONOCHROME2", 8)
        ),
        {},
        ImageDecodeError,
        "corrupt",
    ),
    "no pixel data": (
        lambda g: factory.to_bytes(factory.base_dataset()),
        {},
        ImageDecodeError,
        "no pixel data",
    ),
    "multi-frame": (
        lambda g: factory.to_bytes(factory.with_pixels(np.stack([g, g]), "MONOCHROME2", 8)),
        {},
        ImageDecodeError,
        "several frames",
    ),
    **{
        modality: (
            lambda g, m=modality: factory.to_bytes(factory.monochrome2(g, modality=m)),
            {},
            ImageDecodeError,
            "not a projection X-ray",
        )
        for modality in ("CT", "MR", "PT", "NM", "US", "SR")
    },
    "over the pixel limit": (
        lambda g: factory.to_bytes(factory.monochrome2(g)),
        {"max_pixels": 224 * 224 - 1},
        ImageTooLargeError,
        "more pixels than the limit of 50,175",
    ),
    "a huge header over tiny data": (
        lambda g: factory.to_bytes(huge_header(g)),
        {},
        ImageTooLargeError,
        "more pixels than the limit",
    ),
    "a JPEG codestream over the limit": (
        lambda g: factory.to_bytes(jpeg_bomb(100, 100)),
        {"max_pixels": 1_000_000},
        ImageTooLargeError,
        "more pixels than the limit",
    ),
    "a JPEG codestream larger than its header": (
        lambda g: factory.to_bytes(jpeg_bomb(224, 224)),
        {},
        ImageDecodeError,
        "size differs",
    ),
    "MPEG-2 video": (
        lambda g: factory.to_bytes(factory.encapsulated(GARBAGE, MPEG2MPML, 224, 224, "MONOCHROME2", 8)),
        {},
        ImageDecodeError,
        "transfer syntax",
    ),
    "a private transfer syntax": (
        lambda g: factory.to_bytes(
            factory.encapsulated(GARBAGE, UID("1.2.826.0.1.3680043.2.1143.7"), 224, 224, "MONOCHROME2", 8)
        ),
        {},
        ImageDecodeError,
        "transfer syntax",
    ),
    "PALETTE COLOR": (
        lambda g: factory.to_bytes(
            with_element(factory.monochrome2(g), PhotometricInterpretation="PALETTE COLOR")
        ),
        {},
        ImageDecodeError,
        "photometric interpretation",
    ),
    "32 bits allocated": (
        lambda g: factory.to_bytes(with_element(factory.monochrome2(g), BitsAllocated=32)),
        {},
        ImageDecodeError,
        "bits per sample",
    ),
    "a secret modality": (
        lambda g: factory.to_bytes(with_element(factory.monochrome2(g), Modality=factory.PATIENT_NAME)),
        {},
        ImageDecodeError,
        "not a projection X-ray",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_raise_a_clear_error(case: str, small: np.ndarray) -> None:
    make, options, error, fragment = REFUSALS[case]
    with pytest.raises(error, match=re.escape(fragment)):
        decode_dicom(make(small), **options)


@pytest.mark.parametrize("case", REFUSALS)
def test_refusals_quote_nothing_from_the_header(
    case: str, small: np.ndarray, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    make, options, error, _ = REFUSALS[case]
    data = make(small)
    caplog.set_level("DEBUG")
    caplog.clear()
    recwarn.clear()  # making the bait may warn; decoding it must not
    with pytest.raises(error) as raised:
        decode_dicom(data, **options)
    exc = raised.value
    # Nothing of pydicom's own exception is kept: no cause, and any context is suppressed.
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    shown = "".join(traceback.format_exception(exc)) + caplog.text + "".join(str(w.message) for w in recwarn)
    for secret in factory.SECRETS:
        assert secret not in shown
    assert not UID_PATTERN.search(str(exc))
    assert not caplog.records and not recwarn.list


def test_header_values_that_pydicom_quotes_never_reach_logs_or_warnings(
    small: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    ds = factory.monochrome2(small)
    ds.SpecificCharacterSet = factory.PATIENT_NAME
    data = factory.to_bytes(ds)
    # The bait: reading it, pydicom warns and logs "Unknown encoding 'Doe^Jane'".
    with pytest.warns(UserWarning, match=re.escape(factory.PATIENT_NAME)):
        pydicom.dcmread(io.BytesIO(data))
    caplog.set_level("DEBUG")
    caplog.clear()
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        assert_same(decode_dicom(data), small)
    assert recorded == []
    assert caplog.records == []  # pytest's handler sits on pydicom's logger too: nothing was logged


def test_the_result_is_a_plain_uint8_array(small: np.ndarray) -> None:
    decoded = decode_dicom(factory.to_bytes(factory.monochrome2(small)))
    assert type(decoded) is np.ndarray and decoded.dtype == np.uint8
    assert decoded.ndim == 2 and decoded.flags.c_contiguous


def test_a_deflate_bomb_is_refused_before_pydicom_inflates_it(
    small: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = factory.monochrome2(small)
    ds.private_block(0x0009, "BOMB", create=True).add_new(0x10, "OB", bytes(40 << 20))  # deflates to 40 kB
    data = factory.to_bytes(with_syntax(ds, DeflatedExplicitVRLittleEndian))
    assert len(data) < 1 << 20

    def no_inflating(*args: object, **kwargs: object) -> None:
        raise AssertionError("pydicom was asked to inflate the bomb")

    monkeypatch.setattr(dicom.pydicom, "dcmread", no_inflating)
    with pytest.raises(ImageTooLargeError, match="more pixels than the limit"):
        decode_dicom(data, max_pixels=1_000_000)
