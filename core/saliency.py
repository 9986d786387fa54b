"""Token saliency: which query and document tokens move a ranker's score.

Integrated gradients (Sundararajan et al., ICML 2017) on the input token embeddings, from the
attribution study's [PAD] baseline — every non-special token's embedding replaced by the
[PAD] token's, special tokens and padding kept — so only the text changes along the path:

    attribution(token i) = Σ_d (x_i − x'_i)_d · ∫₀¹ ∂F(x' + α (x − x')) / ∂e_{i,d} dα

with the integral as a Riemann sum over ``steps`` steps (``trapezoid``: gradients averaged at
both ends of each step, exact for a score quadratic in the embeddings; ``left``: the gradient
at each step's start). Completeness: the attributions sum to F(x) − F(x'); the relative gap is
reported. Equal, within float error, to captum's ``LayerIntegratedGradients`` on the word
embedding layer with the same baseline ids (tested): its ``riemann_left`` over n points is the
left rule over n steps; its ``riemann_trapezoid`` weighs its n points 1/n (ends halved), so its
attributions sum to (n − 1)/n of the score change — ours weigh them 1/(n − 1) and are complete.
4-bit and 8-bit models are refused, as attribution refuses them (their gradients are wrong).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.attribution import AttributionConfig, baseline_embeddings
from core.data import check_user_text
from core.models import GROUP_NAMES, PAD, Ranker

COLUMNS = ["token", "position", "group", "attribution"]


@dataclass
class SaliencyResult:
    """Per-token attributions of one (query, document) pair.

    Attributes:
        tokens: ``token, position, group, attribution`` for every non-pad position, in order.
        score: F(x), the ranker's score of the pair.
        baseline_score: F(x'), the score with the text replaced by [PAD].
        completeness_gap: |Σ attributions − (F(x) − F(x'))| / |F(x) − F(x')|.
    """

    tokens: pd.DataFrame
    score: float
    baseline_score: float
    completeness_gap: float

    def by_group(self) -> pd.DataFrame:
        """Total attribution per position group (query, document, instruction, last)."""
        return (self.tokens.groupby("group", sort=False)["attribution"].sum()
                .reset_index().rename(columns={"attribution": "total"}))


NEAR_ZERO_CHANGE = 0.05  # a score change under 5 % of the larger |score| has no shares to split


def negligible_change(score: float, baseline_score: float) -> bool:
    """Whether the score barely moves from the baseline (under :data:`NEAR_ZERO_CHANGE` of the
    larger |score|): then a completeness gap, a share of almost nothing, means nothing."""
    scale = max(abs(score), abs(baseline_score), 1e-6)
    return abs(score - baseline_score) < NEAR_ZERO_CHANGE * scale


def completeness_message(total: float, score: float, baseline_score: float,
                         tolerance: float = 0.10) -> str | None:
    """A sentence a student understands when the token contributions (summing to ``total``)
    do not account for the score change ``baseline_score → score``; None when they do (gap
    under ``tolerance``). A change near zero is said as such: a share of almost nothing is
    never reported as a percentage."""
    change = score - baseline_score
    if negligible_change(score, baseline_score):
        return (f"The score hardly changes between the blank input and this text "
                f"({baseline_score:.3f} → {score:.3f}), so there is almost nothing for the "
                "words to share out: read which words push up (green) or down (red), not how "
                "much.")
    if abs(total - change) <= tolerance * abs(change):
        return None
    return (f"The words' contributions add up to {total:+.3f}, but the score changed by "
            f"{change:+.3f} from the blank input to this text: they explain "
            f"{total / change:.0%} of it. Integrated gradients walk from a blank ([PAD]) input "
            "to the text in small steps, and this model's path bends sharply, so the steps "
            "miss part of the change — raise the integration steps for a closer account, and "
            "trust the signs of the largest words more than their exact sizes.")


def integrated_gradients(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                         base: torch.Tensor, steps: int, rule: str = "trapezoid",
                         chunk: int = 16) -> tuple[torch.Tensor, float, float]:
    """IG of ``forward(inputs [m, ...]) -> scores [m]`` along ``base → x`` (both ``[1, ...]``).

    Returns (attributions shaped like ``x[0]``, F(base), F(x)); ``chunk`` interpolation points
    per forward/backward pass.
    """
    if rule not in ("left", "trapezoid"):
        raise ValueError(f"rule must be left or trapezoid, got {rule!r}")
    alphas = torch.linspace(0, 1, steps + 1, device=x.device, dtype=x.dtype)
    # Riemann weights of the gradients at alphas[0..steps] (they sum to 1)
    weights = torch.full((steps + 1,), 1.0 / steps, dtype=torch.float64, device=x.device)
    if rule == "left":
        weights[-1] = 0.0
    else:
        weights[0] = weights[-1] = 0.5 / steps
    total = torch.zeros_like(x[0], dtype=torch.float64)
    ends = {}
    for start in range(0, steps + 1, chunk):
        a = alphas[start:start + chunk]
        with torch.enable_grad():
            inputs = (base + a.view(-1, *([1] * (x.dim() - 1))) * (x - base)).detach()
            inputs.requires_grad_(True)
            scores = forward(inputs)
            grads = torch.autograd.grad(scores.sum(), inputs)[0]
        w = weights[start:start + len(a)].view(-1, *([1] * (x.dim() - 1)))
        total += (grads.double() * w).sum(0)
        if start == 0:
            ends[0] = float(scores[0].detach())
        if start + len(a) == steps + 1:
            ends[1] = float(scores[-1].detach())
    attributions = (x[0] - base[0]).double() * total
    return attributions, ends[0], ends[1]


def saliency(ranker: Ranker, query: str, document: str, steps: int = 50,
             rule: str = "trapezoid", prompt: str = "pointwise") -> SaliencyResult:
    """Each token's contribution to the score of ``(query, document)``.

    Raises:
        InputError: empty or unusable text, a quantized model, or bad settings.
    """
    check_user_text("query", query)
    check_user_text("document", document)
    AttributionConfig(steps=steps, baseline="pad", rule=rule).validate(ranker)
    enc = ranker.encode([query], [document], prompt).to(ranker.device)
    with torch.no_grad():
        x = ranker.input_embeddings(enc)
        base = baseline_embeddings(ranker, enc, "pad")

    def forward(embeddings: torch.Tensor) -> torch.Tensor:
        return ranker.forward_from_embeddings(enc.repeat(embeddings.shape[0]), embeddings)

    values, at_base, at_input = integrated_gradients(forward, x, base, steps, rule)
    per_token = values.sum(-1).cpu().numpy()
    groups = enc.groups[0].cpu().numpy()
    keep = np.flatnonzero(groups != PAD)
    texts = ranker.token_texts(enc.input_ids[0].tolist())
    tokens = pd.DataFrame({
        "token": [texts[i] for i in keep], "position": keep.astype(int),
        "group": [GROUP_NAMES[int(groups[i])] for i in keep],
        "attribution": per_token[keep].astype(float)})
    delta = at_input - at_base
    gap = abs(float(per_token.sum()) - delta) / max(abs(delta), 1e-12)
    return SaliencyResult(tokens[COLUMNS], at_input, at_base, gap)
