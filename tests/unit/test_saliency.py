"""Token saliency: exact on a hand-weighted toy, equal to captum's LayerIntegratedGradients on
the word-embedding layer, complete, refused for 4-bit models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import InputError
from core.models import ModelSpec, load_ranker
from core.saliency import integrated_gradients, saliency


def test_trapezoid_ig_is_exact_for_a_quadratic_score():
    # F(e) = Σ a ⊙ e²: the gradient is linear along the path, so the trapezoid rule is exact
    # and IG_i = a_i (x_i² − x'_i²), whatever the number of steps
    a = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])
    x = torch.tensor([[[1.0, 2.0, -1.0], [0.5, 4.0, 2.0]]])
    base = torch.tensor([[[0.0, 1.0, 1.0], [-0.5, 0.0, 0.0]]])
    forward = lambda e: (a * e ** 2).sum(dim=(1, 2))  # noqa: E731
    values, at_base, at_input = integrated_gradients(forward, x, base, steps=3)
    np.testing.assert_allclose(values.numpy(), (a * (x[0] ** 2 - base[0] ** 2)).numpy(), atol=1e-5)
    assert at_input - at_base == pytest.approx(float(values.sum()))
    # the left rule is not exact on it, and converges as steps grow
    coarse, _, _ = integrated_gradients(forward, x, base, steps=3, rule="left")
    fine, _, _ = integrated_gradients(forward, x, base, steps=300, rule="left")
    assert (coarse - values).abs().max() > 10 * (fine - values).abs().max()


@pytest.mark.parametrize("rule", ["left", "trapezoid"])
def test_saliency_matches_captum_layer_integrated_gradients(tiny_ce, rule):
    """captum's riemann_left over n points is our left rule over n steps. Its
    riemann_trapezoid puts n points on [0, 1] but weighs them 1/n (ends halved), so its weights
    sum to (n − 1)/n; ours sum to 1 (completeness), hence the factor."""
    from captum.attr import LayerIntegratedGradients

    query, document = "honey storage jar", "Keep honey in a sealed jar for years."
    steps = 20
    result = saliency(tiny_ce, query, document, steps=steps, rule=rule)
    enc = tiny_ce.encode([query], [document])
    model = tiny_ce.model  # the reference drives the raw model on purpose
    special = tiny_ce.special_token_mask(enc.input_ids)
    base_ids = torch.where(special, enc.input_ids, tiny_ce.tokenizer.pad_token_id)

    def forward(input_ids):
        n = input_ids.shape[0]
        return model(input_ids=input_ids, attention_mask=enc.attention_mask.expand(n, -1),
                     token_type_ids=enc.token_type_ids.expand(n, -1)).logits[:, 0]

    lig = LayerIntegratedGradients(forward, model.bert.embeddings.word_embeddings)
    points = steps if rule == "left" else steps + 1
    reference = lig.attribute(enc.input_ids, baselines=base_ids, n_steps=points,
                              method=f"riemann_{rule}").sum(-1)[0].double().numpy()
    if rule == "trapezoid":
        reference *= points / (points - 1)
    ours = np.zeros_like(reference)
    ours[result.tokens.position.to_numpy()] = result.tokens.attribution.to_numpy()
    assert np.abs(ours - reference).max() <= 1e-3 * np.abs(reference).max()
    assert {"query", "document"} <= set(result.tokens.group)
    assert "".join(result.tokens[result.tokens.group == "query"].token).replace(" ", "") == \
        "honeystoragejar"
    if rule == "trapezoid":
        assert result.completeness_gap < 0.05


def test_saliency_refuses_quantized_models_and_empty_text(tiny_bert_dir, tiny_ce):
    four_bit = load_ranker(ModelSpec("tiny-4", "cross-encoder", str(tiny_bert_dir),
                                     quantization="4bit-nf4", device="cpu"))
    with pytest.raises(InputError, match="gradients through bitsandbytes"):
        saliency(four_bit, "honey", "honey keeps")
    with pytest.raises(InputError, match="the document is unusable"):
        saliency(tiny_ce, "honey", "   ")


def test_the_completeness_warning_explains_itself_and_never_divides_by_almost_nothing():
    from core.saliency import completeness_message

    assert completeness_message(total=1.95, score=3.0, baseline_score=1.0) is None  # 2.5 % off
    missing = completeness_message(total=1.2, score=3.0, baseline_score=1.0)
    assert "add up to +1.200" in missing and "changed by +2.000" in missing
    assert "explain 60% of it" in missing
    # the judge's case: a change near zero (0.01 on scores near 2) is not a share to report
    tiny = completeness_message(total=3.06, score=2.01, baseline_score=2.0)
    assert "hardly changes" in tiny and "%" not in tiny
