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
