"""What a class can read on every page: each rendered Vega chart measured in the browser.

``page_report(page)`` reads every visible chart of the page as Vega drew it (SVG): the
height of each plot area, every axis (labels drawn vs the categories of its scale, which
Vega's own ``aria-label`` states), every legend (its box against the chart's container,
labels cut to "…") and the titles. ``problems(report)`` turns that into sentences; an empty
list is a readable page. Used by ``test_browser.py`` and by ``scripts/page_screenshots.py``.
"""

from __future__ import annotations

import re

MIN_PLOT_HEIGHT = 160  # px: a plot area under this cannot be read from the back of a room
RAW_TITLE = re.compile(r"_|^(value|variable|index|key|count\(\*\))$", re.IGNORECASE)

# reads each visible chart; the plot areas are the background paths of Vega's view groups
MEASURE = r"""
() => {
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const text = el => el ? el.textContent.trim() : '';
  const shown = t => t.getAttribute('opacity') !== '0' && getComputedStyle(t).opacity !== '0'
                     && t.textContent.trim() !== '';
  const charts = [];
  for (const chart of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    if (!visible(chart)) continue;
    const svg = chart.querySelector('svg.marks');
    if (!svg) { charts.push({pending: true}); continue; }
    const box = chart.getBoundingClientRect();
    const titles = [...svg.querySelectorAll('.role-title-text')].map(text);
    const plots = [];
    for (const group of svg.querySelectorAll('g.mark-group')) {
      if (group.closest('.role-legend') || group.closest('.role-axis')) continue;
      if (!/role-(frame|scope)/.test(group.getAttribute('class'))) continue;
      const bg = group.querySelector(':scope > g > path.background');
      if (!bg) continue;
      const r = bg.getBoundingClientRect();
      if (r.width > 1 && r.height > 1) plots.push({width: r.width, height: r.height});
    }
    const axes = [...svg.querySelectorAll('g.role-axis')].map(axis => {
      const labels = [...axis.querySelectorAll('.role-axis-label text')];
      return {aria: axis.getAttribute('aria-label') || '',
              title: text(axis.querySelector('.role-axis-title text')),
              drawn: labels.filter(shown).map(text), all: labels.length};
    });
    const legends = [...svg.querySelectorAll('g.role-legend')].map(legend => {
      const r = legend.getBoundingClientRect();
      return {title: text(legend.querySelector('.role-legend-title text')),
              labels: [...legend.querySelectorAll('.role-legend-label text')].map(text),
              right: r.right, bottom: r.bottom, left: r.left};
    });
    const s = svg.getBoundingClientRect();
    charts.push({titles, plots, axes, legends,
                 box: {left: box.left, right: box.right, top: box.top, bottom: box.bottom},
                 svg: {right: s.right, bottom: s.bottom, width: s.width}});
  }
  return charts;
}
"""


def page_report(page) -> list[dict]:
    """Every visible chart of ``page`` (a playwright page) as measured by :data:`MEASURE`."""
    return page.evaluate(MEASURE)


def _categories(aria: str) -> int | None:
    """The number of values of a discrete axis, from Vega's aria-label ("… for a discrete
    scale with 26 values: …"); None for a continuous axis."""
    found = re.search(r"discrete scale with (\d+) values?", aria)
    return int(found.group(1)) if found else None


