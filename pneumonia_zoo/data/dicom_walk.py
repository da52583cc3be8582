"""A bounded walk over a DICOM file's elements, before pydicom is given it (issue 22).

pydicom parses every element it meets, in Python, and inflates a deflated dataset in one unbounded
call: 20 MB of empty elements cost it seconds, and 400 kB of deflated zeros 400 MB. This walk only
reads tags and lengths (and the few image module values the service's budget needs), descends into
every sequence pydicom could parse, and refuses past `MAX_ELEMENTS` elements, items and fragments or
`MAX_DEPTH` nested sequences. A deflated dataset is inflated here, under a cap derived from its own
image module: the header may inflate to `HEADER_ALLOWANCE`, the rest to what its pixels need.

Every refusal is a fixed sentence: nothing of the header is ever quoted.
"""

import contextlib
import zlib
from dataclasses import dataclass
from struct import Struct

from pydicom.datadict import dictionary_VR
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian
from pydicom.values import converters

from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError

MAX_ELEMENTS = 50_000  # a radiograph's header holds hundreds; each costs pydicom microseconds
MAX_DEPTH = 16  # nested sequences
HEADER_ALLOWANCE = 16 << 20  # what a deflated dataset's elements before its pixel data may inflate to
TRAILER_ALLOWANCE = 1 << 20  # and what may follow its pixel data (padding, signatures)

CORRUPT = "the DICOM file is corrupt or truncated"
OVERLONG = "the DICOM file is corrupt: an element is longer than its value representation allows"
TOO_MANY_ELEMENTS = (
    f"the DICOM file has more than {MAX_ELEMENTS:,} elements or {MAX_DEPTH} nested sequences: "
    "it is not a single X-ray image"
)

UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_NUMBER_OF_FRAMES = 0x00280008
_IMAGE_MODULE = {
    0x00280002: "samples",
    0x00280010: "rows",
    0x00280011: "columns",
    0x00280100: "bits_allocated",
}
_LONG_VRS = frozenset(  # explicit VRs whose length takes 4 bytes (after 2 reserved ones)
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_LONG_VR_NAMES = frozenset(vr.decode() for vr in _LONG_VRS)
_KNOWN_VRS = frozenset(converters)
_SHORT_LENGTH_MAX = 0xFFFF  # the most an explicit VR element of a short VR (DS, IS, US...) can hold
_LUT_DATA = 0x00283006
_MAX_LUT_BYTES = 2 * 65_536  # a LUT descriptor counts at most 65,536 entries of at most 16 bits


def too_large(max_pixels: int) -> str:
    return f"the DICOM image has more pixels than the limit of {max_pixels:,}"


def _inflates_too_far(max_pixels: int) -> str:
    return (
        "the DICOM file inflates to more than an image of no more pixels than the limit of "
        f"{max_pixels:,} needs"
    )


class _Truncated(Exception):
    """The walk ran past the end of the bytes it was given."""


@dataclass
class ImageModule:
    """What the budget needs from the top-level image pixel module, and where the pixel data starts."""

    rows: int = 0
    columns: int = 0
    samples: int = 1
    bits_allocated: int = 16
    frames: int = 1
    pixel_data_at: int | None = None  # offset of the Pixel Data element in the dataset walked

    @property
    def pixels(self) -> int:
        return self.frames * self.rows * self.columns

    @property
    def pixel_bytes(self) -> int:
        return -(-self.pixels * self.samples * self.bits_allocated // 8)


class _Walk:
    def __init__(self, data: bytes, implicit: bool, little: bool) -> None:
        endian = "<" if little else ">"
        self.data, self.implicit, self.count = data, implicit, 0
        self.tag = Struct(endian + "HH").unpack_from
        self.long = Struct(endian + "L").unpack_from
        self.short = Struct(endian + "H").unpack_from

    def element(self, pos: int, end: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, length, where the value starts) of the element at `pos`, counted."""
        self.count += 1
        if self.count > MAX_ELEMENTS:
            raise ImageTooLargeError(TOO_MANY_ELEMENTS)
        if pos + 8 > end:
            raise _Truncated
        group, number = self.tag(self.data, pos)
        tag = group << 16 | number
        if self.implicit or group == 0xFFFE:  # items and delimiters have no VR
            return tag, None, self.long(self.data, pos + 4)[0], pos + 8
        vr = self.data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise _Truncated
            return tag, vr, self.long(self.data, pos + 8)[0], pos + 12
        if not b"AA" <= vr <= b"ZZ":  # pydicom reads such an element as implicit VR
            return tag, None, self.long(self.data, pos + 4)[0], pos + 8
        return tag, vr, self.short(self.data, pos + 6)[0], pos + 8

    def dataset(
        self, pos: int, end: int, depth: int, module: ImageModule | None = None, in_item: bool = False
    ) -> int:
        """Walk the elements from `pos` to `end` (or to an item delimiter); return where the walk ended.

        With `module` (the top level), record the image module and stop at the pixel data when
        `module.pixel_data_at` is -1.
        """
        while pos < end:
            tag, vr, length, value = self.element(pos, end)
            if tag == _ITEM_END:
                return value
            if module is not None and tag == _PIXEL_DATA:
                stop = module.pixel_data_at == -1
                module.pixel_data_at = pos
                if stop:
                    return pos
            if length == UNDEFINED_LENGTH:  # a sequence or encapsulated pixel data: items up to a delimiter
                sequence = vr in (b"SQ", b"UN", None) and tag != _PIXEL_DATA
                pos = self.items(value, end, depth + 1, sequence, delimited=True)
                continue
            if value + length > end:
                raise _Truncated
            if length > _SHORT_LENGTH_MAX and _overlong(tag, vr, length):
                raise ImageDecodeError(OVERLONG)
            if module is not None:
                self.record(module, tag, value, length)
            if vr == b"SQ" or (vr in (None, b"UN") and _is_sequence(tag)):
                # pydicom parses such a value only when it is used: a malformed one is not the file's end.
                with contextlib.suppress(_Truncated):
                    self.items(value, value + length, depth + 1, sequence=True, delimited=False)
            pos = value + length
        if in_item:
            raise _Truncated
        return pos

    def items(self, pos: int, end: int, depth: int, sequence: bool, delimited: bool) -> int:
        """Walk a sequence's items (datasets) or encapsulated fragments (bytes)."""
        if depth > MAX_DEPTH:
            raise ImageTooLargeError(TOO_MANY_ELEMENTS)
        while pos < end:
            tag, _, length, value = self.element(pos, end)
            if tag == _SEQUENCE_END:
                return value
            if tag != _ITEM:
                raise ImageDecodeError(CORRUPT)
            if length == UNDEFINED_LENGTH:
                if not sequence:
                    raise ImageDecodeError(CORRUPT)
                pos = self.dataset(value, end, depth, in_item=True)
                continue
            if value + length > end:
                raise _Truncated
            if sequence:
                self.dataset(value, value + length, depth)
            pos = value + length
        if delimited:
            raise _Truncated
        return pos

    def record(self, module: ImageModule, tag: int, value: int, length: int) -> None:
        if tag in _IMAGE_MODULE and length >= 2:
            setattr(module, _IMAGE_MODULE[tag], self.short(self.data, value)[0])
        elif tag == _NUMBER_OF_FRAMES:
            text = self.data[value : value + length].strip(b"\0 ")
            module.frames = max(1, int(text)) if text.isdigit() and len(text) <= 12 else 1


def _overlong(tag: int, vr: bytes | None, length: int) -> bool:
    """A value pydicom would convert that no explicit VR file could hold, or a LUT past 65,536 entries.

    Only implicit VR (or UN) gives a number string or a short binary a 4-byte length: 10 MB of "1\\1\\..."
    as a Window Center would become 5 million Python numbers (seconds, and gigabytes).
    """
    if tag == _LUT_DATA:
        return length > _MAX_LUT_BYTES
    if vr not in (None, b"UN"):
        return False
    try:
        return not any(name in _LONG_VR_NAMES for name in dictionary_VR(tag).split(" or "))
    except KeyError:  # a private tag: pydicom keeps its value as bytes
        return False


def _is_sequence(tag: int) -> bool:
    try:
        return dictionary_VR(tag) == "SQ"
    except KeyError:  # a private tag: pydicom keeps its value as bytes
        return False


def read_meta(data: bytes, assume_dicom: bool) -> tuple[str | None, int]:
    """The file meta's Transfer Syntax UID (None without one) and where the dataset after it starts."""
    if bytes(data[128:132]) == b"DICM":
        pos = 132
    elif assume_dicom:  # a bare dataset, as pydicom reads it with force=True
        pos = 0
    else:
        raise ImageDecodeError(CORRUPT)
    walk, syntax = _Walk(data, implicit=False, little=True), None  # the file meta is explicit VR LE
    try:
        while pos + 8 <= len(data) and walk.tag(data, pos)[0] == 0x0002:
            tag, _, length, value = walk.element(pos, len(data))
            if length == UNDEFINED_LENGTH or value + length > len(data):
                raise ImageDecodeError(CORRUPT)
            if tag == 0x00020010:
                syntax = data[value : value + length].strip(b"\0 ").decode("ascii", "replace")
            pos = value + length
    except _Truncated:
        raise ImageDecodeError(CORRUPT) from None
    return syntax, pos


def encoding(data: bytes, dataset_start: int, syntax: str | None) -> tuple[bool, bool]:
    """(implicit VR, little endian) of the dataset: from its syntax, or guessed as pydicom guesses it."""
    if syntax == ImplicitVRLittleEndian:
        return True, True
    if syntax == ExplicitVRBigEndian:
        return False, False
    if syntax is not None:
        return False, True  # every other syntax, deflated and encapsulated included, is explicit VR LE
    head = data[dataset_start : dataset_start + 6]
    if len(head) < 6 or head[4:6].decode("latin-1") not in _KNOWN_VRS:
        return True, True
    return False, int.from_bytes(head[:2], "little") < 1024


def walk(data: bytes, start: int, implicit: bool, little: bool, stop_at_pixels: bool = False) -> ImageModule:
    """Walk the dataset from `start` to the end (or to its pixel data) within the bounds; raise on a
    cut (ImageDecodeError) or past them (ImageTooLargeError)."""
    module = ImageModule(pixel_data_at=-1 if stop_at_pixels else None)
    try:
        _Walk(data, implicit, little).dataset(start, len(data), 0, module)
    except _Truncated:
        raise ImageDecodeError(CORRUPT) from None
    if module.pixel_data_at == -1:
        module.pixel_data_at = None
    return module


def inflated_header(deflated: bytes, max_pixels: int) -> tuple["zlib._Decompress", bytes, ImageModule]:
    """Inflate a deflated dataset up to its pixel data, at most HEADER_ALLOWANCE bytes of it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        head = inflater.decompress(deflated, HEADER_ALLOWANCE)
    except zlib.error:
        raise ImageDecodeError(CORRUPT) from None
    module = ImageModule(pixel_data_at=-1)
    try:
        _Walk(head, implicit=False, little=True).dataset(0, len(head), 0, module)
        complete = module.pixel_data_at != -1 or inflater.eof
    except _Truncated:
        complete = False
    if not complete:
        if inflater.eof:
            raise ImageDecodeError(CORRUPT)
        raise ImageTooLargeError(_inflates_too_far(max_pixels))
    if module.pixel_data_at == -1:
        module.pixel_data_at = None
    return inflater, head, module


def inflated_limit(head: bytes, module: ImageModule) -> int:
    """The most a deflated dataset whose header is `head` may inflate to: its pixels, and a little more."""
    return (module.pixel_data_at or len(head)) + 12 + module.pixel_bytes + TRAILER_ALLOWANCE


def inflate(deflated: bytes, max_pixels: int) -> bytes:
    """The whole inflated dataset, refused (ImageTooLargeError) past the pixel limit or past what the
    header's own image module needs."""
    inflater, head, module = inflated_header(deflated, max_pixels)
    if module.pixels > max_pixels:
        raise ImageTooLargeError(too_large(max_pixels))
    room = inflated_limit(head, module) - len(head)
    if room < 0:
        raise ImageTooLargeError(_inflates_too_far(max_pixels))
    try:
        rest = inflater.decompress(inflater.unconsumed_tail, room + 1) if not inflater.eof else b""
    except zlib.error:
        raise ImageDecodeError(CORRUPT) from None
    if len(rest) > room or inflater.unconsumed_tail:
        raise ImageTooLargeError(_inflates_too_far(max_pixels))
    return head + rest if rest else head


def is_deflated(syntax: str | None) -> bool:
    return syntax == DeflatedExplicitVRLittleEndian
