"""Pages for a site: the models page shows each version's site and parent beside its evaluations, a
result page names the site of an adapted version, and the upload form says what it takes."""

from pneumonia_zoo.tracking.records import Lineage
from tests.serving.conftest import make_client


def test_the_models_page_shows_site_and_parent(site_store) -> None:
    for client in make_client(site_store.uri):
        page = client.get("/models").text
        assert "Site · parent" in page
        assert ">fixture-site · from v1</td>" in page  # version 2, adapted from the champion
        assert ">—</td>" in page  # the starter: no site
        versions = {v["version"]: v for v in client.get("/api/v1/models").json()["versions"]}
        assert versions["2"]["site"] == "fixture-site" and versions["2"]["parent"] == "1"
        assert versions["1"]["site"] is None and versions["1"]["parent"] is None


def test_a_result_page_names_the_site_of_an_adapted_version(site_store, xray_bytes: bytes) -> None:
    for client in make_client(site_store.uri):
        adapted = client.post("/predict", files={"file": ("x.jpeg", xray_bytes)}, data={"version": "2"})
        assert adapted.status_code == 200
        assert (
            'data-testid="site">site <strong>fixture-site</strong>' in adapted.text
            and "from v1" in adapted.text
        )
        champion = client.post("/predict", files={"file": ("x.jpeg", xray_bytes)})
        assert champion.status_code == 200 and 'data-testid="site"' not in champion.text


def test_the_upload_form_says_it_takes_jpeg_png_and_dicom(client) -> None:
    page = client.get("/").text
    assert 'data-testid="accepted-formats">JPEG, PNG or DICOM' in page
    assert "application/dicom" in page and ".dcm" in page


def test_lineage_parent_prefers_the_adapted_from_version() -> None:
    assert Lineage(adapted_from="3", backfilled_from="1").parent == "3"
    assert Lineage(backfilled_from="1").parent == "1" and Lineage().parent is None
