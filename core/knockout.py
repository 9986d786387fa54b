"""Knock-out: remove components and measure what the ranking loses.

Context:
    Patching says where the clean/corrupted difference flows; knock-out asks whether a model
    still judges and ranks without those parts. The patching study mean-ablates the top-k heads
    by indirect effect at each position group (and all groups mixed) and compares with the same
    number of random heads: F1 of yes/no judgments on held-out pairs and nDCG@10 re-ranking
    BM25 top-20 (its Table 1, with the relative drop).

Neuron sets (study 2, *Which Neurons Matter in IR?*): zero- (or mean-) ablate the top-X% neurons
by conductance in their linear layers during re-ranking, against random sets of the same size in
the same layers (50 draws), with a paired two-tailed t-test over queries (its Table 4).

Mean ablation replaces a head's output (its slice of the attention output projection's input)
at the chosen positions with that head's mean output over a reference set — the prompt pairs of
the patching sweep (clean and corrupted, every non-pad token) — so the model sees a typical,
input-independent value rather than an out-of-distribution zero.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from core.data import Collection
from core.errors import InputError
from core.store import content_key
from core.metrics import evaluate, f1
from core.models import Ranker
from core.patching import (GROUP_CODES, PatchConfig, PatchResult, encode_pair, mean_effects,
                           prompt_pairs, top_heads)
from core.retrieval import candidate_pairs

KNOCKOUT_VERSION = 1
KNOCKOUT_COLUMNS = ["group", "selection", "heads", "f1", "f1_sd", "f1_drop_pct", "ndcg",
                    "ndcg_sd", "ndcg_drop_pct"]


@dataclass(frozen=True)
class KnockoutConfig:
    """Head knock-out after a patching sweep.

    Attributes:
        k: heads ablated per condition.
        repeats: random head sets drawn (their scores are averaged).
        queries: held-out queries (not among the patching pairs) for F1 and nDCG@10.
        depth: BM25 candidates re-ranked (study: top-20).
        seed: random head draws.
    """

    k: int = 5
    repeats: int = 3
    queries: int = 5
    depth: int = 20  # study: re-rank BM25 top-20
    seed: int = 0

    def validate(self, ranker: Ranker) -> None:
        n_heads = ranker.n_layers * ranker.n_heads
        if not 1 <= self.k < n_heads:
            raise InputError(f"k must be between 1 and {n_heads - 1} ({ranker.spec.name} has "
                             f"{n_heads} heads), got {self.k}")
        if self.repeats < 1 or self.queries < 1 or self.depth < 1:
            raise InputError("repeats, queries and depth must be at least 1")


@torch.inference_mode()
def token_means(ranker: Ranker, encodings, paths: list[str], *, inputs: bool = False
                ) -> dict[str, torch.Tensor]:
    """Mean over the non-pad tokens of ``encodings`` of each module's output (or first input)
    ``path → [width]`` — the reference values mean-ablation writes."""
    sums, count = {}, 0
    for enc in encodings:
        mask = enc.attention_mask.bool().to(ranker.device)
        with (ranker.capture_inputs(paths) if inputs else ranker.capture(paths)) as seen:
            ranker.forward(enc)
        for path in paths:
            total = seen[path][mask].double().sum(0)
            sums[path] = total if path not in sums else sums[path] + total
        count += int(mask.sum())
    return {path: (total / count).float() for path, total in sums.items()}


def head_means(ranker: Ranker, encodings: list) -> dict[int, torch.Tensor]:
    """Mean of every head's output over the non-pad tokens of ``encodings``:
    layer → ``[n_heads * head_dim]``."""
    paths = [ranker.head_input_path(layer) for layer in range(ranker.n_layers)]
    means = token_means(ranker, encodings, paths, inputs=True)
    return {layer: means[path] for layer, path in enumerate(paths)}


@contextmanager
def heads_ablated(ranker: Ranker, heads: list[tuple[int, int, str]], means: dict[int, torch.Tensor],
                  groups_of_batch: Callable[[], torch.Tensor]):
    """Mean-ablate ``(layer, head, group)`` inside the block; ``groups_of_batch()`` returns the
    current batch's position-group codes ``[batch, pos]``."""
    by_layer: dict[int, list[tuple[int, str]]] = {}
    for layer, head, group in heads:
        by_layer.setdefault(layer, []).append((head, group))

    def make_setter(layer: int):
        def setter(head_inputs: torch.Tensor) -> torch.Tensor:
            groups = groups_of_batch().to(head_inputs.device)
            out = head_inputs.clone()
            for head, group in by_layer[layer]:
                cols = slice(head * ranker.head_dim, (head + 1) * ranker.head_dim)
                where = groups == GROUP_CODES[group] if group != "all" else groups > 0
                out[..., cols][where] = means[layer][cols].to(out.dtype)
            return out

        return setter

    setters = {ranker.head_input_path(layer): make_setter(layer) for layer in by_layer}
    with ranker.intervene_inputs(setters):
        yield


