"""DICOM files made on the fly from the real X-rays in tests/fixtures/, for decoder and API tests.

Every object carries a fake but identifying header (PatientName, PatientID, dates, UIDs) so that
privacy tests can look for those strings in whatever the code under test says.

    grey = source_grey(FIXTURE)                    # the image the DICOM must decode back to
    data = to_bytes(monochrome2(grey))             # 8-bit MONOCHROME2, explicit VR little endian
    data = to_bytes(compressed(monochrome1_12bit(grey), RLELossless))

Encoders: RLE and JPEG 2000 are pydicom's own (`Dataset.compress`, JPEG 2000 through
pylibjpeg-openjpeg); JPEG Baseline is Pillow's JPEG, encapsulated; JPEG Lossless (process 14, SV1) and
lossless JPEG-LS have no installed encoder, so small ones are written out below, checked by decoding
their output with libjpeg back to the very same pixels.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    generate_uid,
)

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-12345"
PATIENT_BIRTH_DATE = "19610704"
STUDY_DATE = "20240229"
ACCESSION_NUMBER = "ACC-987654"
INSTITUTION = "St Elsewhere Secret Hospital"
SECRETS = (
    PATIENT_NAME,
    "Doe",
    "Jane",
    PATIENT_ID,
    PATIENT_BIRTH_DATE,
    STUDY_DATE,
    ACCESSION_NUMBER,
    INSTITUTION,
)

# The 12-bit objects hold grey level g as LOW_12 + STEP_12 * g: a detector that uses part of its range.
LOW_12, STEP_12 = 500, 12
RESCALE_INTERCEPT = -1024  # a rescale the window must be expressed in, as on real DX objects


def source_grey(path: Path) -> np.ndarray:
    """The fixture image as the uint8 greyscale pixels every DICOM made from it must decode back to."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def base_dataset(modality: str | None = "DX") -> FileDataset:
    """A header with patient, study and instance identity, and no pixel data yet."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = STUDY_DATE
    ds.StudyTime = "133700"
    ds.AccessionNumber, ds.InstitutionName = ACCESSION_NUMBER, INSTITUTION
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
    if modality is not None:
        ds.Modality = modality
    return ds


def with_pixels(
    pixels: np.ndarray, photometric: str, bits_stored: int, modality: str | None = "DX"
) -> FileDataset:
    ds = base_dataset(modality)
    ds.set_pixel_data(pixels, photometric, bits_stored, generate_instance_uid=False)
    return ds


def monochrome2(grey: np.ndarray, modality: str | None = "DX") -> FileDataset:
    """8-bit MONOCHROME2 with no rescale and no window: display-ready, its grey levels are kept."""
    return with_pixels(grey, "MONOCHROME2", 8, modality)


def monochrome1_12bit(grey: np.ndarray) -> FileDataset:
    """12-bit MONOCHROME1 (bone stored dark), with a rescale and a window exactly over the data.

    Stored values run LOW_12..LOW_12 + 255 * STEP_12, inverted; the window (in rescaled units) maps
    that span onto the whole 12-bit output, so the decoded 8-bit image is the source within rounding.
    """
    stored = (LOW_12 + STEP_12 * (255 - grey.astype(np.uint16))).astype(np.uint16)
    ds = with_pixels(stored, "MONOCHROME1", 12)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, RESCALE_INTERCEPT, "US"
    # LINEAR windowing maps center - 0.5 -/+ (width - 1) / 2 onto the ends of the output range.
    ds.WindowCenter = LOW_12 + RESCALE_INTERCEPT + STEP_12 * 255 / 2 + 0.5
    ds.WindowWidth = STEP_12 * 255 + 1
    ds.PresentationLUTShape = "INVERSE"  # as the DX module requires with MONOCHROME1
    return ds


def compressed(ds: FileDataset, syntax: UID, **options: object) -> FileDataset:
    """Re-encode with pydicom's own encoders (RLE natively, JPEG 2000 through pylibjpeg-openjpeg)."""
    ds.compress(syntax, **options)
    return ds


