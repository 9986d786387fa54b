"""Seconds from `streamlit run app.py` to a score shown in the Playground, in a real browser.

    python bench/first_start.py [--page Playground] [--fresh-cache]

Starts the server on a free port with an empty store, opens the page in Debian's chromium
(playwright) and waits until the Playground's score metric is drawn. ``--fresh-cache`` points
``RANKSCOPE_CACHE`` at an empty folder, as on a fresh checkout. Prints
``RESULT first_start_seconds=<s>`` and the share spent before the server answered.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--page", default="Playground")
    parser.add_argument("--fresh-cache", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="rankscope-start-"))
    env = {**os.environ, "RANKSCOPE_STORE": str(tmp / "store.duckdb"), "HF_HUB_OFFLINE": "1"}
    if args.fresh_cache:
        env["RANKSCOPE_CACHE"] = str(tmp / "cache")
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                               "--server.port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        healthy = time.perf_counter() - started
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{url}/{args.page}")
            page.locator('[data-testid="stMetricValue"]').wait_for(timeout=300_000)
            total = time.perf_counter() - started
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"server healthy after {healthy:.1f}s; score shown after {total:.1f}s")
    print(f"RESULT first_start_seconds={total:.1f}")


if __name__ == "__main__":
    main()
