"""``ganzoo serve`` end to end in a real headless browser (Debian's chromium + chromium-driver,
driven by selenium; scripts/install.sh installs all three).

uvicorn serves the app from a thread on a free port of 127.0.0.1; the browser loads the zoo
index, changes the seed on a model page and checks that the image changed, and loads a run
page whose curve is drawn, and redrawn when metrics.jsonl grows. Skipped only where no
Chromium (or its driver) is installed. Set GANZOO_SCREENSHOTS=DIR to save the pages as PNGs
(that is how docs/serve/*.png are made).
"""
from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def _find(names):
    for name in names:
        path = shutil.which(name) or (name if os.path.isabs(name) and os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


BROWSER = os.environ.get("GANZOO_CHROMIUM") or _find(BROWSERS)
DRIVER = os.environ.get("GANZOO_CHROMEDRIVER") or _find(DRIVERS)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no Chromium browser installed (scripts/install.sh "
                                               "installs Debian's chromium and chromium-driver)"),
    pytest.mark.skipif(DRIVER is None, reason="no chromedriver installed (Debian package chromium-driver)"),
]


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    from ganzoo.cli import main

    runs = tmp_path_factory.mktemp("browser") / "runs"
    argv = ["train", "mlp", "--dataset", "ring8", "--steps", "40", "--batch-size", "64",
            "--log-every", "5", "--sample-every", "20", "--checkpoint-every", "20",
            "--no-progress", "--device", "cpu", "--num-threads", "1", "--out", str(runs / "ring")]
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code in (0, None), f"training the tiny run failed (exit {exc.code})"
    return runs