@torch.inference_mode()
def score_ablated(ranker: Ranker, queries: list[str], documents: list[str],
                  heads: list[tuple[int, int, str]], means: dict[int, torch.Tensor],
                  prompt: str = "pointwise", documents_b: list[str] | None = None,
                  batch_size: int = 16) -> np.ndarray:
    """Scores with ``heads`` mean-ablated ``-> [n]`` (same batching as :meth:`Ranker.score`)."""
    current = {}
    out = np.empty(len(queries), dtype=np.float64)
    with heads_ablated(ranker, heads, means, lambda: current["groups"]):
        for start in range(0, len(queries), batch_size):
            index = slice(start, start + batch_size)
            enc = ranker.encode(queries[index], documents[index], prompt,
                                None if documents_b is None else documents_b[index])
            current["groups"] = enc.groups
            out[index] = ranker.forward(enc).double().cpu().numpy()
    return out


def knockout_key(patch: PatchResult, config: KnockoutConfig) -> str:
    return content_key("knockout", prefix="knockout-", length=16, patch=patch.key,
                       config=asdict(config), version=KNOCKOUT_VERSION)


def run_knockout(ranker: Ranker, collection: Collection, patch: PatchResult,
                 patch_config: PatchConfig, config: KnockoutConfig, store=None, *,
                 progress: Callable[[int, int, str], None] | None = None) -> pd.DataFrame:
    """Table 1 of the study: F1 and nDCG@10 with the top-k heads (by mean IE at each head
    group, and all groups mixed) mean-ablated, versus ``repeats`` random head sets of the same
    size at the same positions, with the relative drop from the full model in percent."""
    config.validate(ranker)
    key = knockout_key(patch, config)
    if store is not None and (cached := store.frame(key)) is not None:
        return cached
    effects = mean_effects(patch.used)
    head_groups = sorted(set(effects[effects.target == "head"].group))
    if not head_groups:
        raise InputError("this patching sweep patched no heads; run it with head groups "
                         "(e.g. last, query) before a knock-out")
    started = time.perf_counter()
    # reference set for the means: the sweep's own prompt pairs
    candidates = prompt_pairs(collection, patch_config, limit=len(patch.pairs) or 1)
    ids = ["qid", "positive_docno", "negative_docno"]
    used = patch.pairs.loc[patch.pairs.status == "used", ids].astype(str)
    pairs = candidates.astype({c: str for c in ids}).merge(used, on=ids)  # in candidate order
    encodings = [enc for row in pairs.itertuples(index=False)
                 if (enc := encode_pair(ranker, row.query, row.positive, row.negative,
                                        patch_config)[0]) is not None]
    means = head_means(ranker, encodings)
    heldout_config = PatchConfig(prompt=patch_config.prompt, pairs=config.queries,
                                 split=patch_config.split, depth=patch_config.depth)
    judged = prompt_pairs(collection, heldout_config, skip_qids=set(patch.pairs.qid))
    if judged.empty:
        raise InputError("no held-out queries are left for the knock-out; use fewer patching "
                         "pairs or a larger collection")
    rerank = candidate_pairs(collection, config.depth, qids=judged.qid.tolist())
    f1_inputs = _judgment_inputs(judged, patch_config.prompt)

    def measure(heads):
        scores = score_ablated(ranker, *f1_inputs[:2], heads, means, patch_config.prompt,
                               f1_inputs[2])
        ranked = score_ablated(ranker, rerank["query"].tolist(), rerank["document"].tolist(),
                               heads, means)
        return scores, evaluate(collection, rerank, ranked)["nDCG@10"]

    rng = np.random.default_rng(config.seed)
    all_heads = [(layer, head) for layer in range(ranker.n_layers) for head in range(ranker.n_heads)]
    conditions = [*head_groups, "mixed"]
    total = 1 + len(conditions) * (1 + config.repeats)
    step = 0

    def tick(what):
        nonlocal step
        step += 1
        if progress:
            progress(step, total, what)

    full_scores, full_ndcg = measure([])
    threshold = 0.0 if ranker.kind == "llm-judge" else float(np.median(full_scores))
    labels = f1_inputs[3]

    def judged_f1(scores):
        return f1(labels, scores > threshold)

    full_f1 = judged_f1(full_scores)
    tick("full model")
    rows = [("all", "full model", 0, full_f1, 0.0, 0.0, full_ndcg, 0.0, 0.0)]
    for condition in conditions:
        top = top_heads(effects, None if condition == "mixed" else condition, config.k)
        scores, ndcg = measure(top)
        tick(f"top-{config.k} heads at {condition}")
        rows.append(_row(condition, f"top-{len(top)}", len(top), [judged_f1(scores)], [ndcg],
                         full_f1, full_ndcg))
        chosen = {(layer, head) for layer, head, _ in top}
        pool = [h for h in all_heads if h not in chosen]
        f1s, ndcgs = [], []
        for repeat in range(config.repeats):
            picks = rng.choice(len(pool), size=len(top), replace=False)
            random_heads = [(*pool[i], condition if condition != "mixed"
                             else head_groups[int(rng.integers(len(head_groups)))]) for i in picks]
            scores, ndcg = measure(random_heads)
            f1s.append(judged_f1(scores))
            ndcgs.append(ndcg)
            tick(f"random heads at {condition} ({repeat + 1}/{config.repeats})")
        rows.append(_row(condition, f"random-{len(top)} (×{config.repeats})", len(top), f1s,
                         ndcgs, full_f1, full_ndcg))
    frame = pd.DataFrame(rows, columns=KNOCKOUT_COLUMNS)
    frame.attrs["seconds"] = time.perf_counter() - started
    if store is not None:
        store.write_frame(key, "knockout", ranker.spec.name, collection.name,
                          {"patch": patch.key, **asdict(config)}, frame)
    return frame


