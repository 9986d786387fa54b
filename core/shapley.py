"""Shapley validation of probe neurons (study 1, *Understanding Ranking LLMs*).

The probe of a feature names residual-stream dimensions (its non-zero Lasso weights); are they
what the ranker uses? Each feature's probe dimensions form one player of a cooperative game,
beside random groups of the same size from the other dimensions; a coalition's value is the
nDCG@10 of re-ranking with the absent players' dimensions mean- (or zero-) ablated. A probe
group whose Shapley value lies above the 95th percentile of the random groups' matters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core.analysis import Analysis, Job, option, register
from core.constants import ENCODED_R2
from core.data import Collection
from core.errors import InputError
from core.knockout import NEURON_MODES
from core.retrieval import candidate_pairs

@dataclass(frozen=True)
class ShapleyConfig:
    """Shapley validation of the probe neurons of a stored probe run."""

    probe: str = option("", "store key of the probe run whose neurons are checked ('' = the "
                            "newest of this ranker on this collection)", label="Probe run",
                        builds_on="probe", same_collection=False)
    threshold: float = option(ENCODED_R2, "a feature's probe neurons form a group when its test "
                                          "R² exceeds this (study: 0.85)", label="R² threshold")
    layer: int = option(0, "block whose output the probe read (0 = the last, as study 1; "
                           "earlier blocks re-run the blocks above for every coalition)",
                        label="Layer (0 = last)", minimum=0)
    random_groups: int = option(19, "random groups of the same size beside each probe group "
                                    "(19: 'above the 95th percentile' = above all but one)",
                                label="Random groups", minimum=1)
    permutations: int = option(40, "sampled player orders per query", label="Orders sampled",
                               minimum=1)
    queries: int = option(10, "queries re-ranked (with a relevant document in their top-k)",
                          label="Queries", minimum=1)
    depth: int = option(20, "candidates per query re-ranked (BM25 top-k)",
                        label="Candidates per query", minimum=2)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")
    mode: str = option("mean", "an absent group's dimensions take their mean over the query's "
                               "tokens, or 0", choices=NEURON_MODES, label="Knock-out")
    seed: int = option(0, "seed of the random groups and orders", label="Seed", minimum=0)


def probe_groups(probe: pd.DataFrame, layer: int, threshold: float, pooling: str = "mean",
                 estimator: str = "lasso") -> dict[str, np.ndarray]:
    """feature → residual dimensions its probe uses (non-zero coefficients, at most the 16
    stored) for every feature whose test R² at ``layer`` exceeds ``threshold``."""
    rows = probe[(probe.layer == layer) & (probe.pooling == pooling)
                 & (probe.estimator == estimator) & (probe.r2_mean > threshold)]
    groups = {}
    for row in rows.sort_values("r2_mean", ascending=False).itertuples(index=False):
        dims = np.array(sorted({int(n) for n, c in json.loads(row.neurons or "[]") if c != 0}))
        if len(dims):
            groups[row.feature] = dims
    return groups


def shapley_values(value: Callable[[np.ndarray], np.ndarray], players: int, permutations: int,
                   rng: np.random.Generator) -> np.ndarray:
    """Permutation-sampling estimate of every player's Shapley value (Castro et al. 2009).

    ``value(present [m, players] bool) -> [m]``: the game on many coalitions at once. Each
    sampled order adds the players one by one; a player's marginal contribution is the value
    gained when it joins. Returns ``[players]`` (the mean over orders)."""
    orders = np.stack([rng.permutation(players) for _ in range(permutations)])
    present = np.zeros((permutations, players + 1, players), dtype=bool)
    for step in range(1, players + 1):
        present[:, step] = present[:, step - 1]
        present[np.arange(permutations), step, orders[:, step - 1]] = True
    coalitions, where = np.unique(present.reshape(-1, players), axis=0, return_inverse=True)
    values = value(coalitions)[where.ravel()].reshape(permutations, players + 1)  # each once
    gains = np.diff(values, axis=1)  # [permutations, players]: gain of the player added
    totals = np.zeros(players)
    np.add.at(totals, orders.ravel(), gains.ravel())
    return totals / permutations


@register
class ShapleyCheck(Analysis):
    """Study 1's check that probe-identified neurons matter for ranking.

    For each probe group (the neurons of one feature whose probe passes ``threshold`` at the
    layer), per query: players = that group + ``random_groups`` random groups of the same size
    from the remaining dimensions; v(S) = nDCG@10 of the query's BM25 top-``depth`` re-ranked
    with every absent group's dimensions ablated (mean or zero) in the block output at every
    token; Shapley values by permutation sampling. One unit per query; the random stream is
    replayed up to the query's place, so a stopped run resumes with the same numbers.
    The summary counts in how many queries the probe group ranks above the 95th percentile of
    the random groups.
    """

    name = "shapley"
    title = "Shapley check"
    summary = "Shapley values of probe neuron groups vs random groups (nDCG@10)"
    unit = "query"
    version = 2  # 2: on the analysis contract (one unit per query)
    Config = ShapleyConfig

    def validate(self, config: ShapleyConfig) -> None:
        super().validate(config)
        if not 0 <= config.threshold < 1:
            raise InputError(f"R² threshold must be in [0, 1), got {config.threshold}")

    def units(self, job: Job) -> list[dict]:
        ranker, collection, config = job.ranker, job.collection, job.config
        if config.layer > ranker.n_layers:
            raise InputError(f"Layer must be between 1 and {ranker.n_layers} (0 = the last), "
                             f"got {config.layer}")
        layer = config.layer or ranker.n_layers
        probe = job.inputs["probe"]
        groups = probe_groups(probe, layer, config.threshold)
        if not groups:
            best = probe[probe.layer == layer].r2_mean.max() if len(probe) else float("nan")
            raise InputError(f"no probe feature passes R² > {config.threshold} at layer {layer} "
                             f"(best there: {best:.3f}); lower the threshold or pick the layer "
                             "where a feature is encoded")
        pairs = _pairs(job)
        judged = _judged(collection)
        keep = [str(q) for q in pairs.qid.unique()
                if (judged.get(q, np.zeros(0)) >= collection.min_relevant).any()][:config.queries]
        if not keep:
            raise InputError(f"no query of {collection.name!r} has a relevant document among "
                             f"its BM25 top-{config.depth}")
        return [{"qid": qid, "place": i} for i, qid in enumerate(keep)]

    @torch.inference_mode()
    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        from core.metrics import ndcg_matrix

        ranker, config = job.ranker, job.config
        layer = config.layer or ranker.n_layers
        groups = job.cached("groups", lambda: probe_groups(job.inputs["probe"], layer,
                                                           config.threshold))
        pairs = job.cached("pairs", lambda: _pairs(job))
        judged = job.cached("judged", lambda: _judged(job.collection))
        here = pairs[pairs.qid.astype(str) == unit["qid"]]
        rng = _stream_at(config, groups, ranker.d_model, unit["place"])
        ablated_scores = ranker.residual_ablation(here["query"].tolist(),
                                                  here["document"].tolist(), layer - 1,
                                                  config.mode)
        grades = here.relevance.to_numpy()
        docnos = here.docno.astype(str).tolist()
        d = ranker.d_model
        rows = []
        for feature, dims in groups.items():
            others = np.setdiff1d(np.arange(d), dims)
            size = len(dims)
            n_random = min(config.random_groups, len(others) // size)
            drawn = rng.permutation(others)[:n_random * size].reshape(n_random, size)
            members = [dims, *drawn]

            def value(present: np.ndarray) -> np.ndarray:
                ablate = [np.concatenate([m for m, on in zip(members, row) if not on] or
                                         [np.zeros(0, dtype=np.int64)]) for row in present]
                return ndcg_matrix(ablated_scores(ablate), grades, docnos,
                                   judged[here.qid.iloc[0]])

            values = shapley_values(value, len(members), config.permutations, rng)
            threshold = float(np.percentile(values[1:], 95))
            rows.append({"feature": feature, "qid": unit["qid"], "layer": layer,
                         "group_size": size, "random_groups": n_random,
                         "shapley_probe": float(values[0]),
                         "shapley_random_mean": float(values[1:].mean()),
                         "random_p95": threshold, "above_p95": bool(values[0] > threshold),
                         "percentile": float(100 * (values[1:] < values[0]).mean())})
        return pd.DataFrame(rows)

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        return shapley_summary(frame)

    def charts(self, result) -> dict:
        from core.charts import shapley_chart

        return {"shapley": shapley_chart(result.rows)} if len(result.rows) else {}


def shapley_summary(per_query: pd.DataFrame) -> pd.DataFrame:
    """One row per probe group: in how many queries it beat the random groups' 95th
    percentile, and its mean Shapley value beside theirs."""
    summary = (per_query.groupby("feature", sort=False)
               .agg(layer=("layer", "first"), group_size=("group_size", "first"),
                    queries=("qid", "count"), above_p95=("above_p95", "sum"),
                    shapley_probe=("shapley_probe", "mean"),
                    shapley_random=("shapley_random_mean", "mean"),
                    median_percentile=("percentile", "median"))
               .reset_index())
    summary["above_p95"] = summary.above_p95.astype(int)
    summary["above_p95_pct"] = 100.0 * summary.above_p95 / summary.queries
    return summary


def _stream_at(config: ShapleyConfig, groups: dict[str, np.ndarray], d: int,
               place: int) -> np.random.Generator:
    """The run's one random stream as it stands when the query at ``place`` starts: every
    query draws the same number of values (per group: one permutation of the other
    dimensions, then ``permutations`` player orders), so the earlier queries' draws are
    replayed without computing anything — a resumed run draws exactly what an uninterrupted
    one does, and both match a single pass over the queries."""
    rng = np.random.default_rng(config.seed)
    for _ in range(place):
        for dims in groups.values():
            others = np.setdiff1d(np.arange(d), dims)
            n_random = min(config.random_groups, len(others) // len(dims))
            rng.permutation(others)
            for _ in range(config.permutations):
                rng.permutation(n_random + 1)
    return rng


def _pairs(job: Job) -> pd.DataFrame:
    config = job.config
    return candidate_pairs(job.collection, config.depth,
                           qids=job.collection.qids(config.split or None),
                           limit_queries=config.queries * 3)


def _judged(collection: Collection) -> dict:
    return collection.qrels.groupby("qid").relevance.apply(np.asarray).to_dict()
