"""`python -m core lesson` from a cold store: figures as PNG, tables as CSV, findings printed,
and a second run served from the store."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def _lesson(name, out, store):
    return subprocess.run([sys.executable, "-m", "core", "lesson", name, "--out", str(out),
                           "--store", str(store)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_the_patching_lesson_writes_its_figures_tables_and_findings(tmp_path):
    run = _lesson("patching", tmp_path / "out", tmp_path / "s.duckdb")
    assert run.returncode == 0, run.stderr[-2000:]
    for figure in ("ie_resid", "ie_attn", "ie_mlp"):
        assert (tmp_path / "out" / f"patching-{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    effects = pd.read_csv(tmp_path / "out" / "patching-mean_ie.csv")
    assert {"target", "layer", "group", "ie_mean"} <= set(effects.columns)
    first = effects[(effects.target == "resid") & (effects.layer == 1) & (effects["head"] < 0)]
    assert first.set_index("group").ie_mean["document"] > 0.5  # the documents differ there
    assert "Q: Patching the residual stream after block 1" in run.stdout
    assert "Paper:" in run.stdout and "What differs and why:" in run.stdout
    data = "TREC DL 2019" if "TREC DL 2019" in run.stdout else "the demo collection"
    assert f"smollm2-judge on {data}" in run.stdout
    again = _lesson("patching", tmp_path / "again", tmp_path / "s.duckdb")
    assert again.returncode == 0 and again.stdout.splitlines()[:12] == run.stdout.splitlines()[:12]
    assert "Computed in" in run.stdout and "Read back from the store" in again.stdout
