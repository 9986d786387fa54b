"""core.precision on the embedded MiniLM (the real comparison behind the Workspace panel)."""

from __future__ import annotations

import pytest

from core.models import PRESETS
from core.precision import compare_precisions


def test_every_precision_scores_the_same_pairs_against_fp32(demo):
    from core.retrieval import candidate_pairs

    pairs = candidate_pairs(demo, 10, limit_queries=3)
    loaded = []

    def load(spec):
        from core.models import load_ranker

        loaded.append(spec.quantization)
        return load_ranker(spec)

    table = compare_precisions(PRESETS["minilm-cross-encoder-demo"], pairs, demo,
                               precisions=["4bit-nf4", "bf16"], load=load)
    assert loaded == ["fp32", "4bit-nf4", "bf16"]  # the reference is always scored first
    assert table.precision.tolist() == ["fp32", "4bit-nf4", "bf16"]
    fp32, nf4, bf16 = (table.iloc[i] for i in range(3))
    assert fp32.spearman == pytest.approx(1.0) and fp32.flipped == 0 and fp32.max_abs_diff == 0
    # bf16 keeps the order almost everywhere; NF4 moves scores by whole units on this model
    # (6.84 -> 4.48 on one pair) but keeps most of the ranking
    assert bf16.spearman > 0.99 and bf16.flipped < 0.05
    assert 0.8 < nf4.spearman < 1.0 and nf4.max_abs_diff > 0.5
    assert nf4.memory_mb < fp32.memory_mb and bf16.memory_mb < 0.6 * fp32.memory_mb
    assert {"nDCG@10", "MRR@10"} <= set(table.columns)
    assert (table.pairs_per_s > 0).all()
