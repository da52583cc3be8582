"""Every kind of image is accepted, and every bad input gets a 4xx JSON detail (or a friendly page)."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.serving.conftest import TEST_LIMITS, encode, noise_png


def _formats(xray: Image.Image) -> dict[str, bytes]:
    small = xray.resize((256, 136))
    sixteen = Image.fromarray(np.asarray(small, dtype=np.uint16) * 257)  # mode I;16
    rgba = small.convert("RGBA")
    rgba.putalpha(200)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° on display
    return {
        "jpeg-rgb": encode(small.convert("RGB"), "JPEG"),
        "jpeg-exif-rotated": encode(small.convert("RGB"), "JPEG", exif=exif.tobytes()),
        "png-l": encode(small),
        "png-rgb": encode(small.convert("RGB")),
        "png-rgba": encode(rgba),
        "png-palette": encode(small.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)),
        "png-16bit": encode(sixteen),
    }


@pytest.mark.parametrize(
    "kind", ["jpeg-rgb", "jpeg-exif-rotated", "png-l", "png-rgb", "png-rgba", "png-palette", "png-16bit"]
)
def test_accepted_formats(client, xray, kind):
    response = client.post("/api/v1/predict", files={"file": (f"{kind}.img", _formats(xray)[kind])})
    assert response.status_code == 200, response.text
    assert sum(response.json()["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_exif_orientation_is_applied(client, xray):
    """A rotated-by-EXIF JPEG overlays at its displayed (portrait) shape."""
    data = _formats(xray)["jpeg-exif-rotated"]
    overlay = client.post("/api/v1/explain", files={"file": ("r.jpeg", data, "image/jpeg")})
    assert overlay.status_code == 200
    width, height = Image.open(io.BytesIO(overlay.content)).size
    assert height > width


def _truncated(xray_bytes: bytes) -> bytes:
    return xray_bytes[: len(xray_bytes) // 2]


BAD_INPUTS = {
    # name: (make bytes, status, words the detail must contain)
    "empty": (lambda x: b"", 422, "empty"),
    "text": (lambda x: b"this is not an X-ray\n" * 20, 422, "not a JPEG, PNG or DICOM"),
    "truncated": (_truncated, 422, "truncated or corrupt"),
    "corrupt": (lambda x: x[:600] + bytes(range(256)) * 40, 422, "truncated or corrupt"),
    "gif": (lambda x: encode(Image.new("L", (64, 64)), "GIF"), 422, "unsupported image type GIF"),
    "bmp": (lambda x: encode(Image.new("RGB", (64, 64)), "BMP"), 422, "unsupported image type BMP"),
    "too-many-pixels": (lambda x: encode(Image.new("L", (3000, 2500))), 413, "pixels"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_image_gets_a_json_4xx(client, xray_bytes, name):
    make, status, words = BAD_INPUTS[name]
    upload = (f"{name}.jpeg", make(xray_bytes), "image/jpeg")
    response = client.post("/api/v1/predict", files={"file": upload})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["detail"]
    assert f"{name}.jpeg" in response.json()["detail"]  # says which file


def test_file_over_the_size_limit(client):
    too_big = noise_png(1000, 1000)  # ~3 MB of incompressible PNG
    assert len(too_big) > TEST_LIMITS["max_upload_bytes"]
    response = client.post("/api/v1/predict", files={"file": ("big.png", too_big, "image/png")})
    assert response.status_code == 413
    assert "larger than the upload limit" in response.json()["detail"]


def test_batch_over_the_count_limit(client, xray_bytes):
    count = TEST_LIMITS["max_batch_files"] + 1
    files = [("files", (f"{i}.jpeg", xray_bytes, "image/jpeg")) for i in range(count)]
    response = client.post("/api/v1/predict", files=files)
    assert response.status_code == 413
    assert "too many files" in response.json()["detail"]


def test_one_bad_file_in_a_batch_is_named(client, xray_bytes):
    files = [
        ("files", ("good.jpeg", xray_bytes, "image/jpeg")),
        ("files", ("bad.jpeg", b"nope", "image/jpeg")),
    ]
    response = client.post("/api/v1/predict", files=files)
    assert response.status_code == 422 and "'bad.jpeg'" in response.json()["detail"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"content": b"raw bytes", "headers": {"content-type": "image/jpeg"}}, 415, "multipart/form-data"),
        ({"data": {"version": "1"}, "files": {"other": ("x.jpeg", b"x")}}, 422, "no image uploaded"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}}, 400, "boundary"),
        (
            {
                "content": b"garbage without parts",
                "headers": {"content-type": "multipart/form-data; boundary=zzz"},
            },
            400,
            "malformed",
        ),
    ],
    ids=["not-multipart", "no-file-field", "no-boundary", "malformed-body"],
)
def test_malformed_requests(client, request_kwargs, status, words):
    response = client.post("/api/v1/predict", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_file_and_files_together_is_refused(client, xray_bytes):
    files = [("file", ("a.jpeg", xray_bytes, "image/jpeg")), ("files", ("b.jpeg", xray_bytes, "image/jpeg"))]
    response = client.post("/api/v1/predict", files=files)
    assert response.status_code == 422 and "not both" in response.json()["detail"]


def test_html_upload_of_a_bad_file_shows_a_friendly_page(client):
    response = client.post("/predict", files={"file": ("notes.txt", b"hello", "text/plain")})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert "not a JPEG, PNG or DICOM image" in response.text
    assert "Research tool — not a diagnostic device." in response.text
    assert "Traceback" not in response.text


def test_html_upload_with_no_file_chosen(client):
    # What a browser sends when the form is submitted with an empty file input.
    response = client.post("/predict", files={"file": ("", b"", "application/octet-stream")})
    assert response.status_code == 422 and "choose an image file first" in response.text.lower()


def test_unknown_page_and_sample(client):
    assert client.get("/api/v1/nothing").json() == {"detail": "Not Found"}
    page = client.get("/samples/../../etc/passwd", headers={"accept": "text/html"})
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert client.get("/samples/nope.jpeg").status_code == 404
