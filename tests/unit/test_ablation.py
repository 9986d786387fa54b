"""Neuron-set ablation helpers: the Shapley estimator on games with known values, the fast
nDCG@10 against ir_measures, and probe groups read from stored probe rows."""

import json

import ir_measures
import numpy as np
import pandas as pd
import pytest
from ir_measures import nDCG

from core.errors import InputError
from core.metrics import ndcg_matrix
from core.shapley import ShapleyConfig, probe_groups, shapley_values


def test_shapley_of_an_additive_game_is_each_players_weight():
    weights = np.array([0.5, -0.2, 0.0, 1.5])
    values = shapley_values(lambda present: present @ weights, 4, 7, np.random.default_rng(0))
    np.testing.assert_allclose(values, weights, atol=1e-12)


def test_shapley_splits_a_joint_effect_and_is_efficient():
    def both(present):  # worth 1 only when players 0 and 1 are both in
        return (present[:, 0] & present[:, 1]).astype(float)

    values = shapley_values(both, 5, 4000, np.random.default_rng(1))
    np.testing.assert_allclose(values[:2], [0.5, 0.5], atol=0.03)
    np.testing.assert_allclose(values[2:], 0.0, atol=1e-12)  # null players get exactly 0
    assert values.sum() == pytest.approx(1.0)  # efficiency: v(all) − v(∅)


def test_each_distinct_coalition_is_valued_once():
    seen = []

    def value(present):
        seen.append(len(present))
        assert len({row.tobytes() for row in present}) == len(present)
        return present.sum(axis=1).astype(float)

    shapley_values(value, 3, 50, np.random.default_rng(2))
    # 50 orders × 4 prefixes = 200 coalitions, but only the 2³ = 8 subsets are distinct
    assert seen == [8]


def test_fast_ndcg_equals_ir_measures_with_ties_and_unretrieved_relevant_documents():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 25))
        docnos = [f"d{int(rng.integers(0, 99))}-{i}" for i in range(n)]
        grades = rng.integers(0, 3, n)
        missing = rng.integers(0, 3, int(rng.integers(0, 3)))
        scores = rng.integers(0, 4, (3, n)).astype(float)
        qrels = pd.DataFrame({"query_id": "q", "relevance": [*grades, *missing],
                              "doc_id": docnos + [f"x{i}" for i in range(len(missing))]})
        ours = ndcg_matrix(scores, grades, docnos, np.concatenate([grades, missing]))
        for row, value in zip(scores, ours):
            run = pd.DataFrame({"query_id": "q", "doc_id": docnos, "score": row})
            assert value == pytest.approx(
                ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10], abs=1e-12)


def test_probe_groups_take_passing_features_at_the_layer():
    probe = pd.DataFrame({
        "layer": [3, 3, 3, 2], "pooling": "mean", "estimator": "lasso",
        "feature": ["bm25", "tf", "idf", "bm25"], "r2_mean": [0.9, 0.5, 0.95, 0.99],
        "neurons": [json.dumps([[5, 0.2], [1, -0.1]]), json.dumps([[7, 1.0]]),
                    json.dumps([[2, 0.3], [4, 0.0]]), json.dumps([[9, 1.0]])]})
    groups = probe_groups(probe, 3, 0.85)
    assert list(groups) == ["idf", "bm25"]  # best R² first
    assert groups["bm25"].tolist() == [1, 5] and groups["idf"].tolist() == [2]  # zero dropped
    assert probe_groups(probe, 3, 0.96) == {}


@pytest.mark.parametrize("config, message", [
    (ShapleyConfig(threshold=1.2), "threshold"), (ShapleyConfig(permutations=0), "at least"),
    (ShapleyConfig(mode="noise"), "Knock-out: .noise. is not one of")])
def test_shapley_settings_are_checked(config, message):
    from core.analysis import registered

    with pytest.raises(InputError, match=message):
        registered()["shapley"].validate(config)
