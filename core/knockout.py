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
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.analysis import Analysis, Job, option, register
from core.attribution import LABELS
from core.data import Collection
from core.errors import InputError
from core.metrics import evaluate, f1
from core.models import Ranker
from core.patching import GROUP_CODES, encode_pair
from core.retrieval import candidate_pairs, relevance_pairs
from core.sweep import mean_effects, top_heads

KNOCKOUT_COLUMNS = ["group", "selection", "heads", "f1", "f1_sd", "f1_change_pct", "ndcg",
                    "ndcg_sd", "ndcg_change_pct"]
SCORE_BATCH = 16  # pairs per forward pass while heads or neurons are knocked out


@dataclass(frozen=True)
class KnockoutConfig:
    """Head knock-out after a patching sweep (the patching study's Table 1)."""

    patch: str = option("", "store key of the patching sweep whose mean IE ranks the heads "
                            "('' = the newest of this ranker on this collection)",
                        label="Patching run", builds_on="patch")
    k: int = option(5, "heads knocked out per condition (study: top-k heads)",
                    label="Heads knocked out (k)", minimum=1)
    repeats: int = option(3, "random head sets per condition (their scores are averaged)",
                          label="Random repeats", minimum=1)
    queries: int = option(5, "held-out queries (none among the sweep's pairs) for F1 and "
                             "nDCG@10", label="Held-out queries", minimum=1)
    depth: int = option(20, "candidates per query re-ranked (study: BM25 top-20)",
                        label="Candidates per query", minimum=1)
    seed: int = option(0, "seed of the random head draws", label="Seed", minimum=0)


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
                  batch_size: int = SCORE_BATCH) -> np.ndarray:
    """Scores with ``heads`` mean-ablated ``-> [n]``, ``batch_size`` pairs per forward pass in
    input order."""
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


