"""core.precision: the agreement figures, the refusals, and one real comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.models import PRESETS
from core.precision import agreement, compare_precisions, flipped_share, supported_precisions


def test_flipped_share_counts_same_query_pairs_only():
    qids = np.array(["a", "a", "a", "b", "b"])
    reference = np.array([3.0, 2.0, 1.0, 5.0, 4.0])
    # query a: swap the last two (1 of 3 pairs); query b: reversed (1 of 1); across queries
    # the order of 1.0 and 5.0 changes too, which must not count
    scores = np.array([3.0, 0.5, 1.0, 0.0, 9.0])
    assert flipped_share(qids, reference, scores) == pytest.approx(2 / 4)
    assert flipped_share(qids, reference, reference * 10 - 3) == 0.0


def test_agreement_of_a_monotone_transform_is_perfect_and_of_a_reversal_is_minus_one():
    qids = np.array(["q"] * 6)
    reference = np.arange(6.0)
    same = agreement(reference, np.exp(reference), qids)
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)
    assert same["flipped"] == 0.0
    reverse = agreement(reference, -reference, qids)
    assert reverse["spearman"] == pytest.approx(-1.0) and reverse["flipped"] == 1.0


def test_eight_bit_needs_cuda_and_says_so():
    if "8bit" in supported_precisions():
        pytest.skip("a CUDA GPU is visible")
    pairs = pd.DataFrame({"qid": ["q"], "query": ["x"], "document": ["y"]})
    with pytest.raises(InputError, match="8bit needs a CUDA GPU"):
        compare_precisions(PRESETS["minilm-cross-encoder-demo"], pairs,
                           precisions=["fp32", "8bit"], load=pytest.fail)
    with pytest.raises(InputError, match="no pairs"):
        compare_precisions(PRESETS["minilm-cross-encoder-demo"], pairs.head(0), load=pytest.fail)


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
