"""A bounded look at a JPEG's segments or a PNG's chunks before Pillow parses them (issue 22).

Pillow's parsers are Python loops over what the file declares: its JPEG reader skips junk between
segments a byte at a time (20 MB of zeros after the start marker: over a second), and its PNG reader
handles every chunk before and after the image data in turn (20 MB of empty chunks: five seconds).
This walk reads the same structure with `bytes.find` and `struct`, stops where Pillow would stop
parsing (a JPEG's first scan, a PNG's end chunk), and refuses a file that would keep Pillow busy past
a few milliseconds: more junk or segments or chunks than any camera, scanner or encoder writes. It
also counts a JPEG's scans, which libjpeg decodes one whole-image pass each.
Files of other kinds pass through: Pillow is only ever asked for JPEG and PNG.
"""

import struct

from PIL.JpegImagePlugin import MARKER

from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError

MAX_JPEG_SEGMENTS = 1_024  # a camera JPEG has about ten before its first scan
# Each progressive scan is a pass over the whole image's coefficients in libjpeg: 1,000 tiny scans of a
# 49-megapixel image cost 30 s in 270 kB. Encoders write at most a few tens (libjpeg's default: 10).
MAX_JPEG_SCANS = 64
MAX_JPEG_JUNK = 64 << 10  # bytes between segments that Pillow skips one at a time
MAX_PNG_CHUNKS = 65_536  # 20 MB of image data in libpng's 8 kB chunks is 2,560
MAX_PNG_ANCILLARY = 1_024  # chunks other than image data (text, colour profile, private ones)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START = b"\xff\xd8\xff"
_START_OF_SCAN = 0xFFDA
_PNG_IMAGE_DATA = frozenset({b"IDAT", b"fdAT"})
_PNG_CHUNK = struct.Struct(">I4s")


def check_structure(data: bytes) -> None:
    """Refuse a JPEG or PNG whose structure Pillow would spend long on; anything else passes."""
    if data.startswith(JPEG_START):
        _check_jpeg(data)
    elif data.startswith(PNG_SIGNATURE):
        _check_png(data)


def _check_jpeg(data: bytes) -> None:
    """Count the scans; walk the segments up to the first scan as Pillow's JpegImageFile._open does."""
    # Entropy-coded data never holds FF DA (an FF there is followed by 00 or a restart marker).
    if data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise ImageTooLargeError(f"the JPEG file has more than {MAX_JPEG_SCANS} scans")
    pos, end, segments, junk = 2, len(data), 0, 0
    while pos < end:
        if data[pos] != 0xFF:  # junk: Pillow skips it a byte at a time
            found = data.find(b"\xff", pos)
            skipped = (found if found >= 0 else end) - pos
            junk, pos = junk + skipped, pos + skipped
        elif pos + 1 < end and data[pos + 1] in (0x00, 0xFF):  # a stuffed or fill byte
            skip = 2 if data[pos + 1] == 0x00 else 1
            junk, pos = junk + skip, pos + skip
        else:
            marker = 0xFF00 | data[pos + 1] if pos + 1 < end else 0
            if marker == _START_OF_SCAN or marker not in MARKER:
                return  # Pillow stops parsing here (or refuses the file at once)
            segments += 1
            if segments > MAX_JPEG_SEGMENTS:
                raise ImageTooLargeError(
                    f"the JPEG file has more than {MAX_JPEG_SEGMENTS:,} segments before its image data"
                )
            if MARKER[marker][2] is None:  # a marker without a length (restart, start of image)
                pos += 2
                continue
            if pos + 4 > end:
                return
            pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
        if junk > MAX_JPEG_JUNK:
            raise ImageDecodeError(
                f"the image is truncated or corrupt (more than {MAX_JPEG_JUNK:,} bytes of junk between "
                "its JPEG segments)"
            )


def _check_png(data: bytes) -> None:
    """Walk the chunks up to the end chunk, as Pillow's PngImageFile reads them on open and load."""
    pos, chunks, ancillary = len(PNG_SIGNATURE), 0, 0
    while pos + 8 <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, pos)
        chunks += 1
        ancillary += kind not in _PNG_IMAGE_DATA
        if chunks > MAX_PNG_CHUNKS or ancillary > MAX_PNG_ANCILLARY:
            raise ImageTooLargeError(
                f"the PNG file has more than {MAX_PNG_CHUNKS:,} chunks, or more than "
                f"{MAX_PNG_ANCILLARY:,} besides its image data"
            )
        if kind == b"IEND":
            return
        pos += 12 + length