@register
class HeadKnockout(Analysis):
    """Mean-ablate the top-k heads by mean IE at each head position group of a stored patching
    sweep (and all groups mixed) against ``repeats`` random head sets of the same size at the
    same positions: F1 of yes/no judgments on held-out pairs and nDCG@10 re-ranking their
    queries' top-``depth``, with the change from the full model in percent. One unit per
    condition (the full model, a top-k set, one random draw), so a stopped run resumes."""

    name = "knockout"
    title = "Head knock-out"
    summary = "mean-ablate the top-k heads by IE vs random heads (F1, nDCG@10)"
    unit = "head set"
    version = 2  # 2: on the analysis contract (units per condition; its key names the sweep)
    Config = KnockoutConfig

    def units(self, job: Job) -> list[dict]:
        ranker, config, patch = job.ranker, job.config, job.inputs["patch"]
        job.collection.require_judgments("the knock-out's F1 and nDCG@10")
        n_heads = ranker.n_layers * ranker.n_heads
        if config.k >= n_heads:
            raise InputError(f"Heads knocked out (k) must be below {n_heads} "
                             f"({ranker.spec.name} has {n_heads} heads), got {config.k}")
        effects = mean_effects(patch.used)
        head_groups = sorted(set(effects[effects.target == "head"].group))
        if not head_groups:
            raise InputError(f"patching run {patch.key} patched no heads; run the sweep with "
                             "head groups (e.g. last, query) before a knock-out")
        rng = np.random.default_rng(config.seed)
        everyone = [(layer, head) for layer in range(ranker.n_layers)
                    for head in range(ranker.n_heads)]
        units = [{"group": "all", "selection": "full model", "repeat": -1, "heads": []}]
        for condition in [*head_groups, "mixed"]:
            top = top_heads(effects, None if condition == "mixed" else condition, config.k)
            units.append({"group": condition, "selection": "top", "repeat": -1,
                          "heads": [list(h) for h in top]})
            chosen = {(layer, head) for layer, head, _ in top}
            pool = [h for h in everyone if h not in chosen]
            for repeat in range(config.repeats):
                picks = rng.choice(len(pool), size=len(top), replace=False)
                drawn = [[*pool[i], condition if condition != "mixed"
                          else head_groups[int(rng.integers(len(head_groups)))]] for i in picks]
                units.append({"group": condition, "selection": "random", "repeat": repeat,
                              "heads": drawn})
        return units

    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        ranker, collection = job.ranker, job.collection
        patch_config = job.inputs["patch"].config
        means = job.cached("means", lambda: _reference_means(job))
        judged, rerank = job.cached("held-out", lambda: _held_out(job))
        queries, documents, documents_b, labels = _judgment_inputs(judged, patch_config.prompt)
        heads = [tuple(h) for h in unit["heads"]]

        def scores_with(chosen):
            return score_ablated(ranker, queries, documents, chosen, means, patch_config.prompt,
                                 documents_b)

        threshold = 0.0 if ranker.kind == "llm-judge" else job.cached(
            "threshold", lambda: float(np.median(scores_with([]))))
        ranked = score_ablated(ranker, rerank["query"].tolist(), rerank["document"].tolist(),
                               heads, means)
        return pd.DataFrame([{
            "group": unit["group"], "selection": unit["selection"], "repeat": unit["repeat"],
            "heads": len(heads), "f1": f1(labels, scores_with(heads) > threshold),
            "ndcg": evaluate(collection, rerank, ranked)["nDCG@10"]}])

    def summarise(self, frame: pd.DataFrame, collection, config: KnockoutConfig) -> pd.DataFrame:
        full = frame[frame.selection == "full model"]
        if full.empty:
            return pd.DataFrame(columns=KNOCKOUT_COLUMNS)
        full_f1, full_ndcg = float(full.f1.iloc[0]), float(full.ndcg.iloc[0])
        rows = [("all", "full model", 0, full_f1, 0.0, 0.0, full_ndcg, 0.0, 0.0)]
        for group in dict.fromkeys(frame[frame.selection != "full model"].group):
            here = frame[frame.group == group]
            for selection in ("top", "random"):
                chosen = here[here.selection == selection]
                if chosen.empty:
                    continue
                n = int(chosen.heads.iloc[0])
                name = f"top-{n}" if selection == "top" else f"random-{n} (×{len(chosen)})"
                rows.append(_row(group, name, n, chosen.f1, chosen.ndcg, full_f1, full_ndcg))
        return pd.DataFrame(rows, columns=KNOCKOUT_COLUMNS)

    def charts(self, result) -> dict:
        from core.charts import knockout_chart

        if result.frame.empty:
            return {}
        return {"knockout-f1": knockout_chart(result.frame, "f1"),
                "knockout-ndcg": knockout_chart(result.frame, "ndcg")}

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "group": table.group, "selection": table.selection, "heads": table.heads,
            "F1": [f"{v:.3f} ({d:+.1f}%)" for v, d in zip(table.f1, table.f1_change_pct)],
            "nDCG@10": [f"{v:.3f} ({d:+.1f}%)" for v, d in zip(table.ndcg, table.ndcg_change_pct)]})

    def notes(self, frame: pd.DataFrame, config: KnockoutConfig) -> list[str]:
        return [f"F1 over held-out judgments, nDCG@10 re-ranking their queries' top-"
                f"{config.depth}; change_pct: % change from the full model"]


def _reference_means(job: Job) -> dict[int, torch.Tensor]:
    """Each head's mean output over the sweep's own used prompt pairs (clean and corrupted)."""
    patch = job.inputs["patch"]
    config = patch.config
    candidates = relevance_pairs(job.collection, len(patch.pairs) or 1,
                                 pairs_per_query=config.pairs_per_query, split=config.split or None,
                                 depth=config.depth)
    ids = ["qid", "positive_docno", "negative_docno"]
    used = patch.pairs.loc[patch.pairs.status == "used", ids].astype(str)
    pairs = candidates.astype({c: str for c in ids}).merge(used, on=ids)  # in candidate order
    encodings = [enc for row in pairs.itertuples(index=False)
                 if (enc := encode_pair(job.ranker, row.query, row.positive, row.negative,
                                        config)[0]) is not None]
    return head_means(job.ranker, encodings)