def jpeg_baseline(grey: np.ndarray, quality: int = 95, colour: bool = False) -> FileDataset:
    """JPEG Baseline: Pillow's JPEG bytes encapsulated as they are (a colour one as YBR_FULL_422)."""
    image = Image.fromarray(grey).convert("RGB" if colour else "L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)  # colour: 4:2:0 subsampling, Pillow's default
    return encapsulated(
        buffer.getvalue(),
        JPEGBaseline8Bit,
        rows=grey.shape[0],
        columns=grey.shape[1],
        photometric="YBR_FULL_422" if colour else "MONOCHROME2",
        bits_stored=8,
    )


def jpeg_lossless(ds: FileDataset) -> FileDataset:
    """Re-encode an uncompressed greyscale object as JPEG Lossless, first-order prediction (SV1).

    No installed package encodes this syntax, the most common one in CR/DX archives; the encoder below
    is the few lines that process 14 needs.
    """
    codestream = encode_jpeg_lossless_sv1(ds.pixel_array, precision=int(ds.BitsStored))
    return _replace_pixel_data(ds, codestream, JPEGLosslessSV1)


def jpeg_ls(ds: FileDataset) -> FileDataset:
    """Re-encode an uncompressed greyscale object as lossless JPEG-LS (no JPEG-LS encoder is installed)."""
    codestream = encode_jpeg_ls_lossless(ds.pixel_array, precision=int(ds.BitsStored))
    return _replace_pixel_data(ds, codestream, JPEGLSLossless)


def _replace_pixel_data(ds: FileDataset, codestream: bytes, syntax: UID) -> FileDataset:
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"  # encapsulated pixel data is always OB
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def encapsulated(
    frame: bytes, syntax: UID, rows: int, columns: int, photometric: str, bits_stored: int
) -> FileDataset:
    """A single-frame object whose pixel data is `frame`, a codestream of `syntax`, encapsulated."""
    ds = base_dataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1 if photometric.startswith("MONOCHROME") else 3
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
    return _replace_pixel_data(ds, frame, syntax)


def to_bytes(ds: FileDataset, preamble: bool = True, **write_options: object) -> bytes:
    """The Part 10 file (preamble, DICM, file meta), or with preamble=False the bare dataset alone."""
    buffer = io.BytesIO()
    if preamble:
        ds.save_as(buffer, enforce_file_format=True, **write_options)
    else:
        syntax = ds.file_meta.TransferSyntaxUID
        bare = Dataset(ds)  # without the preamble and file meta
        dcmwrite(buffer, bare, implicit_vr=syntax.is_implicit_VR, little_endian=syntax.is_little_endian)
    return buffer.getvalue()


def encode_jpeg_lossless_sv1(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG process 14 codestream, predictor 1 (left neighbour), one component, point transform 0.

    Differences are Huffman coded by their magnitude category (0..16) with one fixed table giving
    every category a 5-bit code, followed by the category's extra bits (ITU T.81, H.1.2).
    """
    rows, columns = pixels.shape
    x = pixels.astype(np.int64)
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]  # first row: the left neighbour
    prediction[1:, 0] = x[:-1, 0]  # first column: the pixel above
    prediction[1:, 1:] = x[1:, :-1]  # elsewhere predictor 1: the left neighbour
    difference = (x - prediction + 32768) % 65536 - 32768  # modulo 2^16, as T.81 H.1.2.1 says
    magnitude = np.abs(difference)
    category = np.zeros_like(magnitude)
    nonzero = magnitude > 0
    category[nonzero] = np.floor(np.log2(magnitude[nonzero])).astype(np.int64) + 1
    extra = np.where(difference >= 0, difference, difference + (1 << category) - 1)
    extra[category == 16] = 0  # category 16 (difference 32768) has no extra bits
    extra_bits = np.where(category == 16, 0, category)
    words = (category << extra_bits) | extra  # 5-bit code (= category) then the extra bits
    lengths = 5 + extra_bits
    bitstream = _pack_bits(words.ravel(), lengths.ravel())
    huffman_counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    segments = [
        b"\xff\xd8",  # SOI
        _segment(0xC3, _frame_header(precision, rows, columns)),  # SOF3: lossless, Huffman
        _segment(0xC4, b"\x00" + huffman_counts + bytes(range(17))),
        _segment(0xDA, b"\x01\x01\x00\x01\x00\x00"),  # one component, table 0, predictor 1, Se 0, Pt 0
        bitstream.replace(b"\xff", b"\xff\x00"),  # byte stuffing
        b"\xff\xd9",  # EOI
    ]
    return b"".join(segments)


def _frame_header(precision: int, rows: int, columns: int) -> bytes:
    """SOF payload for one component (id 1, no subsampling, table 0)."""
    return bytes([precision]) + rows.to_bytes(2, "big") + columns.to_bytes(2, "big") + b"\x01\x01\x11\x00"


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _pack_bits(words: np.ndarray, lengths: np.ndarray) -> bytes:
    """Concatenate each word's low `length` bits, most significant first; pad with 1 bits (T.81 F.1.2.3)."""
    width = int(lengths.max())
    positions = np.arange(width)
    # Positions past a word's length get a harmless shift of 0 and are dropped by the mask below.
    shifts = np.maximum(lengths[:, None] - 1 - positions, 0)
    bits = (words[:, None] >> shifts) & 1
    bits = bits[positions < lengths[:, None]]
    bits = np.concatenate([bits, np.ones(-len(bits) % 8, dtype=bits.dtype)])
    return np.packbits(bits.astype(np.uint8)).tobytes()


_J = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]


class _LocoI:
    """The LOCO-I coder of ITU T.87 (JPEG-LS) for one component, lossless (NEAR 0), default parameters.

    Written from Annex A, with the same context state and update rules as the standard; the context
    numbering is ours (any one-to-one numbering decodes the same, as contexts never interact).
    """

    def __init__(self, precision: int) -> None:
        self.maxval = (1 << precision) - 1
        self.range = self.maxval + 1
        self.qbpp = max(1, (self.range - 1).bit_length())
        bpp = max(2, precision)
        self.limit = 2 * (bpp + max(8, bpp))
        factor = (min(self.maxval, 4095) + 128) // 256  # default thresholds, MAXVAL >= 128 (C.2.4.1.1.1)
        self.t1, self.t2, self.t3 = factor + 2, 4 * factor + 3, 17 * factor + 4
        a_init = max(2, (self.range + 32) // 64)
        self.a, self.b, self.c, self.n = [a_init] * 367, [0] * 367, [0] * 367, [1] * 367
        self.nn = {365: 0, 366: 0}
        self.run_index = 0
        self.bits: list[str] = []

    def put(self, value: int, count: int) -> None:
        if count:
            self.bits.append(format(value, f"0{count}b"))

    def golomb(self, value: int, k: int, limit: int) -> None:
        high = value >> k
        if high < limit - self.qbpp - 1:
            self.put(1, high + 1)
            self.put(value & ((1 << k) - 1), k)
        else:
            self.put(1, limit - self.qbpp)
            self.put((value - 1) & ((1 << self.qbpp) - 1), self.qbpp)

    def reduce(self, error: int) -> int:
        if error < 0:
            error += self.range
        return error - self.range if error >= (self.range + 1) // 2 else error

    def quantise(self, d: int) -> int:
        if d <= -self.t3:
            return -4
        if d <= -self.t2:
            return -3
        if d <= -self.t1:
            return -2
        if d < 0:
            return -1
        if d == 0:
            return 0
        if d < self.t1:
            return 1
        if d < self.t2:
            return 2
        return 3 if d < self.t3 else 4

    def regular(self, x: int, ra: int, rb: int, rc: int, rd: int) -> None:
        q = [self.quantise(rd - rb), self.quantise(rb - rc), self.quantise(rc - ra)]
        sign = -1 if next(v for v in q if v) < 0 else 1
        if sign < 0:
            q = [-v for v in q]
        ctx = (q[0] * 9 + q[1]) * 9 + q[2]  # 1..364 for a triple whose first non-zero value is positive
        if rc >= max(ra, rb):
            px = min(ra, rb)
        elif rc <= min(ra, rb):
            px = max(ra, rb)
        else:
            px = ra + rb - rc
        px = min(max(px + sign * self.c[ctx], 0), self.maxval)
        error = self.reduce(sign * (x - px))
        k = 0
        while (self.n[ctx] << k) < self.a[ctx]:
            k += 1
        if k == 0 and 2 * self.b[ctx] <= -self.n[ctx]:
            mapped = 2 * error + 1 if error >= 0 else -2 * (error + 1)
        else:
            mapped = 2 * error if error >= 0 else -2 * error - 1
        self.golomb(mapped, k, self.limit)
        self.update(ctx, error)

    def update(self, ctx: int, error: int) -> None:
        self.b[ctx] += error
        self.a[ctx] += abs(error)
        if self.n[ctx] == 64:  # RESET
            self.a[ctx] >>= 1
            self.b[ctx] = self.b[ctx] >> 1 if self.b[ctx] >= 0 else -((1 - self.b[ctx]) >> 1)
            self.n[ctx] >>= 1
        self.n[ctx] += 1
        if self.b[ctx] <= -self.n[ctx]:
            self.b[ctx] += self.n[ctx]
            self.c[ctx] = max(self.c[ctx] - 1, -128)
            self.b[ctx] = max(self.b[ctx], -self.n[ctx] + 1)
        elif self.b[ctx] > 0:
            self.b[ctx] -= self.n[ctx]
            self.c[ctx] = min(self.c[ctx] + 1, 127)
            self.b[ctx] = min(self.b[ctx], 0)

    def run(self, length: int, end_of_line: bool) -> None:
        while length >= (1 << _J[self.run_index]):
            self.put(1, 1)
            length -= 1 << _J[self.run_index]
            self.run_index = min(self.run_index + 1, 31)
        if end_of_line:
            if length:
                self.put(1, 1)
        else:
            self.put(length, _J[self.run_index] + 1)  # a 0, then the remainder

    def interruption(self, x: int, ra: int, rb: int) -> None:
        ri_type = 1 if ra == rb else 0
        error = x - (ra if ri_type else rb)
        if not ri_type and ra > rb:
            error = -error
        error = self.reduce(error)
        ctx = 365 + ri_type
        temp = self.a[ctx] + (self.n[ctx] >> 1) if ri_type else self.a[ctx]
        k = 0
        while (self.n[ctx] << k) < temp:
            k += 1
        nn, n = self.nn[ctx], self.n[ctx]
        flip = (k == 0 and error > 0 and 2 * nn < n) or (error < 0 and (2 * nn >= n or k != 0))
        mapped = 2 * abs(error) - ri_type - int(flip)
        self.golomb(mapped, k, self.limit - _J[self.run_index] - 1)
        if error < 0:
            self.nn[ctx] += 1
        self.a[ctx] += (mapped + 1 - ri_type) >> 1
        if self.n[ctx] == 64:
            self.a[ctx] >>= 1
            self.n[ctx] >>= 1
            self.nn[ctx] >>= 1
        self.n[ctx] += 1
        self.run_index = max(self.run_index - 1, 0)

    def encode(self, image: list[list[int]]) -> None:
        width = len(image[0])
        above = [0] * (width + 2)  # the line above, with Rc's and Rd's edge samples at both ends
        for line in image:
            current = [above[1]] + line + [0]  # Ra of the first sample is the sample above it
            above[width + 1] = above[width]  # Rd past the last sample repeats Rb
            col = 1
            while col <= width:
                ra, rb, rc, rd = current[col - 1], above[col], above[col - 1], above[col + 1]
                if rd == rb and rb == rc and rc == ra:
                    start = col
                    while col <= width and current[col] == ra:
                        col += 1
                    self.run(col - start, end_of_line=col > width)
                    if col > width:
                        break
                    self.interruption(current[col], current[col - 1], above[col])
                else:
                    self.regular(current[col], ra, rb, rc, rd)
                col += 1
            above = current[:1] + line + [0]  # the next line's Rc for its first sample is this one's Ra


def _stuffed_bytes(bits: str) -> bytes:
    """Bits to bytes, with a 0 bit after every 0xFF byte (T.87 A.1) and the last byte padded with 0s."""
    out, position = bytearray(), 0
    while position < len(bits):
        width = 7 if out and out[-1] == 0xFF else 8
        chunk = bits[position : position + width].ljust(width, "0")
        out.append(int(chunk, 2))
        position += width
    if out and out[-1] == 0xFF:
        out.append(0)
    return bytes(out)


def encode_jpeg_ls_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """A lossless JPEG-LS codestream (T.87) of one greyscale component, default coding parameters."""
    rows, columns = pixels.shape
    coder = _LocoI(precision)
    coder.encode(pixels.astype(int).tolist())
    frame = _frame_header(precision, rows, columns)  # SOF55: JPEG-LS
    scan = b"\x01\x01\x00\x00\x00\x00"  # one component, no mapping table, NEAR 0, no interleave, no transform
    body = _stuffed_bytes("".join(coder.bits))
    return b"\xff\xd8" + _segment(0xF7, frame) + _segment(0xDA, scan) + body + b"\xff\xd9"
