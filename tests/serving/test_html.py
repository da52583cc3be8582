"""The HTML pages, rendered server-side: everything works as plain forms and links.

The tiny test model's predictions are meaningless: these tests check what the pages say about a
prediction (its point, threshold, uncertainty, ground truth, warning) against the JSON API's answer
for the same image, never a label.
"""

import io
import re

import pytest
from markupsafe import escape
from PIL import Image

from pneumonia_zoo.package.prediction import OOD_WARNING
from pneumonia_zoo.serving.schemas import ModelVersionInfo

NOTICE = "Research tool — not a diagnostic device."
SAMPLE = "person38_virus_84.jpeg"  # Kermany's name: person*_virus_* is PNEUMONIA


@pytest.fixture(scope="module")
def flower_jpeg() -> bytes:
    """A colour photograph, which the service's guard flags as unlike a chest X-ray."""
    from sklearn.datasets import load_sample_image

    buffer = io.BytesIO()
    Image.fromarray(load_sample_image("flower.jpg")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def main_text(page) -> str:
    """The <main> element's markup: what the page says, without header, notice and footer."""
    return page.text.split('<main id="main"', 1)[1].split("</main>", 1)[0]


def api_prediction(client, content: bytes, name: str, **params) -> dict:
    response = client.post("/api/v1/predict", files={"file": (name, content, "image/jpeg")}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def render(client, template: str, **context) -> str:
    """A template rendered by the app's own Jinja environment, for states the tiny model never reaches."""
    return client.app.state.templates.get_template(template).render(context)


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


def test_home_upload_form_offers_every_operating_point(client):
    text = client.get("/").text
    form = text.split('action="/predict"', 1)[1].split("</form>", 1)[0]
    assert '<select name="operating_point"' in form
    names = re.findall(r'<option value="([^"]+)"', form)
    assert names[0] == "balanced" and set(names) == {"balanced", "youden", "sensitivity_95", "specificity_95"}
    assert re.search(r'<option value="balanced" selected>', form)


def test_sample_result_page(client):
    page = client.get(f"/samples/{SAMPLE}")
    assert page.status_code == 200
    text = page.text
    assert NOTICE in text
    assert 'data-testid="label"' in text and re.search(r">\s*(PNEUMONIA|NORMAL)</p>", text)
    assert text.count('class="bar-row"') == 2 and "Decision threshold" in text
    assert "small_cnn" in text and "v1" in text and "ms</dd>" in text
    assert 'class="xray-heatmap" src="data:image/jpeg;base64,' in text
    assert 'id="heatmap-toggle"' in text  # CSS-only toggle: works without JavaScript


def test_sample_page_shows_ground_truth_and_whether_the_model_got_it_right(client, xray_bytes):
    sample_bytes = (client.app.state.settings.sample_images_dir / SAMPLE).read_bytes()
    predicted = api_prediction(client, sample_bytes, SAMPLE)
    text = main_text(client.get(f"/samples/{SAMPLE}"))
    truth = re.search(r'data-testid="truth">(.*?)</p>', text, re.DOTALL)
    assert truth and "Ground truth: <strong>PNEUMONIA</strong>" in truth.group(1)
    verdict = "the model got it right" if predicted["label"] == "PNEUMONIA" else "the model got it wrong"
    assert f'<span data-testid="correct">{verdict}</span>' in text
    # An upload has no known ground truth: nothing is claimed.
    upload = client.post("/predict", files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")})
    assert upload.status_code == 200 and 'data-testid="truth"' not in upload.text


def test_normal_sample_ground_truth(client):
    text = main_text(client.get("/samples/IM-0027-0001.jpeg"))
    assert "Ground truth: <strong>NORMAL</strong>" in text


def test_uncertain_marking_follows_the_prediction(client, xray_bytes):
    predicted = api_prediction(client, xray_bytes, "mine.jpeg")
    page = client.post("/predict", files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")})
    assert ('data-testid="uncertain"' in page.text) == predicted["uncertain"]
    # Both states, whatever the tiny model predicts: the page marks exactly the uncertain one.
    for uncertain in (True, False):
        text = render(client, "result.html", **result_context(predicted | {"uncertain": uncertain}))
        assert ('data-testid="uncertain"' in text) == uncertain
        assert ("is-uncertain" in text) == uncertain


def result_context(prediction: dict, **extra) -> dict:
    return {
        "prediction": prediction,
        "filename": "x.jpeg",
        "image_uri": "data:,",
        "heatmap_uri": "data:,",
        "champion": True,
        "operating_points": [],
        "truth": None,
        "correct": None,
        "explained_by": "small_cnn",
        "version": None,
        "sample": None,
        "uncertain_margin": 0.1,
        "legend_url": "/heatmap-legend.png",
    } | extra


def test_operating_point_parameter_changes_point_and_threshold(client):
    points = {p.name: p for p in client.app.state.holder.current.classifier.config.operating_points.values()}
    for name in ("balanced", "youden"):
        text = main_text(client.get(f"/samples/{SAMPLE}", params={"operating_point": name}))
        assert f'<dd data-testid="operating-point">{name}</dd>' in text
        assert f"P(PNEUMONIA) ≥ {points[name].threshold:.3f}" in text
        assert escape(points[name].rule) in text
        # The selector re-runs this sample (a GET form) and preselects the point in use.
        form = text.split('class="point-form"', 1)[1].split("</form>", 1)[0]
        assert f'method="get" action="/samples/{SAMPLE}"' in form
        assert f'<option value="{name}" selected>' in form and form.count(" selected>") == 1
        # Every point's threshold is listed, the one in use marked.
        for point in points.values():
            assert f"<td>{point.threshold:.3f}</td>" in text
        current = rf'<tr class="is-current">\s*<th scope="row">{name} <span class="badge">in use'
        assert re.search(current, text)


def test_operating_point_keeps_the_version_and_refuses_unknown_points(client):
    text = client.get(f"/samples/{SAMPLE}", params={"version": "1", "operating_point": "youden"}).text
    assert '<input type="hidden" name="version" value="1">' in text
    refused = client.get(f"/samples/{SAMPLE}", params={"operating_point": "nope"})
    assert refused.status_code == 422 and "unknown operating point" in refused.text.lower()


def test_upload_form_post_renders_the_result(client, xray_bytes):
    page = client.post(
        "/predict",
        files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")},
        data={"version": "1", "operating_point": "sensitivity_95"},
    )
    assert page.status_code == 200 and "mine.jpeg" in page.text and "xray-heatmap" in page.text
    assert '<dd data-testid="operating-point">sensitivity_95</dd>' in page.text
    # An upload cannot be re-run from the page: no form, but a pointer back to the upload form.
    assert 'class="point-form"' not in page.text and "upload it again" in page.text


def test_out_of_population_warning_never_hides_the_prediction(client, flower_jpeg):
    predicted = api_prediction(client, flower_jpeg, "flower.jpeg")
    assert predicted["out_of_population"]["flagged"], "the guard should flag a colour photograph"
    text = main_text(client.post("/predict", files={"file": ("flower.jpeg", flower_jpeg, "image/jpeg")}))
    warning = text.split('data-testid="ood-warning"', 1)[1].split("</div>", 1)[0]
    assert escape(OOD_WARNING[1:]) in warning  # its first letter is capitalised on the page
    for reason in predicted["out_of_population"]["reasons"]:
        assert escape(reason[1:]) in warning
    assert f'data-testid="label">{predicted["label"]}</p>' in text and text.count('class="bar-row"') == 2


def test_no_warning_for_an_image_the_guard_accepts(client):
    prediction = {
        "label": "NORMAL",
        "probabilities": {"NORMAL": 0.9, "PNEUMONIA": 0.1},
        "threshold": 0.5,
        "operating_point": {"name": "balanced", "threshold": 0.5, "rule": "r"},
        "uncertain": False,
        "out_of_population": {"flagged": False, "score": 0.2, "reasons": [], "warning": None},
        "model": {"name": "m", "version": "1", "architecture": "small_cnn", "runtime": "onnx"},
        "latency_ms": 1.0,
    }
    assert 'data-testid="ood-warning"' not in render(client, "result.html", **result_context(prediction))


def test_heatmap_legend_and_caption(client):
    text = main_text(client.get(f"/samples/{SAMPLE}"))
    caption = text.split('data-testid="heatmap-caption"', 1)[1].split("</figcaption>", 1)[0]
    # The legend sits inside the caption, which the CSS hides with the heatmap.
    assert 'data-testid="heatmap-legend"' in caption and 'src="/heatmap-legend.png"' in caption
    assert ">low<" in caption and ">high<" in caption and "Grad-CAM of small_cnn" in caption
    css = client.get("/static/style.css").text
    assert ".heatmap-toggle:not(:checked) ~ .xray .heatmap-caption" in css
    legend = client.get("/heatmap-legend.png")
    assert legend.status_code == 200 and legend.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(legend.content)).convert("RGB")
    (r_low, _, b_low), (r_high, _, b_high) = image.getpixel((0, 0)), image.getpixel((image.width - 1, 0))
    assert b_low > r_low and r_high > b_high  # low is blue, high is red, as the page labels them


def test_models_page(client):
    page = client.get("/models")
    assert page.status_code == 200
    text = page.text
    assert NOTICE in text and "small_cnn" in text and '<span class="badge">champion</span>' in text
    assert 'href="http://127.0.0.1:5000/#/models/pneumonia-classifier/versions/1"' in text
    assert '<select name="version">' in text and 'action="/compare"' in text
    for header in ("val AUC", "test AUC", "test sens.", "test spec.", "Kind", "Test images"):
        assert f">{header}</th>" in text
    assert '<a href="/api/v1/models/1/card">model card</a>' in text
    assert client.get("/api/v1/models/1/card").status_code == 200
    assert "<td>single</td>" in text
    assert 'class="table-scroll" role="region"' in text  # narrow screens scroll the table, not the page


def version_info(version: str, **fields) -> ModelVersionInfo:
    return ModelVersionInfo(
        name="pneumonia-classifier",
        version=version,
        architecture="resnet50",
        champion=False,
        aliases=[],
        onnx=True,
        mlflow_url="http://mlflow/",
        card_url=f"/api/v1/models/{version}/card",
        **fields,
    )


def test_models_page_labels_a_subsample_and_lists_evaluations(client):
    from pneumonia_zoo.serving.routes.html import evaluation_rows, tested_on

    versions = [
        version_info("3", metrics={"test_auc": 0.9, "test_images": 624.0}),
        version_info(
            "2",
            metrics={"test_auc": 0.8, "test_images": 40.0},
            kind="ensemble",
            evaluations={"eval_site_b_auc": 0.91, "eval_site_b_flag_rate": 0.05, "eval_site_b_images": 120.0},
        ),
        version_info("1", metrics={"test_auc": 0.7}),
    ]
    text = render(
        client,
        "models.html",
        versions=versions,
        scopes={v.version: tested_on(v) for v in versions},
        evaluations={v.version: evaluation_rows(v) for v in versions},
        official_test_images=624,
        operating_points=[],
        registry_error=None,
        model={"name": "m"},
        reason="",
        samples=[],
        architectures=[],
        mlflow_ui_url="http://mlflow/",
    )
    cells = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", c)).strip()
        for c in re.findall(r'<td data-testid="test-images">(.*?)</td>', text, re.DOTALL)
    ]
    assert cells == ["624 official", "40 subsample", "not recorded"]
    assert "<td>ensemble</td>" in text
    evaluations = re.sub(r"\s+", " ", text.split('class="evaluation-list"', 1)[1].split("</ul>", 1)[0])
    assert "<strong>site_b</strong>: auc 0.910, flag rate 0.050, images 120</li>" in evaluations
    assert text.count('<tr class="evaluations') == 1  # only the version with logged evaluations


def one_card(text: str) -> str:
    return text.split('<li class="card">', 1)[1].split("\n    </li>", 1)[0]


def test_compare_view(client, xray_bytes):
    page = client.get("/samples/IM-0027-0001.jpeg/compare")
    assert page.status_code == 200 and page.text.count('<li class="card">') == 1 and "small_cnn" in page.text
    card = one_card(page.text)
    assert '<figure class="xray card-heatmap">' in card and 'src="data:image/jpeg;base64,' in card
    assert "Grad-CAM of small_cnn" in card
    assert 'data-testid="heatmap-legend"' in page.text
    posted = client.post("/compare", files={"file": ("mine.jpeg", xray_bytes, "image/jpeg")})
    assert posted.status_code == 200 and "mine.jpeg" in posted.text


def test_compare_cards_carry_the_out_of_population_warning(client, flower_jpeg):
    page = client.post("/compare", files={"file": ("flower.jpeg", flower_jpeg, "image/jpeg")})
    card = one_card(page.text)
    assert 'data-testid="ood-warning"' in card and escape(OOD_WARNING[1:]) in card
    assert re.search(r'class="verdict verdict-(normal|pneumonia)', card)  # the prediction is still shown


def test_404_page_says_it_once(client):
    page = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    text = main_text(page)
    assert text.lower().count("not found") == 1, text
    assert "<h1>Page not found</h1>" in text and "There is no page at this address" in text
    assert "no-such-page" not in text  # the address is not echoed back
    # A specific 404 keeps its own sentence under a short heading.
    sample = main_text(client.get("/samples/nope.jpeg"))
    assert "There is no sample image called" in sample and sample.lower().count("not found") == 1
