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

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from core.analysis import Analysis, Job, option, register
from core.errors import InputError
from core.models import QUERY, Encoded, Ranker
from core.store import content_key

BASELINES = ("pad", "pad-query", "zero")
RULES = ("left", "trapezoid")
ATTRIBUTION_VERSION = 1


@dataclass(frozen=True)
class AttributionConfig:
    """Conductance settings.

    Attributes:
        steps: Riemann steps N (study: 100).
        baseline: ``pad`` (every non-special token → [PAD], the study's default), ``pad-query``
            (query tokens only), ``zero`` (non-special token embeddings → 0).
        chunk: interpolation points per forward/backward pass (memory bound).
        rule: ``left`` (the study's and captum's Riemann sum) or ``trapezoid`` (gradients
            averaged at both ends of a step: same cost, far smaller completeness gaps on
            decoders whose normalisation bends the path sharply).
    """

    steps: int = 100  # study: N = 100
    baseline: str = "pad"  # study: all tokens replaced by [PAD]
    chunk: int = 26
    rule: str = "left"  # study / captum: gradient at the start of each step

    def validate(self, ranker: Ranker | None = None) -> None:
        if self.baseline not in BASELINES:
            raise InputError(f"baseline must be one of {', '.join(BASELINES)}, got {self.baseline!r}")
        if not 2 <= self.steps <= 10_000:
            raise InputError(f"steps must be between 2 and 10000, got {self.steps}")
        if self.chunk < 2:
            raise InputError("chunk must be at least 2 interpolation points")
        if self.rule not in RULES:
            raise InputError(f"rule must be left or trapezoid, got {self.rule!r}")
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
    special = ranker.special_token_mask(ids)
    groups = enc.groups.to(ranker.device)
    replace = ~special & enc.attention_mask.to(ranker.device).bool()
    if baseline == "pad-query":
        replace &= groups == QUERY
    out = embeddings.clone()
    if baseline == "zero":
        out[replace] = 0.0
    else:
        pad = ranker.pad_embedding()
        out[replace] = pad.to(out.dtype)
    return out


def _keeping(kept: dict[str, torch.Tensor], path: str):
    """A forward hook keeping a module's output tensor (graph attached) under ``path``."""
    def hook(module, inputs, output):
        kept[path] = output[0] if isinstance(output, tuple) else output

    return hook


def integrated_conductance(forward: Callable[[torch.Tensor], torch.Tensor],
                           hooked: Callable[[dict], object],
                           paths: list[str], x: torch.Tensor, base: torch.Tensor, steps: int,
                           chunk: int, rule: str = "left"
                           ) -> tuple[dict[str, torch.Tensor], float, float]:
    """Conductance of every output unit of the modules ``paths`` (whose forward hooks
    ``hooked(path → hook)`` registers for a ``with`` block: :meth:`Ranker.hooked`) for
    ``forward(inputs [m, ...]) -> scores [m]`` along ``base → x`` (both ``[1, ...]``), N =
    ``steps`` Riemann steps, ``chunk`` points per pass; summed over every dimension of a
    module's output but the batch and the last (tokens). ``rule``: ``left`` takes each step's
    gradient at its start (the study's and captum's sum); ``trapezoid`` averages the gradients
    at both ends (same points, no extra pass; second-order accurate).

    Returns:
        (path → conductances ``[units]`` float64, F(base), F(x))
    """
    alphas = torch.linspace(0, 1, steps + 1, device=x.device, dtype=x.dtype)
    totals: dict[str, torch.Tensor] = {}
    ends = {}
    kept: dict[str, torch.Tensor] = {}
    hooks = {path: _keeping(kept, path) for path in paths}
    with hooked(hooks):
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
                slope = grad[:-1] if rule == "left" else (grad[:-1] + grad[1:]) / 2
                part = ((act[1:] - act[:-1]) * slope).sum(dim=(0, 1))
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
        return sign * ranker.forward_from_embeddings(enc.repeat(embeddings.shape[0]), embeddings)

    totals, at_base, at_input = integrated_conductance(forward, ranker.hooked, watched, x, base,
                                                       config.steps, config.chunk, config.rule)
    broken = [p for p in watched if not torch.isfinite(totals[p]).all()]
    if broken:
        raise InputError(
            f"the {config.baseline} baseline gives non-finite gradients in {ranker.spec.name} "
            f"({len(broken)} layers, e.g. {broken[0]}): a normalisation of an all-zero input "
            "has no finite slope; use the pad or pad-query baseline")
    delta = at_input - at_base
    cut_total = float(totals[cut].sum())
    report = {"score": sign * at_input, "baseline_score": sign * at_base, "delta": delta,
              "cut_total": cut_total,
              "completeness_gap": abs(cut_total - delta) / max(abs(delta), 1e-12)}
    return {p: totals[p].cpu().numpy() for p in paths}, report


