"""Neuron attribution: which neurons of which linear layers carry a relevance score (study 2).

Context:
    *Which Neurons Matter in IR?* (ICTIR 2024) scores every output unit of every linear layer
    of a cross-encoder with Neuron Integrated Gradients, as conductance (Dhamdhere et al. 2018):
    along the straight path from a baseline input x' to the input x (in token-embedding space,
    N Riemann steps), a neuron's conductance is

        Σ_k (a(x_{k+1}) − a(x_k)) · ∂F/∂a (x_k),   x_k = x' + (k / N)(x − x'),

    summed over the tokens: how much of F(x) − F(x') flows through that neuron. The baseline
    replaces every (non-special) token by [PAD] (the study's choice), only the query's tokens,
    or sets them to zero vectors.

Intuition for the fast path:
    captum's ``LayerConductance`` runs the whole interpolation once per layer. Gradients of one
    output with respect to *every* linear layer's activations come out of the same backward
    pass, so RankScope keeps every linear output of a batch of interpolation steps (forward
    hooks) and asks autograd for all their gradients at once (:func:`torch.autograd.grad`):
    one integrated pass for all layers. Consecutive step chunks overlap by one step so the
    differences a(x_{k+1}) − a(x_k) cross chunk borders; memory is bounded by the chunk size.

Completeness: the last block's output is a cut every path crosses, so its conductances summed
over units and tokens equal F(x) − F(x') up to the Riemann error; each run reports that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from core.errors import InputError
from core.hooks import hooked
from core.models import QUERY, Encoded, Ranker

BASELINES = ("pad", "pad-query", "zero")
ATTRIBUTION_VERSION = 1


@dataclass(frozen=True)
class AttributionConfig:
    """Conductance settings.

    Attributes:
        steps: Riemann steps N (study: 100).
        baseline: ``pad`` (every non-special token → [PAD], the study's default), ``pad-query``
            (query tokens only), ``zero`` (non-special token embeddings → 0).
        chunk: interpolation points per forward/backward pass (memory bound).
    """

    steps: int = 100  # study: N = 100
    baseline: str = "pad"  # study: all tokens replaced by [PAD]
    chunk: int = 26

    def validate(self, ranker: Ranker | None = None) -> None:
        if self.baseline not in BASELINES:
            raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if not 2 <= self.steps <= 10_000:
            raise InputError(f"steps must be between 2 and 10000, got {self.steps}")
        if self.chunk < 2:
            raise InputError("chunk must be at least 2 interpolation points")
        if ranker is not None and ranker.spec.quantization in ("4bit-nf4", "8bit"):
            raise InputError(
                f"{ranker.spec.name} is loaded {ranker.spec.quantization}: gradients through "
                "bitsandbytes quantized layers are silently wrong (../shared/NOTES.md), so "
                "attribution refuses them; load the ranker in fp32 or bf16")


def baseline_embeddings(ranker: Ranker, enc: Encoded, baseline: str) -> torch.Tensor:
    """The baseline's token embeddings ``[batch, pos, d]`` (special tokens and padding keep
    their own embeddings, so only the text changes along the path)."""
    embeddings = ranker.input_embeddings(enc)
    ids = enc.input_ids.to(ranker.device)
    special = torch.zeros_like(ids, dtype=torch.bool)
    for token_id in ranker.tokenizer.all_special_ids:
        special |= ids == token_id
    groups = enc.groups.to(ranker.device)
    replace = ~special & enc.attention_mask.to(ranker.device).bool()
    if baseline == "pad-query":
        replace &= groups == QUERY
    out = embeddings.clone()
    if baseline == "zero":
        out[replace] = 0.0
    else:
        pad = ranker.model.get_input_embeddings().weight[ranker.tokenizer.pad_token_id]
        out[replace] = pad.to(out.dtype)
    return out


def _keeping(kept: dict[str, torch.Tensor], path: str):
    """A forward hook keeping a module's output tensor (graph attached) under ``path``."""
    def hook(module, inputs, output):
        kept[path] = output[0] if isinstance(output, tuple) else output

    return hook


