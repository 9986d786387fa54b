"""`python -m core lesson NAME --out DIR`: a guided lesson's figures (PNG), tables (CSV) and
findings, from the same engine and store as the Lessons page."""

from __future__ import annotations

import sys
from pathlib import Path

from core.cli.common import InputError, progress_bar, store_for

NAME = "lesson"
HELP = "a guided lesson (probing, attribution, patching): figures, tables and findings"
STOPPED = "finished units are saved in the store; run the same command again to resume"


def arguments(p) -> None:
    from core.store import DEFAULT_PATH

    p.add_argument("name", choices=["probing", "attribution", "patching"],
                   help="which study the lesson walks through")
    p.add_argument("--out", required=True, help="folder for the lesson's PNG and CSV files")
    p.add_argument("--store", default=str(DEFAULT_PATH), help="DuckDB store file")


def run(args) -> int:
    from core.charts import export_chart
    from core.lessons import get_lesson
    from core.models import load_ranker

    lesson = get_lesson(args.name)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the lesson's files")
    store = store_for(args)
    bars = {}

    def progress(done, total, stage):
        if stage not in bars:
            bars[stage] = progress_bar(stage, "step")
        bars[stage](done, total)

    try:
        print(f"lesson {lesson.name}: {lesson.title}", file=sys.stderr)
        outcome = lesson.run(store, lambda name: load_ranker(name), progress=progress)
    finally:
        store.close()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in outcome.tables.items():
        table.to_csv(out / f"{lesson.name}-{name}.csv", index=False)
        written.append(f"{lesson.name}-{name}.csv")
    for name, chart in outcome.charts.items():
        (out / f"{lesson.name}-{name}.png").write_bytes(export_chart(chart, "png"))
        written.append(f"{lesson.name}-{name}.png")
    print(f"{lesson.title} — {lesson.ranker} on {outcome.data}")
    for number, (step, finding) in enumerate(zip(lesson.steps, outcome.findings), start=1):
        print(f"\n{number}. {step.title}")
        if step.question:
            print(f"   Q: {step.question} → {outcome.answers[number - 1]}")
        print(f"   {finding.replace('**', '')}")
    print(f"\n{outcome.when()}; wrote {', '.join(written)} to {out}")
    return 0