def _held_out(job: Job) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(held-out prompt pairs for F1, their queries' candidates for nDCG@10)."""
    patch, config = job.inputs["patch"], job.config
    judged = relevance_pairs(job.collection, config.queries, split=patch.config.split or None,
                             depth=patch.config.depth, skip_qids=set(patch.pairs.qid))
    if judged.empty:
        raise InputError("no held-out queries are left for the knock-out; use fewer patching "
                         "pairs or a larger collection")
    return judged, candidate_pairs(job.collection, config.depth, qids=judged.qid.tolist())


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
            change_pct(f1_value, full_f1), ndcg_value, float(np.std(ndcgs)),
            change_pct(ndcg_value, full_ndcg))


def change_pct(value: float, full: float) -> float:
    """Relative change from the full model in percent (negative = a drop)."""
    return float("nan") if full == 0 else 100.0 * (value - full) / full


# --------------------------------------------------------------------------- neuron sets (study 2)
NEURON_MODES = ("zero", "mean")
SCHEMES = (*LABELS, "fused")
SET_OPERATIONS = {"intersection": "∩", "fusion": "⊕"}  # the set algebra's operations, by name


@dataclass(frozen=True)
class NeuronAblationConfig:
    """Knock-out of the top-X % neurons of a stored attribution run during re-ranking."""

    attribution: str = option("", "store key of the attribution run whose top-X % neurons are "
                                  "knocked out ('' = the newest of this ranker on this "
                                  "collection)", label="Attribution run",
                              builds_on="attribute", same_collection=False)
    scheme: str = option("fused", "whose conductances rank the neurons", choices=SCHEMES,
                         label="Scheme")
    percents: tuple[float, ...] = option((0.01, 0.1, 1.0), "top X % neuron sets (study: 0.01, "
                                         "0.1, 1)", label="Top X %")
    other: str = option("none", "a second attribution run: its top X % is combined with the "
                                "first by the set operation ('none' = the first run alone)",
                        label="Combine with run", builds_on="attribute",
                        same_collection=False, optional=True)
    other_scheme: str = option("fused", "the second run's scheme", choices=SCHEMES,
                               label="Its scheme")
    operation: str = option("intersection", "intersection (∩): neurons in both runs' top X %; "
                                            "fusion (⊕): the top X % of the two runs' mean",
                            choices=tuple(SET_OPERATIONS), label="Set operation")
    mode: str = option("zero", "zero (study 2) or each unit's mean output over the re-ranked "
                               "pairs", choices=NEURON_MODES, label="Knock-out")
    draws: int = option(50, "random sets per neuron set, same count in the same linear layers "
                            "(study: 50; each costs one re-ranking)", label="Random sets",
                        minimum=1)
    queries: int = option(20, "queries re-ranked (the first of the split)", label="Queries",
                          minimum=1)
    depth: int = option(20, "candidates per query re-ranked (study: BM25 top-20)",
                        label="Candidates per query", minimum=1)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")
    seed: int = option(0, "seed of the random draws", label="Seed", minimum=0)


@contextmanager
def neurons_ablated(ranker: Ranker, neurons: dict[str, np.ndarray],
                    means: dict[str, torch.Tensor] | None = None):
    """Set neurons (output units) of linear layers (path → their indices) to 0, or to
    ``means[path]``."""
    def make(path, index):
        index = torch.as_tensor(index, dtype=torch.long, device=ranker.device)

        def setter(output):
            out = output.clone()
            out[..., index] = 0.0 if means is None else means[path][index].to(out.dtype)
            return out

        return setter

    with ranker.intervene({path: make(path, index) for path, index in neurons.items()
                           if len(index)}):
        yield