@pytest.fixture(scope="module")
def server(run_root):
    import torch
    import uvicorn

    from ganzoo.serve.app import create_app
    from ganzoo.serve.command import LOCAL_HOST_HEADERS, bind

    torch.set_num_threads(1)
    app = create_app([str(run_root)], allowed_hosts=LOCAL_HOST_HEADERS)
    app.state.serve.index.ttl = 0
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1000", "--hide-scrollbars", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, script, timeout=30.0, what="condition"):
    """Poll a JS expression until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {script}")
        time.sleep(0.1)


IMAGE_LOADED = "(() => {{ const i = document.querySelector('{sel}'); " \
               "return i && i.complete && i.naturalWidth > 0 && i.src; }})()"
PIXELS = """(() => { const i = document.querySelector(arguments[0] || '#grid');
  const c = document.createElement('canvas'); c.width = i.naturalWidth; c.height = i.naturalHeight;
  c.getContext('2d').drawImage(i, 0, 0); return c.toDataURL(); })()"""


def pixels(driver, sel="#grid"):
    return driver.execute_script(f"return {PIXELS.replace('arguments[0]', repr(sel))};")


def fetch(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def shot(driver, name):
    folder = os.environ.get("GANZOO_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, min(max(height, 800), 2200))
    time.sleep(0.5)
    driver.save_screenshot(str(Path(folder) / f"{name}.png"))
    driver.set_window_size(1360, 1000)


def severe_logs(driver):
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_zoo_index_then_model_page_seed_change(server, browser):
    import ganzoo

    browser.get(server + "/")
    n_models = len(ganzoo.list_models())
    wait_for(browser, f"document.querySelectorAll('#models .card').length === {n_models}",
             what="the model cards")
    ids = browser.execute_script(
        "return [...document.querySelectorAll('#models .card')].map(c => c.dataset.id)")
    assert ids == ganzoo.list_models()
    wait_for(browser, "[...document.querySelectorAll('#models .thumb')].every(i => i.complete && i.naturalWidth > 0)",
             timeout=60, what="the thumbnails")
    wait_for(browser, "document.querySelector('#runs-table tbody a')", what="the runs table")
    assert browser.execute_script("return document.querySelector('#runs-table tbody a').textContent") == "ring"
    shot(browser, "zoo")
    assert severe_logs(browser) == []

    # open the dcgan card, as a person would
    browser.execute_script("document.querySelector('.card[data-id=\"dcgan-fashion-mnist\"]').click()")
    wait_for(browser, "location.pathname === '/models/dcgan-fashion-mnist'", what="the model page")
    first = wait_for(browser, IMAGE_LOADED.format(sel="#grid"), what="the first grid")
    assert "seed=0" in first and "n=64" in first
    before = pixels(browser)
    assert "fid" in browser.execute_script("return document.querySelector('#metrics-table').textContent")

    from selenium.webdriver.common.by import By

    seed = browser.find_element(By.ID, "seed")
    seed.clear()
    seed.send_keys("7")
    second = wait_for(browser, "(() => { const s = " + IMAGE_LOADED.format(sel="#grid") +
                      "; return s && s.includes('seed=7') && s; })()", what="the grid for seed 7")
    assert second != first
    assert pixels(browser) != before  # the page shows a different picture
    assert fetch(second) != fetch(first)
    assert fetch(second) == fetch(second)  # and the same seed gives the same bytes
    assert "seed=7" in browser.execute_script("return location.search")  # shareable URL
    status = browser.execute_script("return document.querySelector('#sample-status').textContent")
    assert "seed 7" in status
    # the interpolation strip is drawn too; a bad value shows the server's message
    wait_for(browser, IMAGE_LOADED.format(sel="#strip"), what="the interpolation strip")
    n = browser.find_element(By.ID, "n")
    n.clear()
    n.send_keys("999")
    wait_for(browser, "document.querySelector('#sample-status').textContent.includes('n must be in 1..256')",
             what="the error message for n=999")
    assert all(" 400 " in m or "(Bad Request)" in m for m in severe_logs(browser))  # only n=999's


def test_run_page_draws_and_updates_the_curves(server, browser, run_root):
    browser.get(server + "/runs/ring")
    wait_for(browser, "document.querySelectorAll('svg.chart path.series').length >= 2", what="the curves")
    d = browser.execute_script("return document.querySelector('svg.chart path.series').getAttribute('d')")
    assert d.startswith("M") and d.count("L") >= 5  # 8 records: a drawn line, not an empty path
    drawn = int(browser.execute_script("return document.querySelector('svg.chart').dataset.points"))
    assert drawn >= 16  # d_loss and g_loss, 8 points each
    wait_for(browser, IMAGE_LOADED.format(sel="#step-grid"), what="the sample grid of a step")
    wait_for(browser, IMAGE_LOADED.format(sel="#grid"), what="live samples of the export")
    slider_max = browser.execute_script("return +document.querySelector('#step-slider').max")
    assert slider_max >= 0
    rows = browser.execute_script("return document.querySelectorAll('#files-table tbody tr').length")
    assert rows == 3  # one export, two checkpoints
    shot(browser, "run")

    # the run "trains on": new lines in metrics.jsonl appear without reloading the page
    with open(run_root / "ring" / "metrics.jsonl", "a") as fh:
        for step in (45, 50, 55):
            fh.write(json.dumps({"step": step, "d_loss": 1.2, "g_loss": 0.9, "img_per_s": 1e4}) + "\n")
    wait_for(browser, f"+document.querySelector('svg.chart').dataset.points >= {drawn + 6}",
             timeout=15, what="the curve to grow")
    assert severe_logs(browser) == []


def test_plugins_page(server, browser):
    browser.get(server + "/plugins")
    wait_for(browser, "document.querySelectorAll('#plugins-table tbody tr').length > 0", what="plugins")
    text = browser.execute_script("return document.body.textContent")
    assert "ganzoo-dcgan" in text and "register_architectures" in text
    kinds = browser.execute_script("return [...document.querySelectorAll('.kind')].map(k => k.id)")
    assert {"kind-architecture", "kind-loss", "kind-model"} <= set(kinds)
