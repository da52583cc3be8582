"""End to end in a real browser: Debian's chromium driven by Playwright against a real uvicorn.

The pages run under the app's real Content-Security-Policy here, so anything inline that the policy
blocks (a script, a style) would break these tests as it breaks the page. Screenshots go to
test-artifacts/ at the repository root (gitignored).
"""

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import uvicorn_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LABEL = re.compile(r"^(PNEUMONIA|NORMAL)$")
SAMPLE = "person38_virus_84.jpeg"
OOD_TEXT = "looks unlike the paediatric chest X-rays the model was trained on: treat the output as unreliable"
# ReDoc's footer shows Redocly's logo from their CDN; the docs policy blocks it and ReDoc then drops
# the image (its onError): the one refused request allowed on /redoc.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: `make test` installs it (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def url(registered_store, tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("e2e") / "uvicorn.log"
    with uvicorn_app(registered_store, log, reload_interval_s="0") as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, url):
    """A fresh page whose requests may reach only the app: anything else is aborted and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.external_requests = []
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))

    def local_only(route) -> None:
        if route.request.url.startswith(f"{url}/"):
            route.continue_()
        else:
            page.external_requests.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    yield page
    context.close()


def csp_violations(page) -> list[str]:
    return [text for text in page.console_errors if "Content Security Policy" in text]


def threshold_text(threshold: float) -> str:
    return f"P(PNEUMONIA) ≥ {threshold:.3f}"


def test_upload_sample_heatmap_and_models_page(page, url, originals):
    from playwright.sync_api import expect

    page.goto(f"{url}/")
    expect(page.get_by_text("Research tool — not a diagnostic device.")).to_be_visible()
    expect(page.locator("a.sample")).to_have_count(6)
    page.screenshot(path=ARTIFACTS / "01-home.png", full_page=True)

    # Upload with the file picker; the page's script shows the chosen name.
    page.set_input_files("#file", str(originals / "person56_virus_112.jpeg"))
    expect(page.locator(".dropzone-file")).to_have_text("person56_virus_112.jpeg")
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_test_id("label")).to_have_text(LABEL)
    heatmap = page.locator("img.xray-heatmap")
    expect(heatmap).to_be_visible()
    assert page.evaluate("document.querySelector('img.xray-heatmap').naturalWidth") > 0
    expect(page.get_by_text("small_cnn").first).to_be_visible()
    page.screenshot(path=ARTIFACTS / "02-result-heatmap.png", full_page=True)

    # One click on a sample predicts it.
    page.goto(f"{url}/")
    page.locator("a.sample").first.click()
    expect(page.get_by_test_id("label")).to_have_text(LABEL)
    expect(page.locator("img.xray-heatmap")).to_be_visible()

    page.get_by_role("link", name="Models", exact=True).click()
    expect(page.locator("table.models")).to_contain_text("small_cnn")
    expect(page.locator("table.models .badge").filter(has_text="champion")).to_have_count(1)
    page.screenshot(path=ARTIFACTS / "05-models.png", full_page=True)
    assert csp_violations(page) == [] and page.external_requests == []


def test_operating_point_selector_changes_the_point_and_threshold(page, url):
    from playwright.sync_api import expect

    page.goto(f"{url}/samples/{SAMPLE}")
    expect(page.get_by_test_id("operating-point")).to_have_text("balanced")
    shown = page.get_by_test_id("threshold").inner_text()
    # The point whose threshold reads differently from the default's, as the API reports it.
    thresholds = {
        name: api_threshold(url, name)
        for name in page.locator("#operating-point option").evaluate_all(
            "options => options.map(o => o.value)"
        )
    }
    assert shown == threshold_text(thresholds["balanced"])
    other = next(name for name, t in thresholds.items() if threshold_text(t) != shown)

    page.select_option("#operating-point", other)
    page.get_by_role("button", name="Apply").click()  # a plain GET form: no script involved
    expect(page.get_by_test_id("operating-point")).to_have_text(other)
    expect(page.get_by_test_id("threshold")).to_have_text(threshold_text(thresholds[other]))
    assert f"operating_point={other}" in page.url
    expect(page.locator("#operating-point")).to_have_value(other)
    expect(page.locator("tr.is-current th")).to_contain_text(other)
    page.screenshot(path=ARTIFACTS / "03-operating-point.png", full_page=True)

    # An upload chooses its point on the upload form.
    page.goto(f"{url}/")
    page.select_option("#file-operating-point", "sensitivity_95")
    page.set_input_files("#file", str(PROJECT_ROOT / "tests/fixtures/originals/person56_virus_112.jpeg"))
    page.get_by_role("button", name="Predict").click()
    expect(page.get_by_test_id("operating-point")).to_have_text("sensitivity_95")
    expect(page.get_by_test_id("threshold")).to_have_text(threshold_text(thresholds["sensitivity_95"]))


def api_threshold(url: str, point: str) -> float:
    image = (PROJECT_ROOT / "tests/fixtures/originals/person56_virus_112.jpeg").read_bytes()
    response = httpx.post(
        f"{url}/api/v1/predict", params={"operating_point": point}, files={"file": ("x.jpeg", image)}
    )
    response.raise_for_status()
    assert response.json()["operating_point"]["name"] == point
    return response.json()["threshold"]


def test_out_of_population_warning_for_a_colour_photograph(page, url, tmp_path):
    from playwright.sync_api import expect
    from sklearn.datasets import load_sample_image

    flower = tmp_path / "flower.jpeg"
    Image.fromarray(load_sample_image("flower.jpg")).save(flower, format="JPEG", quality=90)
    page.goto(f"{url}/")
    page.set_input_files("#file", str(flower))
    page.get_by_role("button", name="Predict").click()
    warning = page.get_by_test_id("ood-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text(OOD_TEXT)
    expect(warning).to_contain_text("colour image")
    expect(page.get_by_test_id("label")).to_have_text(LABEL)  # the prediction is still shown
    expect(page.locator(".bar-row")).to_have_count(2)
    page.screenshot(path=ARTIFACTS / "04-out-of-population.png", full_page=True)


def test_heatmap_legend_shown_and_caption_hidden_with_the_heatmap(page, url):
    from playwright.sync_api import expect

    page.goto(f"{url}/samples/{SAMPLE}")
    heatmap, caption = page.locator("img.xray-heatmap"), page.get_by_test_id("heatmap-caption")
    legend = page.get_by_test_id("heatmap-legend")
    for visible in (heatmap, caption, legend):
        expect(visible).to_be_visible()
    expect(legend).to_contain_text("low")
    expect(legend).to_contain_text("high")
    scale = page.locator("img.legend-scale")
    scale.evaluate("img => img.decode()")
    assert scale.evaluate("img => img.naturalWidth") > 0  # loaded under the page's policy
    page.screenshot(path=ARTIFACTS / "06-legend.png", full_page=True)

    page.get_by_label("Grad-CAM heatmap").uncheck()  # a checkbox and CSS: works without script
    for hidden in (heatmap, caption, legend):
        expect(hidden).to_be_hidden()
    expect(page.locator("img.xray-base")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "07-no-heatmap.png", full_page=True)
    page.get_by_label("Grad-CAM heatmap").check()
    expect(caption).to_be_visible()
    assert csp_violations(page) == []


@pytest.mark.parametrize("width", [1280, 1440])
def test_models_table_has_no_clipped_column_at_desktop_widths(page, url, width):
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{url}/models")
    container = page.locator(".table-scroll").first.bounding_box()
    headers = page.locator("table.models thead th")
    assert headers.count() >= 13
    right_edge = min(width, container["x"] + container["width"])
    for index in range(headers.count()):
        box = headers.nth(index).bounding_box()
        name = headers.nth(index).inner_text()
        assert box["x"] >= container["x"] - 0.5 and box["x"] >= 0, name
        assert box["x"] + box["width"] <= right_edge + 0.5, f"{name!r} ends at {box['x'] + box['width']}"
    # Nothing left to scroll to inside the table's box either.
    assert page.evaluate(
        "(() => { const s = document.querySelector('.table-scroll');"
        " return s.scrollWidth <= s.clientWidth; })()"
    )
    page.screenshot(path=ARTIFACTS / f"08-models-{width}.png", full_page=True)


@pytest.mark.parametrize("path", ["/", f"/samples/{SAMPLE}", "/models", "/samples/IM-0027-0001.jpeg/compare"])
def test_no_sideways_scroll_on_a_phone(page, url, path):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}{path}")
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    name = re.sub(r"\W+", "-", path).strip("-") or "home"
    page.screenshot(path=ARTIFACTS / f"09-phone-{name}.png", full_page=True)


def test_compare_view_shows_each_models_heatmap(page, url):
    from playwright.sync_api import expect

    page.goto(f"{url}/samples/IM-0027-0001.jpeg/compare")
    cards = page.locator("li.card")
    expect(cards).to_have_count(1)
    card_heatmap = cards.first.locator(".card-heatmap img")
    expect(card_heatmap).to_be_visible()
    assert card_heatmap.evaluate("img => img.naturalWidth") > 0
    expect(page.get_by_test_id("heatmap-legend")).to_be_visible()


def test_api_docs_render_without_internet(page, url):
    from playwright.sync_api import expect

    page.goto(f"{url}/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator('.opblock-summary-path[data-path="/api/v1/predict"]')).to_be_visible()
    page.locator('.opblock-summary-path[data-path="/api/v1/predict"]').click()
    expect(page.get_by_role("button", name="Try it out")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "10-docs.png", full_page=True)
    assert csp_violations(page) == [] and page.external_requests == []

    page.goto(f"{url}/redoc")
    expect(page.locator("h1", has_text="Pneumonia Zoo")).to_be_visible()
    expect(page.get_by_role("menuitem").first).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Classify one X-ray"))).to_be_visible()
    page.screenshot(path=ARTIFACTS / "11-redoc.png")
    assert page.external_requests == []  # the policy refused the logo before any request was made
    assert all(REDOCLY_LOGO in text for text in csp_violations(page)), csp_violations(page)
