"""Issue 22, findings 1 and 2: hostile headers cost milliseconds and megabytes, not seconds and gigabytes.

The files are built by tests/hostile_files.py. The time bounds are generous regression guards (on main
the cost estimate alone took 1 to 8 s each on 2 cores); the contract is the service's acceptance,
checked against a live server in tests/serving/test_hostile_uploads.py.
"""

import struct
import time
import tracemalloc

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pneumonia_zoo.data import dicom_walk
from pneumonia_zoo.data.dicom import decode_dicom, footprint
from pneumonia_zoo.data.errors import ImageDecodeError, ImageTooLargeError
from pneumonia_zoo.data.images import decode_cost, decode_image
from tests import dicom_factory as factory
from tests import hostile_files

MB = 1 << 20
SLOW = 1.0  # seconds for the cost estimate and the decode together


@pytest.mark.parametrize("where", ["private", "pixels"])
def test_a_deflated_dicom_bomb_is_refused_in_bounded_memory(where: str) -> None:
    data = hostile_files.deflated_dicom_bomb(400 * MB, where=where)
    assert len(data) < 1 * MB  # about 400 kB that inflates to 400 MB
    tracemalloc.start()
    try:
        cost = decode_cost(data, 224, assume_dicom=True)
        with pytest.raises(ImageTooLargeError):
            decode_image(data, 50_000_000, 224, assume_dicom=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * MB, f"{peak / MB:.0f} MB at the peak"  # main: 830 MB (pydicom inflated it all)
    assert cost < 20 * MB  # the estimate charges what the header's 64 x 64 pixels may inflate to


@pytest.mark.parametrize("name", [name for name in hostile_files.HOSTILE if name != "deflated-dicom-bomb"])
def test_a_hostile_header_is_measured_and_refused_fast(name: str) -> None:
    make, filename = hostile_files.HOSTILE[name]
    data = make()
    assume_dicom = filename.endswith(".dcm")
    started = time.perf_counter()
    decode_cost(data, 224, assume_dicom=assume_dicom)
    with pytest.raises(ImageDecodeError):
        decode_image(data, 50_000_000, 224, assume_dicom=assume_dicom)
    elapsed = time.perf_counter() - started
    assert elapsed < SLOW, f"{elapsed:.1f} s"  # main: 2.3 s (JPEG junk) to 15 s (DICOM), 90 s (scans)


def test_the_dicom_walk_counts_elements_inside_sequences() -> None:
    with pytest.raises(ImageTooLargeError, match="elements"):
        decode_dicom(hostile_files.dicom_of_nested_elements(2 * MB))
    assert footprint(hostile_files.dicom_of_nested_elements(2 * MB)) is None  # the estimate gives up


def test_sequences_nested_past_the_limit_are_refused() -> None:
    item, item_end = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF), struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sequence, sequence_end = (
        struct.pack("<HH2sHI", 0x0009, 0x1001, b"SQ", 0, 0xFFFFFFFF),
        struct.pack("<HHI", 0xFFFE, 0xE0DD, 0),
    )
    depth = dicom_walk.MAX_DEPTH + 1
    data = (
        hostile_files.file_meta("1.2.840.10008.1.2.1")
        + (sequence + item) * depth
        + (item_end + sequence_end) * depth
    )
    with pytest.raises(ImageTooLargeError, match="nested sequences"):
        decode_dicom(data)


def test_a_deflated_file_inflates_only_to_what_its_header_needs() -> None:
    """A small deflated excess is still refused: the cap comes from the image module, not the pixel limit."""
    data = hostile_files.deflated_dicom_bomb(8 * MB, where="pixels")  # 64 x 64 pixels need 4 kB
    assert footprint(data) == (64 * 64, pytest.approx(1 * MB, abs=64 * 1024))
    with pytest.raises(ImageTooLargeError, match="inflates to more than"):
        decode_dicom(data)


def test_a_lut_past_65536_entries_is_refused_before_pydicom_converts_it() -> None:
    """No descriptor counts more than 65,536 entries; LUT Data has a 4-byte length, and in implicit VR
    pydicom converts each entry to a Python int."""
    ds = factory.monochrome2(np.zeros((64, 64), dtype=np.uint8))
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [0, 0, 16])  # 0: 65,536 entries, the most a descriptor counts
    item.add_new("LUTData", "OW", bytes(2 * 65_536 + 2))
    ds.VOILUTSequence = [item]
    with pytest.raises(ImageDecodeError, match="longer than its value representation allows"):
        decode_dicom(factory.to_bytes(ds))
