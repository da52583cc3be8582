"""Decoding a DICOM projection X-ray into a display-ready 8-bit greyscale array, safely and privately.

The pixel pipeline is a radiology viewer's: decode the stored values, apply the Modality LUT (Rescale
Slope/Intercept), then the VOI LUT or the first Window Center/Width (without either, 8-bit data keeps
its levels and deeper data is stretched over the range it uses), invert MONOCHROME1 so that bone is
bright, and map the result to 0..255.

Privacy: a DICOM header holds the patient's name, id and birth date, the study's date and its UIDs.
None of it may leave this module. Error messages are fixed sentences; exceptions from pydicom and the
codecs (whose text can quote element values) are replaced with `from None`; their warnings are
ignored and their log records dropped.
"""

import logging
import warnings
from collections.abc import Callable
from io import BytesIO
from typing import cast

import libjpeg
import numpy as np
import openjpeg
import pydicom
from PIL import Image
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import get_frame
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
)

from pneumonia_zoo.data import dicom_walk
from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError

# Projection radiography: computed (CR) and digital (DX; "DR" is a common vendor label for it)
# radiography, radiographic imaging (RG), fluoroscopy (RF), angiography (XA), mammography (MG), and
# "other" (OT), which secondary captures of a radiograph carry. Cross-sectional modalities (CT, MR, PT,
# NM), ultrasound (US) and everything else are refused: a slice or an echo is not a chest radiograph
# and the models were never trained on one. A missing Modality is accepted, as anonymisers drop it.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "RF", "XA", "MG", "OT"})
MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"})

NOT_DICOM = "the file is not a DICOM file: it has no 'DICM' marker after the 128-byte preamble"
CORRUPT = dicom_walk.CORRUPT
NO_PIXELS = "the DICOM object holds no image (it has no pixel data)"
MULTI_FRAME = "the DICOM object holds several frames (a cine loop or a volume): send a single X-ray image"
NOT_PROJECTION = (
    "the DICOM object is not a projection X-ray: CT, MR and other cross-sectional modalities are refused "
    f"(accepted: {', '.join(sorted(PROJECTION_MODALITIES))})"
)
UNSUPPORTED_SYNTAX = (
    "the DICOM file uses a transfer syntax (compression) that cannot be decoded here: send it "
    "uncompressed, or as JPEG, JPEG-LS, JPEG 2000 or RLE"
)
UNSUPPORTED_COLOUR = (
    "the DICOM image's photometric interpretation is not supported: use MONOCHROME1, MONOCHROME2, RGB or YBR"
)
UNSUPPORTED_DEPTH = "the DICOM image has more bits per sample than supported (16 for greyscale, 8 for colour)"
SIZE_MISMATCH = "the DICOM file is corrupt: its compressed image's size differs from the size in its header"

# pydicom's warnings and log lines quote element values (a character set, a malformed number) and its
# decoders log whole exceptions. A level above CRITICAL drops every record of these libraries (children
# included) where it is made, so that no handler, the application's or one attached later, sees one.
# Their warnings are ignored for good here as well as per call in decode_dicom: catch_warnings is not
# thread-safe, and two decodes on two threads can restore each other's filters.
for _name in ("pydicom", "pylibjpeg", "libjpeg", "openjpeg", "rle"):
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", module=rf"{_name}(\.|$)")

