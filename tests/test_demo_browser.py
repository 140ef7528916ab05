"""``latte demo`` in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The server runs on a free local port with a tiny random-weight text-to-video model; the test types a prompt,
presses Generate, waits for the <video> element and checks it plays (nonzero duration, the model's size).
A screenshot of the page is saved to ``test-artifacts/demo_page.png`` (git-ignored; override the folder with
LATTE_TEST_ARTIFACTS). CI installs the browser and Playwright (.ci/run); without them this test fails and says
what to install.
"""
import os
import shutil
from pathlib import Path

import pytest

from test_demo_app import free_port, require, wait_for, write_text_run

from latte.apps.demo import LatteGenerator, RequestQueue, build_app, launch
from latte.sampling import LattePipeline

ARTIFACTS = Path(os.environ.get("LATTE_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser test needs Debian's chromium: apt-get install -y chromium (see .ci/run)")
    return path


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    require("gradio")
    run = write_text_run(tmp_path_factory.mktemp("browser") / "run")
    examples = [("Example prompts", ["a red circle moving left", "a blue square moving up"])]
    queue = RequestQueue(LatteGenerator(LattePipeline.load(run), examples=examples),
                         tmp_path_factory.mktemp("browser_out"))
    app = build_app(queue)
    _, url, _ = launch(app, queue, port=free_port(), block=False, quiet=True)
    yield url, queue
    app.close()
    queue.close()


@pytest.mark.slow
def test_generate_in_the_browser(demo_url):
    sync_api = require("playwright.sync_api")
    url, queue = demo_url
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url, timeout=30_000)
            page.locator("#generate").click()  # bad input first: the page says what is wrong, the server goes on
            sync_api.expect(page.get_by_text("The prompt is empty").first).to_be_visible(timeout=15_000)

            page.locator("#prompt textarea").fill("a red circle moving left")
            page.locator("#seed input").fill("7")
            steps = page.locator("#steps input[type=number]")
            steps.fill("6")
            steps.press("Enter")
            page.locator("#generate").click()
            video = page.locator("#video video")
            video.wait_for(state="attached", timeout=45_000)
            info = video.evaluate("""v => new Promise((resolve, reject) => {
                const done = () => resolve({duration: v.duration, width: v.videoWidth, height: v.videoHeight});
                if (v.readyState >= 1) done();
                v.addEventListener('loadedmetadata', done);
                v.addEventListener('error', () => reject(new Error('video error ' + (v.error && v.error.code))));
                setTimeout(() => reject(new Error('no metadata after 20 s')), 20000);
            })""")
            assert info["width"] == 16 and info["height"] == 16  # the tiny model's 16x16 px
            assert abs(info["duration"] - 1.0) < 0.2  # 8 frames at 8 fps
            sync_api.expect(page.locator("#status")).to_contain_text("seed(s) 7", timeout=10_000)
            sync_api.expect(page.locator("#settings")).to_contain_text('"seed": 7', timeout=10_000)
            sync_api.expect(page.locator("#gallery")).to_contain_text("a red circle moving left", timeout=10_000)
            page.locator("#seed input").fill("8")  # a second video; then the gallery recalls the first's settings
            page.locator("#generate").click()
            sync_api.expect(page.locator("#status")).to_contain_text("seed(s) 8", timeout=30_000)
            sync_api.expect(page.locator("#settings")).to_contain_text('"seed": 8', timeout=10_000)
            page.locator("#gallery .thumbnail-item").nth(1).click()  # newest first: [seed 8, seed 7]
            sync_api.expect(page.locator("#settings")).to_contain_text('"seed": 7', timeout=10_000)
            page.keyboard.press("Escape")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "demo_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # a page that goes away while its request runs: the request is cancelled and its slot freed
            page.locator("#seed input").fill("9")
            page.locator("#steps input[type=number]").fill("250")
            page.locator("#steps input[type=number]").press("Enter")
            page.locator("#num-videos input[type=number]").fill("4")
            page.locator("#num-videos input[type=number]").press("Enter")
            page.locator("#generate").click()
            wait_for(lambda: queue._running is not None and queue._running.step > 0)
            running = queue._running
            page.close()  # Gradio's unload event: the page's request is cancelled
            assert running.wait(20) and running.state == "cancelled" and running.step < 250
            assert queue.active() == 0
        finally:
            browser.close()