@register
class NeuronAblation(Analysis):
    """Study 2's Table 4: nDCG@10 re-ranking each query's top-``depth`` with each top-X %
    neuron set knocked out, against the full model and against ``draws`` random sets with the
    same number of units in the same linear layers; a paired two-tailed t-test over queries
    (scipy) compares the set's per-query nDCG with the random sets' per-query mean. One unit
    per re-ranking (the full model, a set, one random draw), so a stopped run resumes."""

    name = "ablate"
    title = "Neuron knock-out"
    summary = "knock out the top-X % NIG neurons vs random sets of the same size (nDCG@10)"
    unit = "re-ranking"
    version = 2  # 2: on the analysis contract (units per re-ranking; its key names the run)
    Config = NeuronAblationConfig

    def validate(self, config: NeuronAblationConfig) -> None:
        super().validate(config)
        if not config.percents:
            raise InputError("Top X %: pick at least one percentage")
        if any(not 0 < p <= 100 for p in config.percents):
            raise InputError(f"Top X % must lie in (0, 100], got {list(config.percents)}")

    def units(self, job: Job) -> list[dict]:
        config = job.config
        job.collection.require_judgments("the neuron knock-out's nDCG@10")
        sets = ablation_sets(job.inputs["attribution"], config.scheme, config.percents,
                             job.inputs.get("other"), config.other_scheme, config.operation)
        widths = {p: job.ranker.linear_width(p) for p in
                  sorted({p for frame in sets.values() for p in frame.path})}
        job.memo["paths"] = list(widths)  # the layers a mean knock-out needs means of
        rng = np.random.default_rng(config.seed)
        units = [{"set": "", "draw": -1, "neurons": 0, "knocked_out": {}}]
        for name, frame in sets.items():
            chosen = {p: np.sort(g.neuron.to_numpy()).tolist() for p, g in frame.groupby("path")}
            units.append({"set": name, "draw": -1, "neurons": len(frame), "knocked_out": chosen})
            for draw in range(config.draws):
                units.append({"set": name, "draw": draw, "neurons": len(frame), "knocked_out": {
                    p: rng.choice(widths[p], size=len(u), replace=False).tolist()
                    for p, u in chosen.items()}})
        return units

    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        ranker, config = job.ranker, job.config
        pairs = job.cached("pairs", lambda: _rerank_pairs(job.collection, config))
        queries, documents = pairs["query"].tolist(), pairs["document"].tolist()
        means = None
        if config.mode == "mean":
            means = job.cached("means", lambda: token_means(ranker, (
                ranker.encode(queries[i:i + SCORE_BATCH], documents[i:i + SCORE_BATCH])
                for i in range(0, len(queries), SCORE_BATCH)), job.memo["paths"]))
        with neurons_ablated(ranker, {p: np.asarray(u, dtype=np.int64)
                                      for p, u in unit["knocked_out"].items()}, means):
            scores = ranker.score(queries, documents)
        values = evaluate(job.collection, pairs, scores, per_query=True)
        values = values[values.measure == "nDCG@10"].set_index("qid").value
        qids = pairs.qid.drop_duplicates()
        return pd.DataFrame({"set": unit["set"], "draw": unit["draw"],
                             "neurons": unit["neurons"], "qid": qids.astype(str).to_numpy(),
                             "ndcg": values.reindex(qids).fillna(0.0).to_numpy()})

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        return neuron_table(frame)

    def charts(self, result) -> dict:
        from core.charts import ablation_chart, random_distribution_chart

        if result.frame.empty:
            return {}
        return {"ablation": ablation_chart(result.frame),
                "ablation-random": random_distribution_chart(result.frame)}

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({
            "set": table.set, "neurons": table.neurons, "nDCG@10 full": table.ndcg_full.round(4),
            "knocked out": [f"{v:.4f} ({c:+.2f}%)" for v, c in
                            zip(table.ndcg_ablated, table.change_pct)],
            "random": [f"{v:.4f} ({c:+.2f}% ± {s:.4f})" for v, c, s in
                       zip(table.ndcg_random, table.random_change_pct, table.random_sd)],
            "p": table.p_value.map(lambda p: f"{p:.3g}"),
            "sig.": table.significant.map({True: "*", False: ""}), "queries": table.queries})

    def notes(self, frame: pd.DataFrame, config) -> list[str]:
        return ["random: the mean over the random sets (random_sd: the sd of their means); "
                "p_value: paired two-tailed t-test over queries of the set vs the random sets' "
                "mean"]


def _rerank_pairs(collection: Collection, config: NeuronAblationConfig) -> pd.DataFrame:
    from core.retrieval import candidate_pairs

    pairs = candidate_pairs(collection, config.depth, qids=collection.qids(config.split or None),
                            limit_queries=config.queries)
    if pairs.empty:
        raise InputError(f"collection {collection.name!r} yields no candidate pairs")
    return pairs


