"""One real browser (Debian chromium + playwright): open the app, run the Playground."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --with-browser)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RANKSCOPE_STORE": str(tmp_path_factory.mktemp("b") / "s.duckdb")}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def screenshot(page, folder: Path, name: str) -> None:
    """Save a screenshot; also to $RANKSCOPE_SCREENSHOTS when set (to look at the app)."""
    shot = folder / name
    page.screenshot(path=str(shot))
    out = os.environ.get("RANKSCOPE_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / name)


def test_server_binds_localhost_only(server):
    assert server.startswith("http://127.0.0.1:")


def test_playground_in_a_real_browser(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{server}/Playground", timeout=60_000)
        metric = page.locator('[data-testid="stMetricValue"]')
        metric.wait_for(timeout=120_000)
        first = float(metric.inner_text())
        area = page.locator("textarea")
        area.fill("Lisbon has trams and a famous harbour lighthouse.")
        area.press("Control+Enter")
        page.wait_for_function(
            "v => document.querySelector('[data-testid=\"stMetricValue\"]').innerText != v",
            arg=metric.inner_text(), timeout=60_000)
        # the whole rerun is drawn: the token view shows the edited document too
        page.locator("span[title=document]", has_text="Lisbon").first.wait_for(timeout=60_000)
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=60_000)
        second = float(metric.inner_text())
        screenshot(page, tmp_path, "playground.png")
        browser.close()
    assert first != second and first > second


def test_patching_page_in_a_real_browser(server, tmp_path):
    """Run a two-pair MiniLM sweep from the page; the IE heatmaps and the token view draw."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.goto(f"{server}/Patching", timeout=60_000)
        pairs = page.get_by_role("spinbutton", name="Pairs", exact=True)
        pairs.wait_for(timeout=120_000)
        pairs.fill("2")
        page.get_by_role("button", name="Run patching").click()
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=240_000)
        page.get_by_role("tab", name="Pairs").click()
        page.locator("span[title=document]").first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Layers × positions").click()
        charts = page.locator('[data-testid="stVegaLiteChart"] svg.marks')
        charts.nth(2).wait_for(timeout=60_000)  # attention, MLP and residual-stream heatmaps
        screenshot(page, tmp_path, "patching.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert "Traceback" not in text and "Error" not in text
    assert "pairs used" in text and "key patch-" in text  # the run summary under the tabs


def test_attribution_then_ablation_in_a_real_browser(server, tmp_path):
    """Attribute one pair per label on MiniLM, send the ∩ set to the Ablation page and knock
    it out against random sets."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(f"{server}/Attribution", timeout=60_000)
        pairs = page.get_by_role("spinbutton", name="Pairs per label", exact=True)
        pairs.wait_for(timeout=120_000)
        pairs.fill("1")
        page.get_by_role("spinbutton", name="Riemann steps N", exact=True).fill("10")
        page.get_by_role("button", name="Run attribution").click()
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=240_000)
        screenshot(page, tmp_path, "attribution.png")
        page.get_by_role("tab", name="Set algebra").click()
        page.get_by_role("button", name="Use this set on the Ablation page").click()
        page.get_by_text("Saved: open").wait_for(timeout=60_000)
        page.get_by_role("link", name="Ablation").click()  # same session: the set goes along
        draws = page.get_by_role("spinbutton", name="Random sets", exact=True)
        draws.wait_for(timeout=120_000)
        draws.fill("2")
        page.get_by_role("spinbutton", name="Queries", exact=True).first.fill("2")
        page.get_by_role("button", name="Run knock-out").click()
        page.get_by_text("Random: the mean over the random sets").wait_for(timeout=240_000)
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=60_000)
        screenshot(page, tmp_path, "ablation.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert "Traceback" not in text and "Error" not in text
    assert "knocked out" in text and " ∩ " in text  # the set built on the Attribution page