_GUESSED_SYNTAX = {  # (implicit VR, little endian) of a dataset read without file meta
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
UNDEFINED_LENGTH = dicom_walk.UNDEFINED_LENGTH


def is_dicom(data: bytes) -> bool:
    """True when `data` has the DICOM Part 10 marker b"DICM" after its 128-byte preamble."""
    return bytes(data[128:132]) == b"DICM"


def decode_dicom(data: bytes, max_pixels: int = 50_000_000, assume_dicom: bool = False) -> np.ndarray:
    """Decode a single-frame projection X-ray DICOM to a uint8 H x W greyscale array, bone bright.

    `assume_dicom` also accepts a file without the 128-byte preamble and "DICM" marker (a bare
    dataset, as old archives write): use it when the file name says .dcm.
    Raises ImageDecodeError (ImageTooLargeError over `max_pixels`) with a message that never quotes
    the header.
    """
    if not data:
        raise ImageDecodeError("the file is empty")
    if not (assume_dicom or is_dicom(data)):
        raise ImageDecodeError(NOT_DICOM)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings quote header values
            return _decode(data, max_pixels, assume_dicom)
    except ImageDecodeError:  # our own: a fixed sentence
        raise
    except MemoryError:
        raise ImageTooLargeError("the DICOM image is too large to decode in the memory available") from None
    except Exception:  # pydicom and the codecs raise many types, any of which may quote the header
        raise ImageDecodeError(CORRUPT) from None


def _decode(data: bytes, max_pixels: int, assume_dicom: bool) -> np.ndarray:
    ds = _read(data, max_pixels, assume_dicom)
    photometric = _check_object(ds)
    _check_size(int(ds.Rows), int(ds.Columns), max_pixels)
    syntax = _transfer_syntax(ds)
    _check_codestream(ds, syntax, max_pixels)
    pixels = ds.pixel_array  # YBR is converted to RGB here
    if photometric in MONOCHROME:
        return _monochrome_to_uint8(pixels, ds, photometric)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageDecodeError(CORRUPT)
    rgb = Image.fromarray(pixels.astype(np.uint8, copy=False))  # BitsStored <= 8, maybe in 16 allocated
    return np.asarray(rgb.convert("L"))  # ITU-R 601 luma, as for RGB uploads


def _read(data: bytes, max_pixels: int, assume_dicom: bool) -> Dataset:
    """pydicom's dataset, once the bounded walk has vouched for the file (and inflated it, if deflated)."""
    syntax, start = dicom_walk.read_meta(data, assume_dicom)
    if syntax is None and is_dicom(data):  # a Part 10 file always names its transfer syntax
        raise ImageDecodeError(CORRUPT)
    if dicom_walk.is_deflated(syntax):
        body = dicom_walk.inflate(data[start:], max_pixels)
        dicom_walk.walk(body, 0, implicit=False, little=True)
        ds = _read_inflated(data[:start], body, assume_dicom)
    else:
        dicom_walk.walk(data, start, *dicom_walk.encoding(data, start, syntax))
        ds = pydicom.dcmread(BytesIO(data), force=assume_dicom)
    if _is_truncated(ds):
        raise ImageDecodeError(CORRUPT)
    return ds


def _read_inflated(meta: bytes, body: bytes, assume_dicom: bool) -> FileDataset:
    """A deflated file's dataset from its already inflated body (pydicom would inflate it unbounded)."""
    head = pydicom.dcmread(BytesIO(meta), force=assume_dicom)  # preamble and file meta only
    dataset = read_dataset(BytesIO(body), is_implicit_VR=False, is_little_endian=True)
    ds = FileDataset("", dataset, head.preamble, head.file_meta, is_implicit_VR=False, is_little_endian=True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


def _is_truncated(ds: Dataset) -> bool:
    """What pydicom leaves of a cut-off file, which it reads without complaint.

    A cut inside a defined-length value leaves that value shorter than its declared length; a cut
    inside an undefined-length one (encapsulated pixel data, a sequence) leaves no elements at all.
    """
    if len(ds) == 0:
        return True
    return any(
        isinstance(element, RawDataElement)
        and element.length != UNDEFINED_LENGTH
        and isinstance(element.value, bytes)
        and len(element.value) < element.length
        for element in ds.elements()
    )


def _check_object(ds: Dataset) -> str:
    """Refuse what is not a single-frame projection X-ray; return the photometric interpretation."""
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality and modality not in PROJECTION_MODALITIES:
        raise ImageDecodeError(NOT_PROJECTION)
    if "PixelData" not in ds:  # Float/Double Float Pixel Data are parametric maps, not X-rays
        raise ImageDecodeError(NO_PIXELS)
    if int(ds.get("NumberOfFrames") or 1) > 1:
        raise ImageDecodeError(MULTI_FRAME)
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in MONOCHROME | COLOUR:
        raise ImageDecodeError(UNSUPPORTED_COLOUR)
    bits = int(ds.BitsStored) if photometric in COLOUR else int(ds.BitsAllocated)
    if bits > (8 if photometric in COLOUR else 16):
        raise ImageDecodeError(UNSUPPORTED_DEPTH)
    return photometric


_too_large = dicom_walk.too_large


def _check_size(rows: int, columns: int, max_pixels: int) -> None:
    if rows < 1 or columns < 1:
        raise ImageDecodeError(CORRUPT)
    if rows * columns > max_pixels:
        raise ImageTooLargeError(_too_large(max_pixels))


def _transfer_syntax(ds: Dataset) -> UID:
    """The transfer syntax, guessed for a bare dataset; refused unless a decoder is installed."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        # A dataset without file meta: pydicom worked out its encoding while reading it.
        encoding = cast(tuple[bool, bool], ds.original_encoding)  # set by the read above
        guessed = None if ds["PixelData"].is_undefined_length else _GUESSED_SYNTAX.get(encoding)
        if guessed is None:
            raise ImageDecodeError(UNSUPPORTED_SYNTAX)
        ds.file_meta.TransferSyntaxUID = syntax = guessed
    try:
        available = get_decoder(syntax).is_available  # False when the codec plugin is not installed
    except Exception:  # NotImplementedError or ValueError, quoting the UID
        available = False
    if not available:
        raise ImageDecodeError(UNSUPPORTED_SYNTAX)
    return UID(syntax)


def _check_codestream(ds: Dataset, syntax: UID, max_pixels: int) -> None:
    """Check a JPEG or JPEG 2000 codestream's own size before decoding it.

    The codecs allocate what the codestream says, not what Rows/Columns say: a header claiming
    100 x 100 over a 60000 x 60000 codestream would allocate gigabytes before pydicom noticed.
    (RLE is decoded into a buffer sized from the header, so it needs no check.)
    """
    get_parameters: Callable[..., dict]
    if syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        get_parameters = libjpeg.get_parameters
    elif syntax in JPEG2000TransferSyntaxes:
        get_parameters = openjpeg.get_parameters
    else:
        return
    params = get_parameters(get_frame(ds.PixelData, 0, number_of_frames=1))
    rows, columns = int(params["rows"]), int(params["columns"])
    _check_size(rows, columns, max_pixels)
    if (rows, columns) != (int(ds.Rows), int(ds.Columns)):
        raise ImageDecodeError(SIZE_MISMATCH)


def _monochrome_to_uint8(pixels: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """Modality LUT, VOI, inversion and 8-bit scaling, evaluated once per possible stored value.

    pydicom's LUT helpers work in float64 on whatever array they are given; applying them to the 256
    or 65,536 values the stored type can hold and indexing that table with the pixels keeps a
    50-megapixel image at one byte a pixel instead of eight.
    """
    if pixels.ndim != 2:
        raise ImageDecodeError(CORRUPT)
    if pixels.dtype.kind not in "ui" or pixels.dtype.itemsize > 2:
        raise ImageDecodeError(UNSUPPORTED_DEPTH)
    pixels = pixels.astype(pixels.dtype.newbyteorder("="), copy=False)  # the view below needs native order
    unsigned = np.dtype(f"u{pixels.dtype.itemsize}")
    domain = np.arange(2 ** (8 * pixels.dtype.itemsize), dtype=unsigned).view(pixels.dtype)
    values = apply_modality_lut(domain, ds)
    values, low, high = _apply_voi(values, ds, _range_without_voi(domain, pixels, int(ds.BitsStored)))
    table = _scale_to_uint8(values, low, high)
    if _shows_low_values_bright(ds, photometric):
        table = 255 - table
    return table[pixels.view(unsigned)]


def _range_without_voi(domain: np.ndarray, pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """The stored values whose outputs span 0..255 when the object has no VOI LUT and no window.

    8-bit data is display-ready already (secondary captures, exported JPEGs): its whole stored range
    maps to 0..255, so it decodes to exactly the pixels it was made from. Deeper data seldom fills
    BitsStored (a 14-bit detector may use 0..3000 of 0..16383): stretch the range it actually uses.
    """
    if bits_stored > 8:
        return (domain >= pixels.min()) & (domain <= pixels.max())
    low = -(1 << (bits_stored - 1)) if pixels.dtype.kind == "i" else 0
    return (domain >= low) & (domain < low + (1 << bits_stored))


def _apply_voi(values: np.ndarray, ds: Dataset, unwindowed: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Apply the VOI LUT or first window; return the values and the output range that maps to 0..255.

    `unwindowed` marks the table entries whose range maps to 0..255 when there is no VOI at all.
    """
    sequence = ds.get("VOILUTSequence")
    if sequence and "LUTDescriptor" in sequence[0] and "LUTData" in sequence[0]:
        # The LUT's own reach, not its descriptor's bit depth, which vendors often overstate.
        values = apply_voi(values, ds, index=0)
        return values, float(values.min()), float(values.max())
    if "WindowCenter" in ds and "WindowWidth" in ds:
        try:
            windowed = apply_windowing(values, ds, index=0)
            # The window maps onto the whole range of BitsStored (moved by the rescale): find it by
            # windowing the two infinities, which is exactly the range pydicom maps to.
            with np.errstate(over="ignore"):
                low, high = apply_windowing(np.array([-np.inf, np.inf]), ds, index=0)
            return windowed, float(low), float(high)
        except ValueError:
            pass  # a width below 1 or an unknown VOI LUT Function: use the image's range, as viewers do
    return values, float(values[unwindowed].min()), float(values[unwindowed].max())


def _scale_to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if not high > low:  # a flat image
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _shows_low_values_bright(ds: Dataset, photometric: str) -> bool:
    """MONOCHROME1 shows its lowest values (bone) brightest; DX objects add Presentation LUT Shape INVERSE.

    The two mean one inversion, not two (the DX module pairs INVERSE with MONOCHROME1). pydicom's
    apply_presentation_lut is not used: its INVERSE is max - value over the array given, which on
    this table would depend on values the image does not use.
    """
    shape = str(ds.get("PresentationLUTShape") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"


def footprint(data: bytes) -> tuple[int, int] | None:
    """(pixels, bytes a deflated dataset may inflate to) from the header alone, walked within bounds;
    None when it cannot be read.

    For the service's memory budget: what decoding this file will cost, before it is decoded. No pixel
    data is read, and a deflated dataset is inflated only up to its pixel data.
    """
    try:
        syntax, start = dicom_walk.read_meta(data, assume_dicom=True)
        if dicom_walk.is_deflated(syntax):
            _, head, module = dicom_walk.inflated_header(data[start:], max_pixels=0)
            return module.pixels, dicom_walk.inflated_limit(head, module)
        module = dicom_walk.walk(data, start, *dicom_walk.encoding(data, start, syntax), stop_at_pixels=True)
        return module.pixels, 0
    except Exception:  # any failure here is reported, privately, by decode_dicom itself
        return None
