"""End to end in a real browser: Debian's chromium driven by Playwright against a real uvicorn.

Screenshots go to test-artifacts/ at the repository root (gitignored).
"""

import re
from pathlib import Path

import pytest

from pneumonia_zoo.config import PROJECT_ROOT
from tests.serving.conftest import uvicorn_app

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: `make test` installs it "
                                                     "(apt-get install chromium)"),
]


def test_upload_sample_heatmap_and_models_page(registered_store, tmp_path, originals):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    label = re.compile(r"^(PNEUMONIA|NORMAL)$")
    with uvicorn_app(registered_store, tmp_path / "uvicorn.log", reload_interval_s="0") as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{url}/")
            expect(page.get_by_text("Research tool — not a diagnostic device.")).to_be_visible()
            expect(page.locator("a.sample")).to_have_count(6)
            page.screenshot(path=ARTIFACTS / "01-home.png", full_page=True)

            # Upload with the file picker; the page's script shows the chosen name.
            page.set_input_files("#file", str(originals / "person56_virus_112.jpeg"))
            expect(page.locator(".dropzone-file")).to_have_text("person56_virus_112.jpeg")
            page.get_by_role("button", name="Predict").click()
            expect(page.get_by_test_id("label")).to_have_text(label)
            heatmap = page.locator("img.xray-heatmap")
            expect(heatmap).to_be_visible()
            assert page.evaluate("document.querySelector('img.xray-heatmap').naturalWidth") > 0
            expect(page.get_by_text("small_cnn")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "02-result-heatmap.png", full_page=True)
            page.get_by_label("Grad-CAM heatmap").uncheck()
            expect(heatmap).to_be_hidden()
            page.screenshot(path=ARTIFACTS / "03-result-no-heatmap.png", full_page=True)

            # One click on a sample predicts it.
            page.goto(f"{url}/")
            page.locator("a.sample").first.click()
            expect(page.get_by_test_id("label")).to_have_text(label)
            expect(page.locator("img.xray-heatmap")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "04-sample-result.png", full_page=True)

            page.get_by_role("link", name="Models", exact=True).click()
            expect(page.locator("table.models")).to_contain_text("small_cnn")
            expect(page.locator(".badge")).to_have_text("champion")
            page.screenshot(path=ARTIFACTS / "05-models.png", full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            page.goto(f"{url}/samples/person38_virus_84.jpeg")
            expect(page.get_by_test_id("label")).to_have_text(label)
            page.screenshot(path=ARTIFACTS / "06-result-mobile.png", full_page=True)
        finally:
            browser.close()