def ablation_sets(first, scheme: str, percents, other=None, other_scheme: str = "fused",
                  operation: str = "intersection") -> dict[str, pd.DataFrame]:
    """The neuron sets to knock out: the top-X % of ``first``'s ``scheme`` for each X, or,
    with ``other`` (a second attribution run of the same ranker), the set operation of the
    two runs' top-X %. Rows ``path, unit, …`` of the neuron index."""
    from core.attribution import combine, neuron_sets

    if other is None:
        return neuron_sets(first.frame, scheme, percents)
    for run, name in ((first, scheme), (other, other_scheme)):
        if run.frame[name].isna().any():
            raise InputError(f"attribution run {run.key} has no complete {name!r} scheme")
    columns = {f"{first.counts['collection']} · {scheme}": first.frame[scheme].to_numpy(),
               f"{other.counts['collection']} · {other_scheme} ": other.frame[other_scheme].to_numpy()}
    symbol = SET_OPERATIONS[operation]
    label = f" {symbol} ".join(c.strip() for c in columns)
    return {f"top {p}% {label}": first.frame.iloc[combine(columns, symbol, p)]
            for p in sorted(percents)}


def ablation_preset(sources: dict[str, tuple[str, str]], picked: list[str], operation: str,
                    percent: float) -> dict | None:
    """The neuron knock-out settings that rebuild a set made with the set algebra (one or two
    ``collection · scheme`` labels of :func:`core.attribution.scheme_sources`, ``∩`` or
    ``⊕``), or None for a set the knock-out cannot name (three schemes or more)."""
    if not 1 <= len(picked) <= 2:
        return None
    (key, scheme), *rest = [sources[label] for label in picked]
    preset = {"attribution": key, "scheme": scheme, "percents": (percent,)}
    if rest:
        words = {symbol: word for word, symbol in SET_OPERATIONS.items()}
        preset.update(other=rest[0][0], other_scheme=rest[0][1], operation=words[operation])
    return preset


def neuron_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per neuron set from the per-query nDCG@10 of every re-ranking (the study's
    Table 4); ``random_changes`` lists each random draw's % change (JSON) for the
    distribution plot. Sets without their own re-ranking yet (a stopped run) are left out."""
    from scipy.stats import ttest_rel

    columns = ["set", "neurons", "ndcg_full", "ndcg_ablated", "change_pct", "ndcg_random",
               "random_change_pct", "random_sd", "p_value", "significant", "queries",
               "random_changes"]
    full = frame[frame.set == ""]
    if full.empty:
        return pd.DataFrame(columns=columns)
    full = full.set_index("qid").ndcg
    rows = []
    for name, here in frame[frame.set != ""].groupby("set", sort=False):
        own = here[here.draw == -1]
        if own.empty:
            continue
        ablated = own.set_index("qid").ndcg.reindex(full.index).to_numpy()
        randoms = [g.set_index("qid").ndcg.reindex(full.index).to_numpy()
                   for _, g in here[here.draw >= 0].groupby("draw")]
        random_mean = np.mean(randoms, axis=0) if randoms else np.full(len(full), np.nan)
        test = ttest_rel(ablated, random_mean) if len(ablated) > 1 and randoms else None
        p_value = float(test.pvalue) if test is not None and np.isfinite(test.pvalue) else float("nan")
        base = float(full.mean())
        rows.append({"set": name, "neurons": int(own.neurons.iloc[0]), "ndcg_full": base,
                     "ndcg_ablated": float(ablated.mean()),
                     "change_pct": change_pct(float(ablated.mean()), base),
                     "ndcg_random": float(random_mean.mean()),
                     "random_change_pct": change_pct(float(random_mean.mean()), base),
                     "random_sd": float(np.std([r.mean() for r in randoms])) if randoms else float("nan"),
                     "p_value": p_value, "significant": bool(p_value < 0.05),
                     "queries": int(len(ablated)),
                     "random_changes": json.dumps([round(change_pct(float(r.mean()), base), 4)
                                                   for r in randoms])})
    return pd.DataFrame(rows, columns=columns)
