"""Token saliency on the embedded MiniLM cross-encoder (the Playground's default ranker)."""

from __future__ import annotations

import pytest


def test_minilm_saliency_is_complete_and_reads_the_matching_terms(embedded_rankers):
    from core.saliency import saliency

    ranker = embedded_rankers("minilm-cross-encoder")
    result = saliency(ranker, "how long does honey keep",
                      "Honey keeps for years in a sealed jar because it holds so little water.",
                      steps=50)
    assert result.completeness_gap < 0.02
    assert result.tokens.attribution.sum() == pytest.approx(
        result.score - result.baseline_score, rel=0.02)
    document = result.tokens[result.tokens.group == "document"]
    top = document.loc[document.attribution.abs().nlargest(3).index, "token"].str.strip().tolist()
    assert {"honey", "keeps"} & set(top), top  # the words that match the query weigh most


def test_saliency_cli_writes_the_token_table_and_refuses_4bit(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    out = tmp_path / "saliency.csv"
    base = [sys.executable, "-m", "core", "saliency", "--ranker", "minilm-cross-encoder",
            "--query", "honey shelf life", "--document", "Honey keeps for years.", "--steps", "20"]
    done = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["token", "position", "group", "attribution"]
    assert {"query", "document"} <= set(table.group) and "completeness gap" in done.stdout
    refused = subprocess.run([*base, "--quantization", "4bit-nf4", "--out", str(tmp_path / "x.csv")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "attribution refuses them" in refused.stderr
    assert not (tmp_path / "x.csv").exists()