def integrated_conductance(forward: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module,
                           paths: list[str], x: torch.Tensor, base: torch.Tensor, steps: int,
                           chunk: int) -> tuple[dict[str, torch.Tensor], float, float]:
    """Conductance of every output unit of the modules ``paths`` of ``model`` for
    ``forward(inputs [m, ...]) -> scores [m]`` along ``base → x`` (both ``[1, ...]``), N =
    ``steps`` Riemann steps, ``chunk`` points per pass; summed over every dimension of a
    module's output but the batch and the last (tokens).

    Returns:
        (path → conductances ``[units]`` float64, F(base), F(x))
    """
    alphas = torch.linspace(0, 1, steps + 1, device=x.device, dtype=x.dtype)
    totals: dict[str, torch.Tensor] = {}
    ends = {}
    kept: dict[str, torch.Tensor] = {}
    with hooked(model, {path: _keeping(kept, path) for path in paths}):
        start = 0
        while start < steps:
            stop = min(start + chunk - 1, steps)  # this chunk holds alphas[start..stop]
            a = alphas[start:stop + 1].view(-1, *([1] * (x.dim() - 1)))
            with torch.enable_grad():
                inputs = (base + a * (x - base)).requires_grad_(True)
                scores = forward(inputs)
                outputs = [kept[p] for p in paths]
                grads = torch.autograd.grad(scores.sum(), outputs)
            ends.setdefault(start, float(scores[0].detach()))
            ends[stop] = float(scores[-1].detach())
            for path, act, grad in zip(paths, outputs, grads):
                act = act.detach().double().reshape(len(a), -1, act.shape[-1])
                grad = grad.double().reshape(len(a), -1, act.shape[-1])
                # (a(x_{k+1}) − a(x_k)) · ∂F/∂a(x_k) for k in [start, stop), over steps and tokens
                part = ((act[1:] - act[:-1]) * grad[:-1]).sum(dim=(0, 1))
                totals[path] = part if path not in totals else totals[path] + part
            start = stop
    return totals, ends[0], ends[steps]