def problems(report: list[dict], where: str) -> list[str]:
    """One sentence per unreadable thing in ``report`` (see the module doc)."""
    found = []
    for number, chart in enumerate(report, start=1):
        if chart.get("pending"):
            found.append(f"{where}, chart {number}: not drawn (no SVG)")
            continue
        name = f"{where}, chart {number} ({' / '.join(chart['titles'][:1]) or 'untitled'})"
        for plot in chart["plots"]:
            if plot["height"] < MIN_PLOT_HEIGHT:
                found.append(f"{name}: a plot area {plot['height']:.0f} px tall "
                             f"(< {MIN_PLOT_HEIGHT})")
                break
        for axis in chart["axes"]:
            values = _categories(axis["aria"])
            if values is not None and len(axis["drawn"]) < values:
                found.append(f"{name}: axis '{axis['title']}' draws {len(axis['drawn'])} of "
                             f"its {values} labels")
            if axis["title"] and RAW_TITLE.search(axis["title"]):
                found.append(f"{name}: axis title '{axis['title']}' is a raw column name")
            if any(label.endswith("…") for label in axis["drawn"]):
                found.append(f"{name}: axis '{axis['title']}' cuts labels to '…'")
        for legend in chart["legends"]:
            if legend["right"] > chart["box"]["right"] + 1 or \
                    legend["bottom"] > chart["box"]["bottom"] + 1:
                found.append(f"{name}: legend '{legend['title']}' runs past its chart "
                             f"({legend['right'] - chart['box']['right']:.0f} px)")
            if legend["title"] and RAW_TITLE.search(legend["title"]):
                found.append(f"{name}: legend title '{legend['title']}' is a raw column name")
            cut = [label for label in legend["labels"] if label.endswith("…")]
            raw = [label for label in legend["labels"] if RAW_TITLE.fullmatch(label)
                   or re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", label) and legend["title"] == ""]
            if cut:
                found.append(f"{name}: legend '{legend['title']}' cuts {cut[0]!r}")
            if raw:
                found.append(f"{name}: legend label {raw[0]!r} is a raw column name")
        if chart["svg"]["right"] > chart["box"]["right"] + 1:
            found.append(f"{name}: the chart is wider than its container "
                         f"({chart['svg']['right'] - chart['box']['right']:.0f} px cut)")
    return found


PAGES = ("", "Lessons", "Playground", "Workspace", "Probing", "Patching", "Attribution",
         "Ablation", "Lens")  # URL paths; "" is Home


def settle(page, timeout_s: float = 240.0, quiet_s: float = 1.5) -> None:
    """Wait until Streamlit has finished the run (the app's script state is not "running"
    and nothing new was drawn for ``quiet_s``) and every visible chart has drawn its SVG."""
    import time

    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=timeout_s * 1000)
    deadline, quiet, last = time.monotonic() + timeout_s, 0, None
    while time.monotonic() < deadline and quiet < quiet_s / 0.5:  # nothing new drawn
        running = page.locator('[data-testid="stApp"]').get_attribute(
            "data-test-script-state") != "notRunning"
        size = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')"
                             ".innerHTML.length")
        quiet = 0 if running or size != last else quiet + 1
        last = size
        page.wait_for_timeout(500)
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]')]"
        ".every(c => c.getBoundingClientRect().width == 0 || c.querySelector('svg.marks'))",
        timeout=60_000)
    page.wait_for_timeout(500)  # Vega's label-overlap pass runs after the first draw


def walk(page, base: str, folder, width: int = 1400, shots: bool = True,
         chart_shots: bool = True) -> list[str]:
    """Open every page (each tab of it in turn) at ``width`` px, screenshot it (and, with
    ``chart_shots``, each chart) into ``folder`` and return the problems of every chart drawn
    (see :func:`problems`)."""
    from pathlib import Path

    found = []
    page.set_viewport_size({"width": width, "height": 2400})
    for path in PAGES:
        page.goto(f"{base}/{path}", timeout=120_000)
        settle(page)
        name = path or "Home"
        tabs = page.locator('[data-testid="stMain"] [role="tab"]')
        labels = tabs.all_inner_texts() or [""]
        for number, label in enumerate(labels):
            if label:  # a tab is drawn in the browser: no script run to wait for
                tabs.nth(number).click()
                settle(page, quiet_s=0.5)
            where = f"{name}{' → ' + label.strip() if label else ''} at {width} px"
            found += problems(page_report(page), where)
            body = page.locator("body").inner_text()
            if "Traceback" in body:
                found.append(f"{where}: a traceback on the page")
            if shots:  # the page's top, then each chart (the app scrolls inside its main area)
                slug = re.sub(r"[^a-z0-9]+", "-", f"{name}-{label}".lower()).strip("-")
                page.screenshot(path=str(Path(folder) / f"{width}-{slug}.png"))
                charts = page.locator('[data-testid="stVegaLiteChart"]')
                for index in range(charts.count() if chart_shots else 0):
                    chart = charts.nth(index)
                    if chart.is_visible():
                        chart.scroll_into_view_if_needed()
                        chart.screenshot(path=str(Path(folder) /
                                                  f"{width}-{slug}-chart{index + 1}.png"))
    return found