# --------------------------------------------------------------------------- neuron tables
def linear_layout(ranker: Ranker) -> dict:
    """What a neuron table needs to be rebuilt without the model: every attributed Linear's
    path and width, the blocks' path prefix and the residual width."""
    return {"blocks": ranker.blocks_path, "d_model": ranker.d_model,
            "linears": [[p, ranker.linear_width(p)] for p in ranker.linear_paths()]}


def neuron_index(source: Ranker | dict, paths: list[str] | None = None) -> pd.DataFrame:
    """One row per attributed neuron ``[path, layer, component, neuron]`` in model order
    (``layer`` 1-based, as every table), from a ranker or a :func:`linear_layout`."""
    layout = linear_layout(source) if isinstance(source, Ranker) else source
    widths = dict(layout["linears"])
    rows = []
    for path in paths or widths:
        layer, component = path[len(layout["blocks"]) + 1:].split(".", 1)
        rows.append(pd.DataFrame({"path": path, "layer": int(layer) + 1, "component": component,
                                  "neuron": np.arange(widths[path])}))
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


# --------------------------------------------------------------------------- schemes
SCHEME_COLUMNS = ["path", "layer", "component", "neuron", "relevant", "non_relevant", "fused"]
LABELS = ("relevant", "non_relevant")
TOP_PERCENTS = (0.01, 0.1, 1.0)  # study: top 0.01 %, 0.1 %, 1 % of neurons


