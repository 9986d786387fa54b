"""One real browser (Debian chromium + playwright): open the app, run the Playground."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


sys.path.insert(0, str(ROOT / "scripts"))
from page_screenshots import serve  # noqa: E402 - the script's server, shared


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --with-browser)")
    # 50 KB upload limit: the upload test crosses it cheaply
    proc, url = serve(tmp_path_factory.mktemp("b") / "s.duckdb",
                      {"RANKSCOPE_UPLOAD_LIMIT_MB": "0.05"})
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def screenshot(page, folder: Path, name: str) -> None:
    """Save a screenshot; also to $RANKSCOPE_SCREENSHOTS when set (to look at the app)."""
    shot = folder / name
    page.screenshot(path=str(shot))
    out = os.environ.get("RANKSCOPE_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(out) / name)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on ``port`` (Linux /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(address)
    return found


def test_server_binds_localhost_only(server):
    """What the server process really listens on (.streamlit/config.toml), not the URL this
    fixture built: 127.0.0.1 only, no wildcard address."""
    port = int(server.rsplit(":", 1)[1])
    addresses = _listening_addresses(port)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1, little-endian hex


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
        # opened by its URL, the page still shows RankScope's navigation, Home first
        links = page.locator('[data-testid="stSidebar"] a').all_inner_texts()
        browser.close()
    assert first != second and first > second
    assert [t.strip() for t in links[:9]] == ["Home", "Lessons", "Playground", "Workspace",
                                              "Probing", "Patching", "Attribution", "Ablation",
                                              "Score lens"]


def test_playground_walk_rank_view_edit_saliency_axioms_patching_side_by_side(server, tmp_path):
    """The Playground end to end: pick a query, load its top candidate, edit it and see its new
    rank; saliency drawn; the axiom edits; where an edit acted; a second ranker beside."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{server}/Playground", timeout=60_000)
        page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)
        page.get_by_text("Rank view: a query of the collection").click()
        query = page.get_by_role("combobox", name="Query", exact=True)
        query.wait_for(timeout=30_000)
        page.wait_for_timeout(500)  # the expander's content settles
        query.click()
        page.get_by_role("listbox").wait_for(timeout=30_000)
        page.get_by_role("option").nth(1).click()  # the first query of the collection
        load = page.get_by_role("button", name="Load into the editor")
        load.wait_for(timeout=120_000)
        load.click()
        rank = page.locator('[data-testid="stMetric"]', has_text="Rank among the 20 candidates")
        rank.wait_for(timeout=60_000)
        assert rank.locator('[data-testid="stMetricValue"]').inner_text() == "1"
        # saliency of the loaded document is drawn
        page.locator('span[title^="document: "]').first.wait_for(timeout=60_000)
        # an off-topic rewrite drops down the list
        area = page.locator("textarea")
        loaded = area.input_value()
        area.fill("The committee meets on the second Tuesday of every month in the town hall.")
        area.press("Control+Enter")
        # the rerun has drawn the edited text (token view), so the rank shown is the new one
        page.locator("span[title=document]", has_text="committee").first.wait_for(
            timeout=60_000)
        page.wait_for_timeout(500)
        moved = rank.locator('[data-testid="stMetricValue"]').inner_text()
        # the axiom edits on the loaded document
        area.fill(loaded)
        area.press("Control+Enter")
        page.get_by_role("button", name="Try the axiom edits").click()
        page.locator("th", has_text="as expected").first.wait_for(state="attached",
                                                                   timeout=60_000)
        # where did an edit act: one word for one of the same token length
        page.get_by_role("button", name="Keep the current text as the original").click()
        area.fill(loaded.replace(" the ", " a ", 1) if " the " in loaded else loaded + "")
        area.press("Control+Enter")
        page.get_by_role("button", name="Locate the edit").click()
        page.get_by_text("Residual stream · edited→original").first.wait_for(timeout=120_000)
        # a second ranker beside the first
        beside = page.get_by_role("combobox", name="Side by side with")
        beside.scroll_into_view_if_needed()
        beside.click()
        page.get_by_role("listbox").wait_for(timeout=30_000)
        page.keyboard.type("minilm-cross-encoder-demo")
        page.keyboard.press("Enter")
        page.locator('[data-testid="stMetric"]',
                     has_text="minilm-cross-encoder-demo score").wait_for(timeout=120_000)
        page.get_by_text("Kendall τ").first.wait_for(timeout=60_000)
        screenshot(page, tmp_path, "playground-walk.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert int(moved) > 1
    assert "Traceback" not in text


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
        page.get_by_role("button", name="Run activation patching").click()
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=240_000)
        page.get_by_role("tab", name="Pairs").click()
        page.locator("span[title=document]").first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Layers × positions").click()
        charts = page.locator('[data-testid="stVegaLiteChart"] svg.marks')
        charts.nth(2).wait_for(timeout=60_000)  # attention, MLP and residual-stream heatmaps
        page.get_by_text("pairs used").first.wait_for(timeout=60_000)  # the page's last line
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
        page.get_by_text("Set: open").wait_for(timeout=60_000)
        page.get_by_role("link", name="Ablation").click()  # same session: the set goes along
        draws = page.get_by_role("spinbutton", name="Random sets", exact=True)
        draws.wait_for(timeout=120_000)
        draws.fill("2")
        page.get_by_role("spinbutton", name="Queries", exact=True).first.fill("2")
        page.get_by_role("button", name="Run neuron knock-out").click()
        page.get_by_text("random: the mean over the random sets").wait_for(timeout=240_000)
        page.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=60_000)
        screenshot(page, tmp_path, "ablation.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert "Traceback" not in text and "Error" not in text
    assert "knocked out" in text and " ∩ " in text  # the set built on the Attribution page


def test_upload_a_collection_in_a_real_browser(server, tmp_path):
    """Upload collection files through the sidebar: over the limit → one error and nothing
    kept; a good set → the new collection is chosen and its statistics shown."""
    import json

    from playwright.sync_api import sync_playwright

    docs = "\n".join(json.dumps({"docno": f"d{i}", "title": "", "text": t}) for i, t in
                     enumerate(["honey keeps for years", "bees make honey", "trams in Lisbon"]))
    good = {"docs.jsonl": docs + "\n", "queries.tsv": "q1\thoney\nq2\ttrams\n",
            "qrels.txt": "q1 0 d0 2\nq1 0 d1 1\nq2 0 d2 1\n"}
    big = dict(good, **{"docs.jsonl": docs + "\n" + json.dumps(
        {"docno": "d9", "title": "", "text": "word " * 20_000}) + "\n"})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{server}/Workspace", timeout=60_000)
        page.get_by_text("Upload a collection").click()
        chooser = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        files = [{"name": n, "mimeType": "text/plain", "buffer": t.encode()}
                 for n, t in big.items()]
        chooser.set_input_files(files)
        page.get_by_text("queries.tsv").first.wait_for(timeout=60_000)
        page.locator('[data-testid="stFileChipIconSpinner"]').first.wait_for(
            state="detached", timeout=30_000)
        page.get_by_role("button", name="Add upload").click()
        error = page.locator('[data-testid="stSidebar"] [data-testid="stAlert"]',
                             has_text="upload limit")
        error.wait_for(timeout=60_000)
        refused = error.inner_text()
        # the same files without the oversized document
        # a new session: the same files without the oversized document
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.goto(f"{server}/Workspace", timeout=60_000)
        page.get_by_text("Upload a collection").click()
        chooser = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        chooser.set_input_files([{"name": n, "mimeType": "text/plain", "buffer": t.encode()}
                                 for n, t in good.items()])
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"stFileChip\"]').length == 3",
            timeout=30_000)
        page.locator('[data-testid="stFileChipIconSpinner"]').first.wait_for(
            state="detached", timeout=30_000)  # every file is on the server
        page.get_by_role("textbox", name="Collection name (optional)").fill("lisbon-honey")
        page.get_by_role("textbox", name="Collection name (optional)").press("Tab")
        page.wait_for_timeout(1500)  # the name's rerun
        page.get_by_role("button", name="Add upload").click()
        # the new collection is chosen (the select shows it as its input's value)
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-testid=\"stSidebar\"] input')]"
            ".some(i => i.getAttribute('aria-label') == 'Collection' && "
            "i.value == 'lisbon-honey')", timeout=60_000)
        # the model card and the collection statistics of the new collection (static tables)
        page.locator('[data-testid="stTable"]').nth(1).wait_for(timeout=120_000)
        screenshot(page, tmp_path, "upload.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert "0.1 MB is over the 0.05 MB upload limit" in refused
    assert "Traceback" not in text


def test_lesson_1_end_to_end_in_a_real_browser(server, tmp_path):
    """Lesson 1 (probing): predict, reveal (the study runs), next, predict, reveal, the paper
    beside ours, and the summary of the student's predictions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{server}/Lessons", timeout=60_000)
        page.get_by_text("Which feature will the best probe read").wait_for(timeout=60_000)
        page.get_by_text("document length (stream_length)").click()
        page.get_by_role("button", name="Reveal").click()
        page.get_by_text("You predicted").first.wait_for(timeout=240_000)
        page.get_by_role("button", name="Next step").click()
        page.get_by_text("In which third of the network is BM25 best decoded?").wait_for(
            timeout=60_000)
        page.get_by_text("middle", exact=True).click()
        page.get_by_role("button", name="Reveal").click()
        page.get_by_text("BM25's probe peaks at block").wait_for(timeout=60_000)
        page.get_by_role("button", name="Next step").click()
        page.get_by_role("button", name="Reveal").click()
        page.get_by_text("Your predictions").wait_for(timeout=60_000)
        page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=60_000)
        screenshot(page, tmp_path, "lesson-probing.png")
        text = page.locator("body").inner_text()
        browser.close()
    assert "Paper:" in text and "Ours:" in text and "What differs and why:" in text
    assert "Traceback" not in text


# small runs of each analysis with charts, all in one process (one torch import): what the
# pages draw as "the newest stored run" for the chart check
FILL = """
import sys
from core.cli import main
store = sys.argv[1]
for args in (["lens", "--queries", "2"], ["probe", "--limit", "8"], ["patch", "--pairs", "2"],
             ["knockout", "--repeats", "1", "--queries", "2"],
             ["attribute", "--pairs", "1", "--steps", "10"],
             ["ablate", "--draws", "2", "--queries", "2"], ["agreement"]):
    code = main([*args, "--ranker", "minilm-cross-encoder", "--store", store])
    if code:
        sys.exit(f"{args[0]} exited {code}")
"""


@pytest.fixture(scope="module")
def filled_server(tmp_path_factory):
    """A second app over a store that holds a run of every charted analysis."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (scripts/install.sh --with-browser)")
    store = tmp_path_factory.mktemp("filled") / "s.duckdb"
    done = subprocess.run([sys.executable, "-c", FILL, str(store)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    proc, url = serve(store)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_every_chart_on_every_page_is_readable_at_1400_and_1000_px(filled_server, tmp_path):
    """Every page and tab at 1400 and 1000 px with its stored run, every Vega chart measured
    (plot height, every category label drawn, no legend past its chart, titles in words;
    tests/browser/chart_check.py). Screenshots of each page and chart go to
    $RANKSCOPE_SCREENSHOTS when set (a build artifact to look at), else the test's folder."""
    from playwright.sync_api import sync_playwright

    from chart_check import walk

    folder = Path(os.environ.get("RANKSCOPE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page()
        found = (walk(page, filled_server, folder, 1400)
                 + walk(page, filled_server, folder, 1000, chart_shots=False))
        browser.close()
    assert not found, "\n".join(found)
    assert len(list(folder.glob("1400-*chart*.png"))) >= 15  # there were charts to check
