"""Hostile uploads made from bytes (issue 22): files whose headers cost seconds or gigabytes to parse.

Each is built here, streaming where it is large, so no test or benchmark holds more than the file:

    deflated_dicom_bomb()       ~400 kB that inflates to 400 MB (Deflated Explicit VR Little Endian)
    jpeg_of_zeros()             a JPEG start marker followed by zeros (Pillow skips junk a byte at a time)
    jpeg_of_many_scans()        a progressive JPEG of thousands of tiny scans (libjpeg passes per scan)
    png_of_empty_chunks()       a PNG header followed by empty ancillary chunks
    dicom_of_empty_elements()   a DICOM file meta followed by empty elements (pydicom parses each)
    dicom_of_nested_elements()  the same inside one undefined-length sequence (pydicom parses it eagerly)
    dicom_of_a_long_number_string()  an implicit VR Window Center of millions of values
"""

import io
import struct
import zlib

from PIL import Image
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

MB = 1 << 20
SIZE = 20 * MB  # the service's default upload limit
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\0" * (len(raw) % 2)


def file_meta(transfer_syntax: str) -> bytes:
    """Preamble, "DICM" and a file meta group naming `transfer_syntax` (explicit VR little endian)."""
    elements = (
        _explicit(0x0002, 0x0001, b"OB", b"\0\1")
        + _explicit(0x0002, 0x0002, b"UI", _uid(DX_STORAGE))
        + _explicit(0x0002, 0x0003, b"UI", _uid("1.2.3.4"))
        + _explicit(0x0002, 0x0010, b"UI", _uid(transfer_syntax))
    )
    length = _explicit(0x0002, 0x0000, b"UL", struct.pack("<I", len(elements)))
    return b"\0" * 128 + b"DICM" + length + elements


def _image_header(rows: int, columns: int) -> bytes:
    """The image pixel module of an 8-bit MONOCHROME2 DX, no pixel data yet."""
    return (
        _explicit(0x0008, 0x0060, b"CS", b"DX")
        + _explicit(0x0028, 0x0002, b"US", struct.pack("<H", 1))
        + _explicit(0x0028, 0x0004, b"CS", b"MONOCHROME2 ")
        + _explicit(0x0028, 0x0010, b"US", struct.pack("<H", rows))
        + _explicit(0x0028, 0x0011, b"US", struct.pack("<H", columns))
        + _explicit(0x0028, 0x0100, b"US", struct.pack("<H", 8))
        + _explicit(0x0028, 0x0101, b"US", struct.pack("<H", 8))
        + _explicit(0x0028, 0x0102, b"US", struct.pack("<H", 7))
        + _explicit(0x0028, 0x0103, b"US", struct.pack("<H", 0))
    )