def conductance(ranker: Ranker, enc: Encoded, config: AttributionConfig,
                sign: float = 1.0, paths: list[str] | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Conductance of every output unit of ``paths`` (default: every linear layer in the
    blocks) for one input (batch of 1), summed over tokens.

    Args:
        sign: attribute ``sign · F`` (−1 for the non-relevant scheme: what pushes F down).

    Returns:
        (path → ``[out_features]`` float64 conductances, completeness report: score, the
        baseline's score, their difference and the relative gap of the last block's total)
    """
    config.validate(ranker)
    if enc.input_ids.shape[0] != 1:
        raise ValueError("conductance takes one input at a time")
    paths = list(paths or ranker.linear_paths())
    cut = ranker.block_path(ranker.n_layers - 1)
    watched = paths + ([cut] if cut not in paths else [])
    enc = enc.to(ranker.device)
    with torch.no_grad():
        x = ranker.input_embeddings(enc)
        base = baseline_embeddings(ranker, enc, config.baseline)

    def forward(embeddings):
        return sign * ranker.forward_from_embeddings(_repeat(enc, embeddings.shape[0]), embeddings)

    totals, at_base, at_input = integrated_conductance(forward, ranker.model, watched, x, base,
                                                       config.steps, config.chunk)
    delta = at_input - at_base
    cut_total = float(totals[cut].sum())
    report = {"score": sign * at_input, "baseline_score": sign * at_base, "delta": delta,
              "cut_total": cut_total,
              "completeness_gap": abs(cut_total - delta) / max(abs(delta), 1e-12)}
    return {p: totals[p].cpu().numpy() for p in paths}, report


def _repeat(enc: Encoded, n: int) -> Encoded:
    return Encoded(enc.input_ids.expand(n, -1), enc.attention_mask.expand(n, -1),
                   enc.groups.expand(n, -1), enc.last.expand(n),
                   None if enc.token_type_ids is None else enc.token_type_ids.expand(n, -1), [])


# --------------------------------------------------------------------------- neuron tables
def neuron_index(ranker: Ranker, paths: list[str] | None = None) -> pd.DataFrame:
    """One row per attributed neuron ``[path, layer, component, unit]`` in model order."""
    rows = []
    for path in paths or ranker.linear_paths():
        module = ranker.model.get_submodule(path)
        rest = path[len(ranker._blocks_path) + 1:]
        layer, component = rest.split(".", 1)
        rows.append(pd.DataFrame({"path": path, "layer": int(layer) + 1,
                                  "component": component,
                                  "unit": np.arange(module.out_features)}))
    return pd.concat(rows, ignore_index=True)


def flatten(attributions: dict[str, np.ndarray], index: pd.DataFrame) -> np.ndarray:
    """Conductances in ``neuron_index`` order ``[n_neurons]``."""
    return np.concatenate([attributions[p] for p in dict.fromkeys(index.path)])


def top_set(values: np.ndarray, percent: float) -> np.ndarray:
    """Indices of the top ``percent`` % neurons by conductance (at least one)."""
    k = max(1, int(round(len(values) * percent / 100)))
    return np.argsort(-values, kind="stable")[:k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|A ∩ B| / |A| for two equally sized top sets, in percent."""
    return 100.0 * len(np.intersect1d(a, b)) / max(len(a), 1)


def attribution_key(ranker: Ranker, texts: list[tuple[str, str]], config: AttributionConfig,
                    sign: float) -> str:
    payload = json.dumps({"ranker": ranker.spec.key(), "texts": texts, "config": asdict(config),
                          "sign": sign, "version": ATTRIBUTION_VERSION}, sort_keys=True)
    return "nig-" + hashlib.sha256(payload.encode()).hexdigest()[:16]


def scheme(ranker: Ranker, pairs: pd.DataFrame, config: AttributionConfig, sign: float,
           progress: Callable[[int, int], None] | None = None
           ) -> tuple[np.ndarray, pd.DataFrame]:
    """Mean conductance over ``pairs[query, document]`` of ``sign · F`` ``-> [n_neurons]``, and
    one completeness row per pair."""
    index = neuron_index(ranker)
    total = np.zeros(len(index))
    reports = []
    for i, row in enumerate(pairs.itertuples(index=False)):
        enc = ranker.encode([row.query], [row.document])
        values, report = conductance(ranker, enc, config, sign)
        total += flatten(values, index)
        reports.append({"qid": row.qid, "docno": row.docno, **report})
        if progress:
            progress(i + 1, len(pairs))
    return total / max(len(pairs), 1), pd.DataFrame(reports)


# --------------------------------------------------------------------------- schemes
SCHEME_COLUMNS = ["path", "layer", "component", "unit", "relevant", "non_relevant", "fused"]
TOP_PERCENTS = (0.01, 0.1, 1.0)  # study: top 0.01 %, 0.1 %, 1 % of neurons


def scheme_pairs(ranker: Ranker, collection, pairs_per_label: int, split: str | None = "test",
                 depth: int = 20) -> tuple[pd.DataFrame, dict]:
    """Pairs for the two label schemes, as the study: BM25 top-``depth`` candidates of the
    queries, scored; a relevant pair counts when the model predicts it relevant (score above
    the median of all candidate scores), a non-relevant one when it predicts it non-relevant.
    Returns ``[qid, docno, query, document, relevance, score, label]`` (first
    ``pairs_per_label`` of each label, in collection order) and counts."""
    from core.retrieval import candidate_pairs

    qids = None
    if split is not None and "split" in collection.queries:
        qids = collection.queries[collection.queries.split == split].qid.tolist()
    candidates = candidate_pairs(collection, depth, qids=qids,
                                 limit_queries=max(4, pairs_per_label * 2))
    if candidates.empty:
        raise InputError(f"collection {collection.name!r} yields no candidate pairs")
    scores = ranker.score(candidates["query"].tolist(), candidates["document"].tolist())
    threshold = float(np.median(scores))
    relevant = candidates.relevance >= collection.min_relevant
    predicted = scores > threshold
    candidates = candidates.assign(score=scores, label=np.where(relevant, "relevant",
                                                                 "non_relevant"))
    correct = candidates[relevant.to_numpy() == predicted]
    chosen = pd.concat([correct[correct.label == "relevant"].head(pairs_per_label),
                        correct[correct.label == "non_relevant"].head(pairs_per_label)])
    counts = {"candidates": len(candidates), "threshold": threshold,
              "correct": int(len(correct)),
              "relevant": int((chosen.label == "relevant").sum()),
              "non_relevant": int((chosen.label == "non_relevant").sum())}
    return chosen.reset_index(drop=True), counts


def attribute_collection(ranker: Ranker, collection, config: AttributionConfig,
                         pairs_per_label: int = 10, split: str | None = "test",
                         progress: Callable[[int, int], None] | None = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Both label schemes on one collection: relevant pairs attribute F, non-relevant pairs
    attribute −F, each averaged over correctly predicted pairs; fused ⊕ = their mean.

    Returns (one row per neuron ``SCHEME_COLUMNS``, one completeness row per pair, counts).
    """
    config.validate(ranker)
    chosen, counts = scheme_pairs(ranker, collection, pairs_per_label, split)
    index = neuron_index(ranker)
    frame = index.copy()
    reports = []
    done = 0
    for label, sign in (("relevant", 1.0), ("non_relevant", -1.0)):
        part = chosen[chosen.label == label]

        def step(i, n, offset=done):
            if progress:
                progress(offset + i, len(chosen))

        values, report = scheme(ranker, part, config, sign, step)
        frame[label] = values if len(part) else np.nan
        reports.append(report.assign(label=label))
        done += len(part)
    frame["fused"] = frame[["relevant", "non_relevant"]].mean(axis=1)
    return frame[SCHEME_COLUMNS], pd.concat(reports, ignore_index=True), counts


def set_counts(frame: pd.DataFrame, column: str, percents=TOP_PERCENTS) -> pd.DataFrame:
    """Per top-X% set of ``column``: neurons per layer and component ``[percent, layer,
    component, neurons]``."""
    rows = []
    for percent in percents:
        chosen = frame.iloc[top_set(frame[column].to_numpy(), percent)]
        counts = chosen.groupby(["layer", "component"]).size().reset_index(name="neurons")
        rows.append(counts.assign(percent=percent))
    return pd.concat(rows, ignore_index=True)[["percent", "layer", "component", "neurons"]]


def intersection_curve(a: np.ndarray, b: np.ndarray, percents=None) -> pd.DataFrame:
    """|top-X%(a) ∩ top-X%(b)| / |top-X%| in percent, over X (the study's curves)."""
    percents = percents if percents is not None else np.geomspace(0.01, 10, 13)
    return pd.DataFrame({"percent": percents,
                         "intersection": [overlap(top_set(a, p), top_set(b, p)) for p in percents]})