def _judgment_inputs(judged: pd.DataFrame, prompt: str):
    """(queries, documents, documents_b, labels) for the yes/no judgments on held-out pairs."""
    queries = [*judged["query"], *judged["query"]]
    if prompt == "pairwise":  # A = positive → yes; A = negative → no
        return (queries, [*judged.positive, *judged.negative],
                [*judged.negative, *judged.positive], np.r_[np.ones(len(judged)), np.zeros(len(judged))])
    return (queries, [*judged.positive, *judged.negative], None,
            np.r_[np.ones(len(judged)), np.zeros(len(judged))])


def _row(group, selection, heads, f1s, ndcgs, full_f1, full_ndcg):
    f1_value, ndcg_value = float(np.mean(f1s)), float(np.mean(ndcgs))
    return (group, selection, heads, f1_value, float(np.std(f1s)),
            _drop(f1_value, full_f1), ndcg_value, float(np.std(ndcgs)), _drop(ndcg_value, full_ndcg))


def _drop(value: float, full: float) -> float:
    """Relative change from the full model in percent (negative = a drop)."""
    return float("nan") if full == 0 else 100.0 * (value - full) / full


# --------------------------------------------------------------------------- neuron sets (study 2)
NEURON_MODES = ("zero", "mean")


@dataclass(frozen=True)
class NeuronAblationConfig:
    """Knock-out of neuron sets during re-ranking.

    Attributes:
        mode: ``zero`` (study 2) or ``mean`` (the unit's mean output over the re-ranked pairs).
        draws: random sets per neuron set (study: 50), same count in the same linear layers.
        queries: queries re-ranked (their BM25 top-``depth``); split: their split.
        seed: random draws.
    """

    mode: str = "zero"
    draws: int = 50  # study: 50 random draws
    queries: int = 20
    depth: int = 20  # study: BM25 top-20
    split: str | None = "test"
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in NEURON_MODES:
            raise InputError(f"mode must be zero or mean, got {self.mode!r}")
        if self.draws < 1 or self.queries < 1 or self.depth < 1:
            raise InputError("draws, queries and depth must be at least 1")