def deflated_dicom_bomb(inflated: int = 400 * MB, where: str = "private") -> bytes:
    """A 64 x 64 DX whose deflated dataset inflates to `inflated` bytes of zeros.

    where="private": the zeros are a private OB element before the pixel data (a huge header);
    where="pixels": they are the pixel data, far more than 64 x 64 needs.
    """
    # After a full flush deflate starts afresh: one megabyte of zeros compressed once is repeated.
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    tag = (0x0009, 0x1010) if where == "private" else (0x7FE0, 0x0010)
    header = _image_header(64, 64)
    if where == "private":
        header += _explicit(0x0009, 0x0010, b"LO", b"BOMB")
    header += struct.pack("<HH2sHI", *tag, b"OB", 0, inflated)
    parts = [deflater.compress(header) + deflater.flush(zlib.Z_FULL_FLUSH)]
    megabyte = deflater.compress(bytes(MB)) + deflater.flush(zlib.Z_FULL_FLUSH)
    parts.append(megabyte * (inflated // MB))
    if where == "private":
        parts.append(deflater.compress(_explicit(0x7FE0, 0x0010, b"OB", bytes(64 * 64))))
    parts.append(deflater.flush())
    return file_meta(DeflatedExplicitVRLittleEndian) + b"".join(parts)


def jpeg_of_zeros(size: int = SIZE) -> bytes:
    """A JPEG start-of-image marker and a JFIF segment followed by zeros: no frame, only junk."""
    head = b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\1\1\0\0\1\0\1\0\0"
    return head + bytes(size - len(head))


def jpeg_of_many_scans(scans: int = 3000, side: int = 7000) -> bytes:
    """A flat progressive JPEG of side x side pixels whose last (tiny) scan is repeated `scans` times.

    libjpeg makes a pass over every coefficient of the image for each scan: on main, 1,000 such scans
    of 7000 x 7000 took 30 s to decode, in a file of 270 kB.
    """
    buffer = io.BytesIO()
    Image.new("L", (side, side), 128).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    end = data.rindex(b"\xff\xd9")
    last_scan = data[data.rindex(b"\xff\xda") : end]
    return data[:end] + last_scan * scans + b"\xff\xd9"


def png_of_empty_chunks(size: int = SIZE) -> bytes:
    """A valid 64 x 64 header followed by empty private ancillary chunks (valid CRCs), then nothing."""

    def chunk(kind: bytes, data: bytes = b"") -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 0, 0, 0, 0))
    empty = chunk(b"prVt")
    return head + empty * ((size - len(head)) // len(empty))


def dicom_of_empty_elements(size: int = SIZE) -> bytes:
    """A Part 10 file whose dataset is empty private elements (explicit VR little endian)."""
    head = file_meta(ExplicitVRLittleEndian) + _image_header(64, 64)
    empty = _explicit(0x0009, 0x1000, b"LO", b"")  # 8 bytes each
    return head + empty * ((size - len(head)) // len(empty))


def dicom_of_nested_elements(size: int = SIZE) -> bytes:
    """Empty elements inside one item of one undefined-length private sequence (read eagerly by pydicom)."""
    head = file_meta(ExplicitVRLittleEndian) + _image_header(64, 64)
    opening = struct.pack("<HH2sHI", 0x0009, 0x1001, b"SQ", 0, 0xFFFFFFFF) + struct.pack(
        "<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    closing = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    empty = _explicit(0x0009, 0x1000, b"LO", b"")
    count = (size - len(head) - len(opening) - len(closing)) // len(empty)
    return head + opening + empty * count + closing


def dicom_of_a_long_number_string(size: int = 4 * MB) -> bytes:
    """An implicit VR DX whose Window Center is `size` bytes of "1\\1\\...": pydicom converts every value.

    Explicit VR cannot even encode it (a DS value has a 2-byte length). On main a 2 MB one took 2.4 s
    and 470 MB to decode; 20 MB would take 24 s and 4.7 GB.
    """

    def implicit(group: int, element: int, value: bytes) -> bytes:
        return struct.pack("<HHI", group, element, len(value)) + value

    values = b"\\".join([b"1"] * (size // 2))
    values += b" " * (len(values) % 2)
    elements = [
        implicit(0x0008, 0x0060, b"DX"),
        implicit(0x0028, 0x0002, struct.pack("<H", 1)),
        implicit(0x0028, 0x0004, b"MONOCHROME2 "),
        implicit(0x0028, 0x0010, struct.pack("<H", 64)),
        implicit(0x0028, 0x0011, struct.pack("<H", 64)),
        implicit(0x0028, 0x0100, struct.pack("<H", 8)),
        implicit(0x0028, 0x0101, struct.pack("<H", 8)),
        implicit(0x0028, 0x0102, struct.pack("<H", 7)),
        implicit(0x0028, 0x0103, struct.pack("<H", 0)),
        implicit(0x0028, 0x1050, values),  # Window Center
        implicit(0x0028, 0x1051, b"100 "),  # Window Width
        implicit(0x7FE0, 0x0010, bytes(64 * 64)),
    ]
    return file_meta(ImplicitVRLittleEndian) + b"".join(elements)


HOSTILE = {  # name: (make the bytes, the file name it is uploaded under)
    "deflated-dicom-bomb": (deflated_dicom_bomb, "bomb.dcm"),
    "jpeg-of-zeros": (jpeg_of_zeros, "zeros.jpeg"),
    "jpeg-of-many-scans": (jpeg_of_many_scans, "scans.jpeg"),
    "png-of-empty-chunks": (png_of_empty_chunks, "chunks.png"),
    "dicom-of-empty-elements": (dicom_of_empty_elements, "elements.dcm"),
    "dicom-of-nested-elements": (dicom_of_nested_elements, "nested.dcm"),
    "dicom-of-a-long-number-string": (dicom_of_a_long_number_string, "window.dcm"),
}
