"""IR features on hand-computed examples, BM25 against bm25s, feature-group expressions."""

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.features import FEATURES, MSLR_FEATURES, combine, lexical_features, tokenize

# One candidate set (query q1) of three documents; a second query (q2) shares document d2, so
# IDF must come from each query's own candidates.
PAIRS = pd.DataFrame({
    "qid": ["q1", "q1", "q1", "q2", "q2"],
    "query": ["apple cherry"] * 3 + ["banana"] * 2,
    "document": ["apple banana apple", "banana cherry", "cherry date elder fig",
                 "banana cherry", "grape"],
})


@pytest.fixture(scope="module")
def features():
    return lexical_features(PAIRS)


def idf(df, n):
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def test_coverage_and_tf_statistics_of_d1(features):
    row = features.iloc[0]  # q1 = {apple, cherry}; d1 = apple ×2, banana ×1 (L = 3)
    assert row.covered_query_term_number == 1 and row.covered_query_term_ratio == 0.5
    assert row.stream_length == 3
    assert (row.sum_tf, row.min_tf, row.max_tf, row.mean_tf) == (2, 0, 2, 1)
    assert row.variance_tf == pytest.approx(((2 - 1) ** 2 + (0 - 1) ** 2) / 2)
    assert row.sum_tf_l == pytest.approx(2 / 3) and row.mean_tf_l == pytest.approx(1 / 3)
    assert row.variance_tf_l == pytest.approx((1 / 3) ** 2)
    idf_apple = idf(1, 3)  # apple is in 1 of q1's 3 candidates
    assert row.sum_tfidf == pytest.approx(2 * idf_apple)
    assert row.max_tfidf == pytest.approx(2 * idf_apple) and row.min_tfidf == 0
    assert row.variance_tfidf == pytest.approx(idf_apple ** 2)


def test_bm25_by_hand(features):
    # avgL over q1's candidates = (3 + 2 + 4) / 3 = 3
    d1 = idf(1, 3) * 2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / 3))
    d2 = idf(2, 3) * 1 / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / 3))
    assert features.bm25.iloc[0] == pytest.approx(d1)
    assert features.bm25.iloc[1] == pytest.approx(d2)


def test_idf_comes_from_each_querys_candidates(features):
    # under q2 the candidates are d2 and "grape": banana has df 1 of N 2 (under q1, df 2 of 3)
    row = features.iloc[3]
    assert row.sum_tfidf == pytest.approx(1 * idf(1, 2))
    assert row.covered_query_term_ratio == 1.0


def test_similarities_of_d1_by_hand(features):
    row = features.iloc[0]
    p_q = {"apple": 0.5, "cherry": 0.5}
    p_d = {"apple": 2 / 3, "banana": 1 / 3}
    terms = set(p_q) | set(p_d)
    assert row.euclidean_distance == pytest.approx(
        math.sqrt(sum((p_q.get(t, 0) - p_d.get(t, 0)) ** 2 for t in terms)))
    assert row.manhattan_distance == pytest.approx(sum(abs(p_q.get(t, 0) - p_d.get(t, 0))
                                                       for t in terms))
    m = {t: (p_q.get(t, 0) + p_d.get(t, 0)) / 2 for t in terms}
    js = 0.5 * sum(p * math.log(p / m[t]) for t, p in p_q.items()) \
        + 0.5 * sum(p * math.log(p / m[t]) for t, p in p_d.items())
    assert row.js_divergence == pytest.approx(js)
    # collection model: q1's candidates plus the query; 11 tokens, apple 3, cherry 3
    smooth = {"apple": 0.9 * 2 / 3 + 0.1 * 3 / 11, "cherry": 0.1 * 3 / 11}
    assert row.kl_divergence == pytest.approx(sum(p * math.log(p / smooth[t])
                                                  for t, p in p_q.items()))
    w_q = {"apple": idf(1, 3), "cherry": idf(2, 3)}
    w_d = {"apple": 2 * idf(1, 3), "banana": idf(2, 3)}
    cosine = w_q["apple"] * w_d["apple"] / (math.hypot(*w_q.values()) * math.hypot(*w_d.values()))
    assert row.tfidf_cosine == pytest.approx(cosine)


def test_uncovered_document_has_zero_overlap_features(features):
    row = features.iloc[4]  # "grape" for query "banana"
    assert row.covered_query_term_number == 0 and row.bm25 == 0 and row.tfidf_cosine == 0
    assert row.js_divergence == pytest.approx(math.log(2))  # disjoint distributions
    assert row.manhattan_distance == pytest.approx(2.0)


def test_bm25_matches_bm25s_on_demo_candidate_sets(demo):
    import bm25s

    from core.retrieval import candidate_pairs

    pairs = candidate_pairs(demo, limit_queries=5)
    ours = lexical_features(pairs).bm25.to_numpy()
    for qid, group in pairs.groupby("qid", sort=False):
        retriever = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
        retriever.index(bm25s.tokenize(group.document.tolist(), stopwords="en",
                                       show_progress=False), show_progress=False)
        query = list(dict.fromkeys(tokenize([group["query"].iloc[0]])[0]))
        expected = retriever.get_scores(query)
        np.testing.assert_allclose(ours[group.index], expected, rtol=1e-5, atol=1e-6)


def test_features_are_vectorised_and_spread_on_the_demo_collection(demo):
    from core.retrieval import candidate_pairs

    frame = lexical_features(candidate_pairs(demo, limit_queries=40))
    assert list(frame.columns) == [f for f in FEATURES if not f.startswith("embedding")]
    assert len(MSLR_FEATURES) == 19 and len(FEATURES) == 26
    assert np.isfinite(frame.to_numpy()).all()
    for name in ("covered_query_term_ratio", "bm25", "stream_length", "tfidf_cosine"):
        assert frame[name].nunique() > 10, name


def test_query_without_terms_is_refused():
    with pytest.raises(InputError, match="no indexable terms"):
        lexical_features(pd.DataFrame({"qid": ["x"], "query": ["the of a"], "document": ["t"]}))


def test_feature_group_expressions(features):
    z = (features.bm25 - features.bm25.mean()) / features.bm25.std(ddof=0)
    s = (features.sum_tf - features.sum_tf.mean()) / features.sum_tf.std(ddof=0)
    np.testing.assert_allclose(combine(features, "(bm25 + sum_tf)^2"), (z + s) ** 2)
    np.testing.assert_allclose(combine(features, "bm25 * sum_tf - 1"), z * s - 1)
    for bad in ("__import__('os').system('x')", "bm25 ^ 0.5", "nope + bm25", "", "2 + 3",
                "bm25.real"):
        with pytest.raises(InputError):
            combine(features, bad)
