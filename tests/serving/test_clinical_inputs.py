"""DICOM in with privacy kept, and honest outputs for images unlike the training data, through the API
and the pages, on the shipped starter model (a real trained network)."""

import io
import logging
from pathlib import Path

import pytest
from PIL import Image
from pydicom.uid import RLELossless

from tests import dicom_factory as dcm

SOURCES = ["test/PNEUMONIA/person118_bacteria_560.jpeg", "test/NORMAL/IM-0050-0001.jpeg"]


def predict(client, data: bytes, name: str) -> dict:
    response = client.post("/api/v1/predict", files={"file": (name, data, "application/octet-stream")})
    assert response.status_code == 200, response.text
    return response.json()


def png(grey) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG")
    return buffer.getvalue()


DICOMS = {
    "MONOCHROME2 8-bit": lambda grey: dcm.to_bytes(dcm.monochrome2(grey)),
    "MONOCHROME1 12-bit, windowed": lambda grey: dcm.to_bytes(dcm.monochrome1_12bit(grey)),
    "JPEG Lossless SV1": lambda grey: dcm.to_bytes(dcm.jpeg_lossless(dcm.monochrome2(grey))),
    "RLE Lossless (12-bit)": lambda grey: dcm.to_bytes(
        dcm.compressed(dcm.monochrome1_12bit(grey), RLELossless)
    ),
    "no preamble, .dcm name": lambda grey: dcm.to_bytes(dcm.monochrome2(grey), preamble=False),
}


@pytest.mark.parametrize("kind", list(DICOMS))
@pytest.mark.parametrize("source", SOURCES)
def test_a_dicom_predicts_as_its_source_image(starter_client, fixture_data: Path, kind: str, source: str):
    grey = dcm.source_grey(fixture_data / source)
    expected = predict(starter_client, png(grey), "source.png")["probabilities"]["PNEUMONIA"]
    body = predict(starter_client, DICOMS[kind](grey), "scan.dcm")
    assert abs(body["probabilities"]["PNEUMONIA"] - expected) <= 0.01
    assert {"flagged", "score", "reasons"} <= set(body["out_of_population"])


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (lambda ds: dcm.to_bytes(ds)[:400], 422, "corrupt or truncated"),
        (lambda ds: dcm.to_bytes(ds)[: len(dcm.to_bytes(ds)) // 2], 422, "corrupt or truncated"),
        (lambda ds: (ds.__delattr__("PixelData"), dcm.to_bytes(ds))[1], 422, "no pixel data"),
        (lambda ds: (setattr(ds, "Modality", "CT"), dcm.to_bytes(ds))[1], 422, "not a projection X-ray"),
        (lambda ds: b"\0" * 128 + b"DICM" + b"\x07" * 300, 422, "corrupt"),
    ],
)
def test_bad_dicoms_get_a_clear_4xx(starter_client, fixture_data, make, status, message):
    ds = dcm.monochrome2(dcm.source_grey(fixture_data / SOURCES[1]))
    response = starter_client.post(
        "/api/v1/predict", files={"file": ("bad.dcm", make(ds), "application/dicom")}
    )
    assert response.status_code == status and message in response.json()["detail"]
    assert not any(secret in response.text for secret in dcm.SECRETS)


def test_no_dicom_header_value_is_echoed_logged_or_shown(starter_client, fixture_data, caplog, tmp_path):
    grey = dcm.source_grey(fixture_data / SOURCES[0])
    data = dcm.to_bytes(dcm.monochrome1_12bit(grey))
    with caplog.at_level(logging.DEBUG):
        api = starter_client.post("/api/v1/predict", files={"file": ("scan.dcm", data, "application/dicom")})
        page = starter_client.post("/predict", files={"file": ("scan.dcm", data, "application/dicom")})
        ct = dcm.monochrome2(grey, modality="CT")
        refused = starter_client.post("/api/v1/predict", files={"file": ("ct.dcm", dcm.to_bytes(ct), "x")})
    assert api.status_code == 200 and page.status_code == 200 and refused.status_code == 422
    for text in (api.text, page.text, refused.text, caplog.text):
        for secret in dcm.SECRETS:
            assert secret not in text, secret


def test_a_natural_photograph_is_answered_and_flagged(starter_client):
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("flower.jpg")).save(buffer, format="JPEG")
    body = predict(starter_client, buffer.getvalue(), "flower.jpg")
    assert body["label"] in ("NORMAL", "PNEUMONIA")  # the prediction is never hidden
    assert body["out_of_population"]["flagged"] is True and body["out_of_population"]["warning"]
    page = starter_client.post("/predict", files={"file": ("flower.jpg", buffer.getvalue(), "image/jpeg")})
    assert "looks unlike the paediatric chest X-rays" in page.text
