"""The web demo in a real browser: app.py in a subprocess on a free localhost port, headless
Chromium driven by Playwright. Upload a clip and read the answer back; upload a broken file
and see the error in the page; then check the server still answers an upload and an example.

Needs the Debian Chromium (``apt-get install -y chromium``); Playwright's own browser download
is not used. The tiny model is the one `test_infer` trains (memorised labels), so the page must
show each clip's label.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from test_infer import ENV, REPO, TINY_CFG

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: install it with "
                                                     "`apt-get update && apt-get install -y chromium`"),
]


@pytest.fixture(scope="module")
def app_url(workspace, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    options = [*workspace["options"], f"app.examples={workspace['data'] / 'videos'}",
               f"app.examples_list={workspace['data'] / 'all.txt'}"]
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "app.py", "--cfg-path", str(TINY_CFG), "--host", "127.0.0.1",
                                   "--port", str(port), "--options", *options],
                                  cwd=REPO, env={**ENV, "GRADIO_ANALYTICS_ENABLED": "False"},
                                  stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"app.py exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer on {url} within 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture()
def page(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url)
        page.wait_for_selector("#run")
        yield page
        browser.close()


def analyse(page, expected_status: str, without: str = "\u0000") -> str:
    """Click Analyse and wait until the status line starts with `expected_status` (and lacks
    `without`, to tell a new status from an identical-looking previous one)."""
    page.click("#run")
    page.wait_for_function(
        "([start, absent]) => { const text = document.querySelector('#status').innerText.trim();"
        " return text.startsWith(start) && !text.includes(absent); }", arg=[expected_status, without])
    return page.inner_text("#status")


def upload(page, path: Path) -> None:
    """Put `path` into the video input, clearing the clip that is there first."""
    clear = page.locator("#video button[aria-label=Clear]")
    if clear.count():
        clear.first.click()  # a clip the browser cannot play shows a second Clear button
    page.set_input_files("#video input[type=file]", str(path))


def test_upload_error_upload_and_example_in_a_browser(page, workspace, tmp_path):
    (first, first_label), (second, second_label), (third, third_label) = workspace["labels"].items()

    upload(page, workspace["videos"][first])
    status = analyse(page, f"Analysed {first}.mp4")
    assert page.input_value("#label textarea") == first_label
    assert page.input_value("#answer textarea") == first_label
    assert "audio (voice (HuBERT)): used" in page.inner_text("#inputs")
    assert "text (transcript): absent" in page.inner_text("#inputs")
    assert "no transcript given" in status
    assert page.locator("#frame img").count() == 1 and page.locator("#face img").count() == 1

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(2048))
    upload(page, bad)
    status = analyse(page, "Error")
    assert "bad.mp4" in status and "damaged" in status
    assert page.input_value("#label textarea") == ""

    upload(page, workspace["videos"][second])
    analyse(page, f"Analysed {second}.mp4")
    assert page.input_value("#label textarea") == second_label

    page.locator("#video button[aria-label=Clear]").first.click()
    page.locator("#examples button.gallery-item").nth(2).click()  # the third example clip
    page.wait_for_selector("#video video")
    analyse(page, f"Analysed {third}.mp4")
    assert page.input_value("#label textarea") == third_label

    page.fill("#transcript textarea", "we will see about that")
    page.get_by_label("Explain the emotion (coarse reasoning)").check()
    analyse(page, f"Analysed {third}.mp4", without="no transcript given")
    assert page.input_value("#answer textarea") != ""
    assert "text (transcript): used" in page.inner_text("#inputs")