def scheme_pairs(ranker: Ranker, collection, pairs_per_label: int, split: str | None = "test",
                 depth: int = 20) -> tuple[pd.DataFrame, dict]:
    """Pairs for the two label schemes, as the study: BM25 top-``depth`` candidates of the
    queries, scored; a relevant pair counts when the model predicts it relevant (score above
    the median of all candidate scores), a non-relevant one when it predicts it non-relevant.
    Returns ``[qid, docno, query, document, relevance, score, label]`` (first
    ``pairs_per_label`` of each label, in collection order) and counts."""
    from core.retrieval import candidate_pairs

    collection.require_judgments("relevant and non-relevant pairs to attribute")
    candidates = candidate_pairs(collection, depth, qids=collection.qids(split),
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


@dataclass
class AttributionResult:
    """One attribution run: per-neuron schemes (``SCHEME_COLUMNS``), one completeness row per
    pair, pair counts, and whether a Stop cut it short."""

    key: str
    frame: pd.DataFrame
    reports: pd.DataFrame
    counts: dict
    stopped: bool = False
    seconds: float = 0.0


GAP_WARNING = 0.05  # a median completeness gap above this makes attributions untrustworthy
REPORT_COLUMNS = ["pair", "qid", "docno", "label", "score", "baseline_score", "delta",
                  "cut_total", "completeness_gap", "seconds"]


@dataclass(frozen=True)
class AttributeConfig:
    """One attribution run: the pairs and the conductance settings."""

    pairs: int = option(10, "pairs per label (relevant / non-relevant), each judged right by "
                            "the ranker", label="Pairs per label", minimum=1)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")
    steps: int = option(100, "Riemann steps N (study: 100)", label="Riemann steps N")
    baseline: str = option("pad", "pad: every token → [PAD] (study); pad-query: the query's "
                                  "tokens only; zero: zero vectors", choices=BASELINES,
                           label="Baseline")
    rule: str = option("left", "left: the study's / captum's Riemann sum; trapezoid: same "
                               "points, far smaller completeness gaps on decoders",
                       choices=RULES, label="Rule")
    chunk: int = option(26, "interpolation points per forward/backward pass (memory)",
                        label="Points per pass")

    def conductance(self) -> AttributionConfig:
        return AttributionConfig(steps=self.steps, baseline=self.baseline, chunk=self.chunk,
                                 rule=self.rule)


def attribution_key(ranker: Ranker, collection, config: AttributionConfig,
                    pairs_per_label: int, split: str | None) -> str:
    return content_key("attribution", prefix="nig-", length=16, ranker=ranker.spec.key(),
                       collection=collection.content_hash, config=asdict(config),
                       pairs=pairs_per_label, split=split, version=ATTRIBUTION_VERSION)


def scheme_table(index: pd.DataFrame, reports: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """Per-neuron schemes from per-pair conductances ``[pairs, neurons]``: the mean over the
    relevant pairs (of F) and over the non-relevant pairs (of −F); fused ⊕ = their mean."""
    frame = index.copy()
    for label in LABELS:
        chosen = (reports.label == label).to_numpy()
        frame[label] = values[chosen].astype(np.float64).mean(axis=0) if chosen.any() else np.nan
    frame["fused"] = frame[list(LABELS)].mean(axis=1)
    return frame[SCHEME_COLUMNS]


@register
class NeuronAttribution(Analysis):
    """Both label schemes on one collection: relevant pairs attribute F, non-relevant pairs
    attribute −F, each over pairs the ranker predicts right (:func:`scheme_pairs`); fused ⊕ =
    their mean. One unit per pair: its conductances for every neuron (float32) and its
    completeness report, stored in one transaction."""

    name = "attribute"
    title = "Neuron attribution"
    summary = "neuron conductance (NIG) of every linear layer"
    unit = "pair"
    version = ATTRIBUTION_VERSION
    Config = AttributeConfig

    def validate(self, config: AttributeConfig) -> None:
        super().validate(config)
        config.conductance().validate()

    def key(self, ranker, collection, config: AttributeConfig) -> str:
        # the key runs had before attribution moved to the contract: they are found again
        return attribution_key(ranker, collection, config.conductance(), config.pairs,
                               config.split or None)

    def units(self, job: Job) -> list[dict]:
        config, ranker = job.config, job.ranker
        config.conductance().validate(ranker)  # quantized rankers are refused before work
        chosen, counts = scheme_pairs(ranker, job.collection, config.pairs, config.split or None)
        job.memo.update(counts=counts, layout=linear_layout(ranker))
        return [{"pair": i, "qid": str(r.qid), "docno": str(r.docno), "label": r.label,
                 "query": r.query, "document": r.document}
                for i, r in enumerate(chosen.itertuples(index=False))]

    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        ranker = job.ranker
        tick = time.perf_counter()
        enc = ranker.encode([unit["query"]], [unit["document"]])
        sign = 1.0 if unit["label"] == "relevant" else -1.0
        conductances, report = conductance(ranker, enc, job.config.conductance(), sign)
        index = job.cached("index", lambda: neuron_index(job.memo["layout"]))
        values = flatten(conductances, index).astype(np.float32)
        return pd.DataFrame([{
            "pair": unit["pair"], "qid": unit["qid"], "docno": unit["docno"],
            "label": unit["label"], **report, "seconds": time.perf_counter() - tick,
            "conductances": values.tobytes(), "layout": json.dumps(job.memo["layout"]),
            "counts": json.dumps(job.memo["counts"])}])

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        index = neuron_index(json.loads(frame.layout.iloc[0]))
        values = np.stack([np.frombuffer(b, dtype=np.float32) for b in frame.conductances])
        return scheme_table(index, frame[REPORT_COLUMNS], values)

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per top-X % set: its size, how much the two labels' sets share, and where the
        fused set sits (the whole per-neuron table goes to the CSV)."""
        rows = []
        for percent in TOP_PERCENTS:
            a = top_set(table.relevant.to_numpy(), percent)
            b = top_set(table.non_relevant.to_numpy(), percent)
            chosen = table.iloc[top_set(table.fused.to_numpy(), percent)]
            where = chosen.groupby("component").size().sort_values(ascending=False)
            rows.append({"top %": percent, "neurons": len(a),
                         "relevant ∩ non-relevant %": round(overlap(a, b), 1),
                         "fused set by component": ", ".join(f"{c} {n}" for c, n in
                                                             where.items())})
        return pd.DataFrame(rows)

    def notes(self, frame: pd.DataFrame, config: AttributeConfig) -> list[str]:
        if frame.empty:
            return []
        counts, gaps = json.loads(frame.counts.iloc[0]), frame.completeness_gap
        notes = [f"{(frame.label == 'relevant').sum()} relevant and "
                 f"{(frame.label == 'non_relevant').sum()} non-relevant pairs judged right "
                 f"({counts['correct']} of {counts['candidates']} candidates), N = "
                 f"{config.steps}, baseline {config.baseline}, rule {config.rule}",
                 f"completeness (last block total vs F(x) − F(baseline)): median gap "
                 f"{gaps.median():.4f}, max {gaps.max():.4f}"]
        if gaps.median() > GAP_WARNING:
            notes.append(f"conductances miss {100 * gaps.median():.0f}% of F(x) − F(baseline) "
                         "(median): use the trapezoid rule or more steps before trusting them")
        return notes


def _result(key: str, rows: pd.DataFrame, table: pd.DataFrame, info: dict,
            config: AttributeConfig) -> AttributionResult:
    """The page's and the CLI's view of a run: schemes, completeness rows and counts."""
    layout = json.loads(rows.layout.iloc[0]) if len(rows) else None
    counts = json.loads(rows.counts.iloc[0]) if len(rows) else {}
    reports = rows[REPORT_COLUMNS] if len(rows) else pd.DataFrame(columns=REPORT_COLUMNS)
    settings = {**asdict(config.conductance()), "pairs_per_label": config.pairs,
                "split": config.split or None, "layout": layout}
    counts = {**counts, "relevant": int((reports.label == "relevant").sum()),
              "non_relevant": int((reports.label == "non_relevant").sum()), **info,
              "config": settings}
    return AttributionResult(key, table, reports, counts)


def attribute_collection(ranker: Ranker, collection, config: AttributionConfig,
                         pairs_per_label: int = 10, split: str | None = "test", store=None, *,
                         progress: Callable[[int, int, str], None] | None = None,
                         should_stop: Callable[[], bool] | None = None) -> AttributionResult:
    """:class:`NeuronAttribution` run on ``ranker`` × ``collection`` (resumable through
    ``store``; a finished run is read back without scoring anything)."""
    from core.analysis import registered, run

    settings = AttributeConfig(pairs=pairs_per_label, split=split or "", steps=config.steps,
                               baseline=config.baseline, rule=config.rule, chunk=config.chunk)
    result = run(registered()["attribute"], ranker, collection, settings, store,
                 progress=progress, should_stop=should_stop)
    status = "done" if not result.stopped else "running"
    out = _result(result.key, result.rows, result.frame, {
        "status": status, "ranker": ranker.spec.name, "collection": collection.name}, settings)
    out.stopped, out.seconds = result.stopped, result.seconds
    return out


def load_attribution(store, key: str) -> AttributionResult | None:
    """A stored attribution run (finished or not), without loading the model."""
    from core.analysis import config_from, load, registered

    info = store.analysis_run(key)
    if info is None or info["analysis"] != "attribute":
        return None
    config = config_from(AttributeConfig, json.loads(info["config"]))
    result = load(registered()["attribute"], store, key, None, config)
    return _result(key, result.rows, result.frame, {
        "status": info["status"], "ranker": info["ranker"],
        "collection": info["collection"]}, config)


def finished_runs(store) -> pd.DataFrame:
    """The store's finished attribution runs (``attr_key``, ``ranker``, ``collection``,
    ``pairs_done``) with a ``label`` each: ranker · collection · pairs · N and rule ·
    baseline (read from the stored config)."""
    runs = store.analysis_runs("attribute")
    runs = runs[runs.status == "done"].rename(columns={"key": "attr_key",
                                                        "units_done": "pairs_done"})
    configs = [json.loads(c) for c in runs.config]
    runs["label"] = [f"{r.ranker} · {r.collection} · {r.pairs_done} pairs · N={c['steps']} "
                     f"{c.get('rule', 'left')} · {c['baseline']}"
                     for r, c in zip(runs.itertuples(), configs)]
    return runs.reset_index(drop=True)


def scheme_sources(results: list[AttributionResult]) -> dict[str, tuple[str, str]]:
    """Every complete scheme of several runs, labelled ``collection · scheme`` (a collection
    seen twice gets its key's tail) → (the run's store key, the scheme)."""
    sources, names = {}, set()
    for result in results:
        name = result.counts["collection"]
        if name in names:
            name = f"{name} ({result.key[-4:]})"
        names.add(name)
        for label in (*LABELS, "fused"):
            if result.frame[label].notna().all():
                sources[f"{name} · {label}"] = (result.key, label)
    return sources


def scheme_columns(results: list[AttributionResult]) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The neuron index and every complete scheme of several runs of one ranker, labelled as
    :func:`scheme_sources` labels them.

    Raises:
        InputError: runs of different rankers (their neurons cannot be compared).
    """
    if len({r.counts["ranker"] for r in results}) > 1:
        raise InputError("Pick runs of one ranker: neurons of different models cannot be "
                         "compared.")
    by_key = {r.key: r for r in results}
    columns = {label: by_key[key].frame[scheme].to_numpy()
               for label, (key, scheme) in scheme_sources(results).items()}
    return results[0].frame[["path", "layer", "component", "neuron"]].copy(), columns


# --------------------------------------------------------------------------- baselines
@torch.no_grad()
def baseline_table(ranker: Ranker, pairs: pd.DataFrame, threshold: float,
                   baselines=BASELINES) -> pd.DataFrame:
    """How much of the relevance signal each baseline removes (the study's Table 1): the
    model's score on the input and on the baseline, how often the baseline itself is still
    judged relevant (score above ``threshold``), and the mean F(x) − F(x') per label — the
    total a full layer's conductances must add up to."""
    rows = []
    for baseline in baselines:
        at_input, at_base = [], []
        for row in pairs.itertuples(index=False):
            enc = ranker.encode([row.query], [row.document]).to(ranker.device)
            x = ranker.input_embeddings(enc)
            base = baseline_embeddings(ranker, enc, baseline)
            scores = ranker.forward_from_embeddings(enc.repeat(2), torch.cat([x, base]))
            at_input.append(float(scores[0]))
            at_base.append(float(scores[1]))
        at_input, at_base = np.array(at_input), np.array(at_base)
        relevant = (pairs.label == "relevant").to_numpy()
        delta = at_input - at_base
        rows.append({"baseline": baseline, "pairs": len(pairs),
                     "score_input": float(at_input.mean()),
                     "score_baseline": float(at_base.mean()),
                     "score_baseline_sd": float(at_base.std()),
                     "baseline_judged_relevant_pct": float(100 * (at_base > threshold).mean()),
                     "delta_relevant": float(delta[relevant].mean()) if relevant.any() else np.nan,
                     "delta_non_relevant": (float(delta[~relevant].mean()) if (~relevant).any()
                                            else np.nan)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class BaselinesConfig:
    """The pairs on which the three baselines are compared (an attribution run's)."""

    pairs: int = option(10, "pairs per label, judged right (as the attribution run)",
                        label="Pairs per label", minimum=1)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")


@register
class BaselineComparison(Analysis):
    """The study's Table 1: how much relevance signal each baseline (pad, pad-query, zero)
    removes, on the pairs an attribution run with these settings uses. One unit per
    baseline."""

    name = "baselines"
    title = "Baseline comparison"
    summary = "how much relevance signal each attribution baseline removes (study 2, Table 1)"
    unit = "baseline"
    Config = BaselinesConfig

    def units(self, job: Job) -> list[str]:
        return list(BASELINES)

    def compute(self, job: Job, unit: str) -> pd.DataFrame:
        chosen, counts = job.cached("pairs", lambda: scheme_pairs(
            job.ranker, job.collection, job.config.pairs, job.config.split or None))
        return baseline_table(job.ranker, chosen, counts["threshold"], (unit,))


# --------------------------------------------------------------------------- set algebra
OPERATIONS = ("∩", "⊕")


def combine(columns: dict[str, np.ndarray], operation: str, percent: float) -> np.ndarray:
    """A neuron set from several schemes (name → conductances in one neuron order):
    ``∩`` keeps the neurons in every scheme's top-``percent`` %, ``⊕`` fuses the schemes
    (mean conductance, as the study fuses its two labels) and takes that top-``percent`` %."""
    if operation not in OPERATIONS:
        raise InputError(f"operation must be ∩ or ⊕, got {operation!r}")
    if not columns:
        raise InputError("pick at least one scheme")
    if not 0 < percent <= 100:
        raise InputError(f"X must be in (0, 100] %, got {percent}")
    arrays = list(columns.values())
    if operation == "⊕":
        return np.sort(top_set(np.mean(arrays, axis=0), percent))
    chosen = top_set(arrays[0], percent)
    for values in arrays[1:]:
        chosen = np.intersect1d(chosen, top_set(values, percent))
    return np.sort(chosen)


def neuron_sets(table: pd.DataFrame, scheme: str, percents) -> dict[str, pd.DataFrame]:
    """The top-X % neurons of ``scheme`` for each X, as ``"top X% scheme" -> rows of table``
    (the knock-out's input: ``path``, ``unit`` and the scheme columns)."""
    if scheme not in table:
        raise InputError(f"the attribution table has no {scheme!r} column; schemes: "
                         f"{', '.join(c for c in (*LABELS, 'fused') if c in table)}")
    if not len(percents):
        raise InputError("pick at least one top X %")
    values = table[scheme].to_numpy()
    return {f"top {p}% {scheme}": table.iloc[top_set(values, p)] for p in sorted(percents)}


def intersection_curve(a: np.ndarray, b: np.ndarray, percents=None) -> pd.DataFrame:
    """|top-X%(a) ∩ top-X%(b)| / |top-X%| in percent, over X (the study's curves)."""
    percents = percents if percents is not None else np.geomspace(0.01, 10, 13)
    return pd.DataFrame({"percent": percents,
                         "intersection": [overlap(top_set(a, p), top_set(b, p)) for p in percents]})


def intersection_curves(columns: dict[str, np.ndarray], percents=None) -> pd.DataFrame:
    """Every pair of schemes' intersection curve, plus the intersection over all of them
    ``[pair, percent, intersection]``."""
    percents = percents if percents is not None else np.geomspace(0.01, 10, 13)
    names = list(columns)
    frames = [intersection_curve(columns[a], columns[b], percents).assign(pair=f"{a} ∩ {b}")
              for i, a in enumerate(names) for b in names[i + 1:]]
    if len(names) > 2:
        common = [100.0 * len(combine(columns, "∩", p)) / len(top_set(columns[names[0]], p))
                  for p in percents]
        frames.append(pd.DataFrame({"percent": percents, "intersection": common,
                                    "pair": "all " + str(len(names))}))
    if not frames:
        return pd.DataFrame(columns=["pair", "percent", "intersection"])
    return pd.concat(frames, ignore_index=True)[["pair", "percent", "intersection"]]


def set_counts(frame: pd.DataFrame, column: str, percents=TOP_PERCENTS) -> pd.DataFrame:
    """Per top-X% set of ``column``: neurons per layer and component ``[percent, layer,
    component, neurons]``."""
    rows = []
    for percent in percents:
        chosen = frame.iloc[top_set(frame[column].to_numpy(), percent)]
        counts = chosen.groupby(["layer", "component"]).size().reset_index(name="neurons")
        rows.append(counts.assign(percent=percent))
    return pd.concat(rows, ignore_index=True)[["percent", "layer", "component", "neurons"]]
