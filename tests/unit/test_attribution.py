"""Neuron conductance: hand-computed values on a toy network, captum agreement, completeness,
refusal on quantized models, and no leaked hooks."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from toys import Toy

from core.attribution import (AttributionConfig, baseline_embeddings, conductance,
                               integrated_conductance, neuron_index, overlap, top_set)
from core.errors import InputError
from core.hooks import count_hooks, hooked
from core.models import QUERY, Encoded


def _toy(x, base, steps=100, chunk=7):
    toy = Toy().double()
    values, at_base, at_input = integrated_conductance(
        lambda inputs: toy(inputs)[:, 0], lambda hooks: hooked(toy, hooks), ["first", "second"],
        torch.tensor([x], dtype=torch.float64),
        torch.tensor([base], dtype=torch.float64), steps, chunk)
    assert count_hooks(toy) == 0
    return {k: v.numpy() for k, v in values.items()}, at_base, at_input


def test_toy_conductance_on_a_path_where_every_unit_stays_active():
    # first-layer units go from W1·base = [1, 1] to W1·x = [3, 2]; relu' = 1 all the way
    values, at_base, at_input = _toy([3.0, 1.0], [1.0, 0.5])
    np.testing.assert_allclose(values["first"], [2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(values["second"], [3.0], atol=1e-12)  # F(x) − F(base)
    assert (at_base, at_input) == (2.0, 5.0)


def test_toy_conductance_where_units_cross_zero_by_hand():
    # unit 0: W1 x goes −1 → 3 and is active for α_k > 0.25: 74 of the 100 left points,
    # each step adding 4/100 → 2.96; unit 1: 2 → −2, active for α_k < 0.5: 50 steps of
    # −4/100 → −2. The output neuron gets F(x) − F(base) = 3 − 2 = 1 exactly.
    values, _, _ = _toy([3.0, -1.0], [-1.0, 1.0])
    np.testing.assert_allclose(values["first"], [2.96, -2.0], atol=1e-9)
    np.testing.assert_allclose(values["second"], [1.0], atol=1e-9)


def test_chunking_does_not_change_the_result():
    a, _, _ = _toy([3.0, -1.0], [-1.0, 1.0], chunk=2)
    b, _, _ = _toy([3.0, -1.0], [-1.0, 1.0], chunk=101)
    np.testing.assert_allclose(a["first"], b["first"], atol=1e-12)


def _enc(ranker):
    return ranker.encode(["how to store honey"],
                         ["Store honey in a sealed glass jar at room temperature."])


def test_matches_captum_layer_conductance(tiny_ce):
    from captum.attr import LayerConductance

    enc = _enc(tiny_ce)
    ours, report = conductance(tiny_ce, enc, AttributionConfig(steps=20, chunk=6))
    x = tiny_ce.input_embeddings(enc).detach()
    base = baseline_embeddings(tiny_ce, enc, "pad").detach()

    def forward(embeddings):
        n = embeddings.shape[0]
        batch = Encoded(enc.input_ids.expand(n, -1), enc.attention_mask.expand(n, -1),
                        enc.groups.expand(n, -1), enc.last.expand(n), enc.token_type_ids.expand(n, -1))
        return tiny_ce.forward_from_embeddings(batch, embeddings)

    for path in tiny_ce.linear_paths()[::3]:
        theirs = LayerConductance(forward, tiny_ce.model.get_submodule(path)).attribute(
            x, baselines=base, n_steps=20, method="riemann_trapezoid").sum(dim=(0, 1))
        theirs = theirs.double().detach().numpy()
        assert np.abs(ours[path] - theirs).max() <= 1e-4 * np.abs(theirs).max()
    assert count_hooks(tiny_ce.model) == 0


def test_completeness_through_the_last_block(tiny_ce):
    _, report = conductance(tiny_ce, _enc(tiny_ce), AttributionConfig(steps=100))
    assert abs(report["delta"]) > 1e-3, report  # a real change in score, so the gap means something
    assert report["completeness_gap"] < 0.02
    assert report["delta"] == pytest.approx(report["score"] - report["baseline_score"])


def test_baselines_replace_the_right_tokens(tiny_ce):
    enc = _enc(tiny_ce)
    x = tiny_ce.input_embeddings(enc)
    pad = tiny_ce.model.get_input_embeddings().weight[tiny_ce.tokenizer.pad_token_id]
    special = torch.isin(enc.input_ids[0], torch.tensor(tiny_ce.tokenizer.all_special_ids))
    full = baseline_embeddings(tiny_ce, enc, "pad")[0]
    assert torch.equal(full[special], x[0][special])  # [CLS] / [SEP] kept
    assert torch.allclose(full[~special], pad.expand(int((~special).sum()), -1))
    query = baseline_embeddings(tiny_ce, enc, "pad-query")[0]
    is_query = enc.groups[0] == QUERY
    assert torch.allclose(query[is_query], pad.expand(int(is_query.sum()), -1))
    assert torch.equal(query[~is_query], x[0][~is_query])
    assert (baseline_embeddings(tiny_ce, enc, "zero")[0][~special] == 0).all()


def test_quantized_rankers_are_refused():
    quantized = SimpleNamespace(spec=SimpleNamespace(name="q", quantization="4bit-nf4"))
    with pytest.raises(InputError, match="silently wrong"):
        AttributionConfig().validate(quantized)
    with pytest.raises(InputError, match="baseline must be"):
        AttributionConfig(baseline="mask").validate()


def test_no_hooks_left_when_the_forward_fails(tiny_ce):
    def broken(_):
        raise RuntimeError("boom")

    x = torch.zeros(1, 3, tiny_ce.d_model)
    with pytest.raises(RuntimeError):
        integrated_conductance(broken, tiny_ce.hooked, tiny_ce.linear_paths(), x, x, 4, 3)
    assert count_hooks(tiny_ce.model) == 0


def test_neuron_index_top_sets_and_overlap(tiny_ce):
    index = neuron_index(tiny_ce)
    assert len(index) == sum(tiny_ce.model.get_submodule(p).out_features
                             for p in tiny_ce.linear_paths())
    assert set(index.layer) == {1, 2}
    values = np.arange(1000, dtype=float)
    assert list(top_set(values, 0.3)) == [999, 998, 997]
    assert overlap(np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])) == 50.0


def test_a_stopped_run_resumes_to_the_same_table_and_a_finished_one_is_served(tiny_ce, demo,
                                                                               store_path):
    from core.attribution import attribute_collection
    from core.store import Store

    config = AttributionConfig(steps=8, chunk=5)
    whole = attribute_collection(tiny_ce, demo, config, pairs_per_label=2)
    store = Store(store_path)
    calls = []
    first = attribute_collection(tiny_ce, demo, config, 2, store=store,
                                 should_stop=lambda: len(calls) >= 1,
                                 progress=lambda done, total, _: calls.append(done))
    assert first.stopped and len(first.reports) == 1
    assert store.analysis_runs("attribute").status.tolist() == ["running"]
    resumed = attribute_collection(tiny_ce, demo, config, 2, store=store)
    assert not resumed.stopped and len(resumed.reports) == len(whole.reports) == 4
    np.testing.assert_allclose(resumed.frame[["relevant", "non_relevant", "fused"]],
                               whole.frame[["relevant", "non_relevant", "fused"]], rtol=1e-5,
                               atol=1e-7)  # float32 in the store
    assert resumed.reports.completeness_gap.max() < 0.5  # N = 8 here

    def no_scoring(*_):
        raise AssertionError("a finished run must be read back, not recomputed")

    original, tiny_ce.score = tiny_ce.score, no_scoring
    try:
        again = attribute_collection(tiny_ce, demo, config, 2, store=store)
    finally:
        tiny_ce.score = original
    pd.testing.assert_frame_equal(again.frame, resumed.frame)
    assert store.analysis_runs("attribute").units_done.tolist() == [4]


def test_set_algebra_and_intersection_curves():
    from core.attribution import combine, intersection_curves

    a = np.array([9.0, 8, 7, 6, 0, 0, 0, 0, 0, 0])
    b = np.array([0.0, 8, 7, 0, 9, 0, 0, 0, 0, 0])
    assert list(combine({"a": a, "b": b}, "∩", 30)) == [1, 2]  # top 3: {0,1,2} ∩ {4,1,2}
    # means 4.5, 8, 7, 3, 4.5 (index 4): the tie goes to the lower index
    assert list(combine({"a": a, "b": b}, "⊕", 30)) == [0, 1, 2]
    assert list(combine({"a": a}, "∩", 10)) == [0]
    with pytest.raises(InputError, match="X must be"):
        combine({"a": a}, "∩", 120)
    curves = intersection_curves({"a": a, "b": b, "c": a}, percents=[30])
    got = dict(zip(curves.pair, curves.intersection))
    assert got["a ∩ b"] == pytest.approx(200 / 3) and got["a ∩ c"] == 100
    assert got["all 3"] == pytest.approx(200 / 3)


def test_agreement_counts_shared_residual_dimensions_per_layer():
    from core.agreement import agreement

    layout = {"blocks": "enc", "d_model": 4,
              "linears": [["enc.0.attention.self.query", 4], ["enc.0.attention.output.dense", 4],
                          ["enc.0.output.dense", 4], ["enc.1.output.dense", 4]]}
    frame = neuron_index(layout)
    frame["fused"] = 0.0
    frame.loc[(frame.path == "enc.0.output.dense") & frame.neuron.isin([1, 2]), "fused"] = 5.0
    frame.loc[(frame.path == "enc.0.attention.self.query") & (frame.neuron == 0), "fused"] = 4.0
    probe = pd.DataFrame({"layer": [1, 1, 2], "feature": ["bm25", "tf", "bm25"],
                          "r2_mean": [0.9, 0.5, 0.95],
                          "neurons": ["[[2, 0.3], [3, -0.1]]", "[[0, 1.0]]", "[[1, 0.2]]"]})
    patch = pd.DataFrame({"target": ["attn", "mlp", "mlp"], "layer": [1, 1, 2],
                          "ie_mean": [0.1, -0.8, 0.2]})
    table = agreement(frame, "fused", 3 / 16 * 100, probe, patch, d_model=4).set_index("layer")
    assert table.loc[1, "nig_mlp"] == 2 and table.loc[1, "nig_attn"] == 1
    assert table.loc[1, "probe_features"] == "bm25" and table.loc[1, "probe_dims"] == 2
    assert table.loc[1, "probe_and_nig"] == 1  # dim 2 in both; dim 1 only in NIG
    assert table.loc[1, "expected_by_chance"] == pytest.approx(2 * 2 / 4)
    assert table.loc[1, "patch_mlp_ie"] == pytest.approx(0.8)
    assert table.loc[2, "nig_residual_dims"] == 0 and table.loc[2, "probe_and_nig"] == 0


def test_trapezoid_rule_converges_faster_than_the_left_sum(tiny_ce):
    enc = _enc(tiny_ce)
    paths = tiny_ce.linear_paths()[:4]
    reference, _ = conductance(tiny_ce, enc, AttributionConfig(steps=400, rule="trapezoid"),
                               paths=paths)

    def error(rule):
        values, report = conductance(tiny_ce, enc, AttributionConfig(steps=10, rule=rule),
                                     paths=paths)
        return max(np.abs(values[p] - reference[p]).max() for p in paths), report

    (left, left_report), (trapezoid, trapezoid_report) = error("left"), error("trapezoid")
    assert trapezoid < left / 3
    assert trapezoid_report["delta"] == pytest.approx(left_report["delta"])
    with pytest.raises(InputError, match="rule must be"):
        AttributionConfig(rule="simpson").validate()


def test_non_finite_gradients_are_refused_not_returned(tiny_ce, monkeypatch):
    original = tiny_ce.forward_from_embeddings

    def kinked(enc, embeddings):  # √|F − F(first point)| has no finite slope at that point
        scores = original(enc, embeddings)
        return (scores - scores[0].detach()).abs().sqrt()

    monkeypatch.setattr(tiny_ce, "forward_from_embeddings", kinked)
    with pytest.raises(InputError, match="non-finite gradients"):
        conductance(tiny_ce, _enc(tiny_ce), AttributionConfig(steps=4, baseline="zero"))
    assert count_hooks(tiny_ce.model) == 0
