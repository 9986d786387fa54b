"""Neuron conductance: hand-computed values on a toy network, captum agreement, completeness,
refusal on quantized models, and no leaked hooks."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.attribution import (AttributionConfig, baseline_embeddings, conductance,
                              integrated_conductance, neuron_index, overlap, top_set)
from core.errors import InputError
from core.hooks import count_hooks
from core.models import QUERY, Encoded, ModelSpec, load_ranker
from toys import Toy


def _toy(x, base, steps=100, chunk=7):
    toy = Toy().double()
    values, at_base, at_input = integrated_conductance(
        lambda inputs: toy(inputs)[:, 0], toy, ["first", "second"], torch.tensor([x], dtype=torch.float64),
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


@pytest.fixture(scope="module")
def tiny_ce(tiny_bert_dir):
    ranker = load_ranker(ModelSpec("tiny-ce", "cross-encoder", str(tiny_bert_dir), device="cpu"))
    with torch.no_grad():
        ranker.model.classifier.weight.mul_(1000.0)
    return ranker


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
    assert abs(report["delta"]) > 1e-3
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
        integrated_conductance(broken, tiny_ce.model, tiny_ce.linear_paths(), x, x, 4, 3)
    assert count_hooks(tiny_ce.model) == 0


def test_neuron_index_top_sets_and_overlap(tiny_ce):
    index = neuron_index(tiny_ce)
    assert len(index) == sum(tiny_ce.model.get_submodule(p).out_features
                             for p in tiny_ce.linear_paths())
    assert set(index.layer) == {1, 2}
    values = np.arange(1000, dtype=float)
    assert list(top_set(values, 0.3)) == [999, 998, 997]
    assert overlap(np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])) == 50.0