@contextmanager
def neurons_ablated(ranker: Ranker, units: dict[str, np.ndarray],
                    means: dict[str, torch.Tensor] | None = None):
    """Set output units of linear layers (path → unit indices) to 0, or to ``means[path]``."""
    def make(path, index):
        index = torch.as_tensor(index, dtype=torch.long, device=ranker.device)

        def setter(output):
            out = output.clone()
            out[..., index] = 0.0 if means is None else means[path][index].to(out.dtype)
            return out

        return setter

    with ranker.intervene({path: make(path, index) for path, index in units.items()
                           if len(index)}):
        yield


def frame_key(prefix: str, ranker: Ranker, collection: Collection, config, extra) -> str:
    return content_key(prefix, prefix=f"{prefix}-", length=16, ranker=ranker.spec.key(),
                       collection=collection.content_hash, config=asdict(config), extra=extra,
                       version=KNOCKOUT_VERSION)


def ablate_neuron_sets(ranker: Ranker, collection: Collection, sets: dict[str, pd.DataFrame],
                       config: NeuronAblationConfig,
                       progress: Callable[[int, int, str], None] | None = None,
                       store=None) -> pd.DataFrame:
    """nDCG@10 re-ranking BM25 top-``depth`` with each neuron set (``[path, unit]`` rows)
    knocked out, against the full model and against ``draws`` random sets with the same number
    of units in the same layers; a paired two-tailed t-test over queries (scipy) compares the
    set's per-query nDCG with the random sets' per-query mean. One row per set (the study's
    Table 4); ``random_changes`` lists each random draw's % change (JSON) for the
    distribution plot."""
    from scipy.stats import ttest_rel

    from core.retrieval import candidate_pairs

    config.validate()
    key = frame_key("neuron-ablation", ranker, collection, config,
                     {name: [frame.path.tolist(), frame.unit.astype(int).tolist()]
                      for name, frame in sets.items()})
    if store is not None and (cached := store.frame(key)) is not None:
        return cached
    pairs = candidate_pairs(collection, config.depth, qids=collection.qids(config.split),
                            limit_queries=config.queries)
    if pairs.empty:
        raise InputError(f"collection {collection.name!r} yields no candidate pairs")
    queries, documents = pairs["query"].tolist(), pairs["document"].tolist()
    paths = sorted({p for frame in sets.values() for p in frame.path})
    widths = {p: ranker.linear_width(p) for p in paths}
    batches = (ranker.encode(queries[i:i + 16], documents[i:i + 16])
               for i in range(0, len(queries), 16))
    means = token_means(ranker, batches, paths) if config.mode == "mean" else None
    rng = np.random.default_rng(config.seed)
    total = 1 + len(sets) * (1 + config.draws)
    step = 0

    def per_query(units):
        nonlocal step
        with neurons_ablated(ranker, units, means):
            scores = ranker.score(queries, documents)
        step += 1
        if progress:
            progress(step, total, "re-ranking")
        values = evaluate(collection, pairs, scores, per_query=True)
        values = values[values.measure == "nDCG@10"].set_index("qid").value
        return values.reindex(pairs.qid.unique()).fillna(0.0).to_numpy()

    full = per_query({})
    rows = []
    for name, frame in sets.items():
        units = {p: np.sort(g.unit.to_numpy()) for p, g in frame.groupby("path")}
        ablated = per_query(units)
        randoms = []
        for _ in range(config.draws):
            drawn = {p: rng.choice(widths[p], size=len(u), replace=False) for p, u in units.items()}
            randoms.append(per_query(drawn))
        random_mean = np.mean(randoms, axis=0)
        test = ttest_rel(ablated, random_mean) if len(ablated) > 1 else None
        p_value = float(test.pvalue) if test is not None and np.isfinite(test.pvalue) else float("nan")
        random_changes = [round(_drop(float(r.mean()), float(full.mean())), 4) for r in randoms]
        rows.append({"set": name, "neurons": int(len(frame)), "ndcg_full": float(full.mean()),
                     "ndcg_ablated": float(ablated.mean()),
                     "change_pct": _drop(float(ablated.mean()), float(full.mean())),
                     "ndcg_random": float(random_mean.mean()),
                     "random_change_pct": _drop(float(random_mean.mean()), float(full.mean())),
                     "random_sd": float(np.std([r.mean() for r in randoms])),
                     "p_value": p_value, "significant": bool(p_value < 0.05),
                     "queries": int(len(ablated)), "random_changes": json.dumps(random_changes)})
    table = pd.DataFrame(rows)
    if store is not None:
        store.write_frame(key, "neuron-ablation", ranker.spec.name, collection.name,
                          asdict(config), table)
    return table
