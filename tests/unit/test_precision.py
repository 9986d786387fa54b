"""core.precision: the agreement figures and the refusals (the real comparison runs in the
integration tier)."""

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
