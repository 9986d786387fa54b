"""Screenshot every page (each tab) of the app in Debian's chromium and list what a class
could not read: the chart check of ``tests/browser/chart_check.py`` at 1400 and 1000 px.

    python scripts/page_screenshots.py --store STORE.duckdb --out shots/

The store should hold a run of each analysis (the pages draw the newest stored one);
``tests/browser/test_browser.py`` builds such a store with small runs. Exit 1 when a chart
has a problem, so the script can gate a change.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def serve(store: Path, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Streamlit on a free local port over ``store`` (``env``: more variables); returns
    (process, URL) once healthy."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RANKSCOPE_STORE": str(store), "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.port", str(port), "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("streamlit did not start")


def main() -> int:
    from playwright.sync_api import sync_playwright

    from chart_check import walk

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[1400, 1000])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = serve(args.store)
    found = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            for width in args.widths:
                found += walk(page, url, args.out, width)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    for line in found:
        print(line)
    print(f"{len(found)} problems; screenshots in {args.out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
