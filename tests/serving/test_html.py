"""The HTML pages, rendered server-side: everything works as plain forms and links."""

NOTICE = "Research tool — not a diagnostic device."


def test_home_has_an_upload_form_and_samples(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert NOTICE in text
    assert 'action="/predict"' in text and 'enctype="multipart/form-data"' in text and 'type="file"' in text
    assert text.count('<a class="sample" href="/samples/') == 6
    assert client.get("/sample-images/person38_virus_84.jpeg").headers["content-type"] == "image/jpeg"
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200


def test_sample_result_page(client):
    page = client.get("/samples/person38_virus_84.jpeg")
    assert page.status_code == 200
    text = page.text
    assert NOTICE in text
    assert 'data-testid="label"' in text and ("PNEUMONIA</p>" in text or "NORMAL</p>" in text)
    assert text.count('class="bar-row"') == 2 and "Decision threshold" in text
    assert "small_cnn" in text and "v1" in text and "ms</dd>" in text
    assert 'class="xray-heatmap" src="data:image/jpeg;base64,' in text
    assert 'id="heatmap-toggle"' in text  # CSS-only toggle: works without JavaScript


def test_upload_form_post_renders_the_result(client, xray_bytes):
    page = client.post("/predict", files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")},
                       data={"version": "1"})
    assert page.status_code == 200 and "mine.jpeg" in page.text and "xray-heatmap" in page.text


def test_models_page(client):
    page = client.get("/models")
    assert page.status_code == 200
    text = page.text
    assert NOTICE in text and "small_cnn" in text and '<span class="badge">champion</span>' in text
    assert 'href="http://127.0.0.1:5000/#/models/pneumonia-classifier/versions/1"' in text
    assert '<select name="version">' in text and 'action="/compare"' in text
    for metric in ("val AUC", "test AUC", "test sens.", "test spec."):
        assert metric in text


def test_compare_view(client, xray_bytes):
    page = client.get("/samples/IM-0027-0001.jpeg/compare")
    assert page.status_code == 200 and page.text.count('<li class="card">') == 1 and "small_cnn" in page.text
    posted = client.post("/compare", files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")})
    assert posted.status_code == 200 and "mine.jpeg" in posted.text
