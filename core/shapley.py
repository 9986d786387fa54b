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
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from core.constants import ENCODED_R2
from core.data import Collection
from core.errors import InputError
from core.knockout import NEURON_MODES, frame_key
from core.models import Ranker
from core.retrieval import candidate_pairs

@dataclass(frozen=True)
class ShapleyConfig:
    """Shapley validation of probe neurons.

    Attributes:
        threshold: a feature's probe neurons form a group when its test R² exceeds it (0.85).
        layer: block whose output the probe read (1-based); None = the last (study 1).
        random_groups: random groups of the same size, drawn from the other dimensions, that
            play beside each probe group; 19 makes "above the 95th percentile" mean "above
            every random group but at most one".
        permutations: sampled player orders per query.
        queries / depth / split: re-ranked queries (BM25 top-``depth``).
        mode: an absent group's dimensions take their mean over the query's tokens (``mean``)
            or 0 (``zero``).
    """

    threshold: float = ENCODED_R2  # study 1: probe positives R² > 0.85
    layer: int | None = None
    random_groups: int = 19
    permutations: int = 40
    queries: int = 10
    depth: int = 20
    split: str | None = "test"
    mode: str = "mean"
    seed: int = 0

    def validate(self, ranker: Ranker | None = None) -> None:
        if not 0 <= self.threshold < 1:
            raise InputError(f"threshold must be in [0, 1), got {self.threshold}")
        if self.random_groups < 1 or self.permutations < 1 or self.queries < 1 or self.depth < 2:
            raise InputError("random groups, permutations and queries must be at least 1, "
                             "depth at least 2")
        if self.mode not in NEURON_MODES:
            raise InputError(f"mode must be zero or mean, got {self.mode!r}")
        if ranker is not None and self.layer is not None and not 1 <= self.layer <= ranker.n_layers:
            raise InputError(f"layer must be between 1 and {ranker.n_layers}, got {self.layer}")


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


@torch.inference_mode()
def shapley_validation(ranker: Ranker, collection: Collection, probe: pd.DataFrame,
                       config: ShapleyConfig,
                       progress: Callable[[int, int, str], None] | None = None,
                       store=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Study 1's check that probe-identified neurons matter for ranking.

    For each probe group (the neurons of one feature whose probe passes ``threshold`` at the
    layer), per query: players = that group + ``random_groups`` random groups of the same size
    from the remaining dimensions; v(S) = nDCG@10 of the query's BM25 top-``depth`` re-ranked
    with every absent group's dimensions ablated (mean or zero) in the block output at every
    token; Shapley values by permutation sampling. Reports in how many queries the probe group
    ranks above the 95th percentile of the random groups.

    Returns (one row per group and query, one summary row per group).
    """
    from core.metrics import ndcg_matrix

    config.validate(ranker)
    layer = config.layer or ranker.n_layers
    groups = probe_groups(probe, layer, config.threshold)
    key = frame_key("shapley", ranker, collection, config,
                     {f: g.tolist() for f, g in groups.items()})
    if store is not None and (cached := store.frame(key)) is not None:
        return cached, store.frame(key + "-summary")
    if not groups:
        best = probe[probe.layer == layer].r2_mean.max() if len(probe) else float("nan")
        raise InputError(f"no probe feature passes R² > {config.threshold} at layer {layer} "
                         f"(best there: {best:.3f}); lower the threshold or pick the layer "
                         "where a feature is encoded")
    pairs = candidate_pairs(collection, config.depth, qids=collection.qids(config.split),
                            limit_queries=config.queries * 3)
    judged = collection.qrels.groupby("qid").relevance.apply(np.asarray).to_dict()
    keep = [q for q in pairs.qid.unique()
            if (judged.get(q, np.zeros(0)) >= collection.min_relevant).any()][:config.queries]
    if not keep:
        raise InputError(f"no query of {collection.name!r} has a relevant document among its "
                         f"BM25 top-{config.depth}")
    rng = np.random.default_rng(config.seed)
    path = ranker.block_path(layer - 1)
    d = ranker.d_model
    rows = []
    total, step = len(groups) * len(keep), 0
    for qid in keep:
        here = pairs[pairs.qid == qid]
        enc = ranker.encode(here["query"].tolist(), here["document"].tolist()).to(ranker.device)
        with ranker.capture([path]) as states:
            ranker.forward(enc)
        hidden = states[path]  # [n, pos, d]
        real = enc.attention_mask.bool()
        fill = (hidden[real].mean(0) if config.mode == "mean"
                else torch.zeros(d, dtype=hidden.dtype, device=hidden.device))
        rows_index = torch.arange(len(here), device=hidden.device)
        block_args = ranker.block_call(enc) if layer < ranker.n_layers else None
        # after the last block only the output position reaches the head
        base = hidden if block_args is not None else hidden[rows_index, enc.last]
        grades = here.relevance.to_numpy()
        docnos = here.docno.astype(str).tolist()

        for feature, dims in groups.items():
            others = np.setdiff1d(np.arange(d), dims)
            size = len(dims)
            n_random = min(config.random_groups, len(others) // size)
            drawn = rng.permutation(others)[:n_random * size].reshape(n_random, size)
            members = [dims, *drawn]

            def value(present: np.ndarray) -> np.ndarray:
                scores = []
                for row in present:
                    ablate = [m for m, on in zip(members, row) if not on]
                    h = base.clone()
                    if ablate:
                        index = torch.as_tensor(np.concatenate(ablate), device=h.device)
                        h[..., index] = fill[index]
                    if block_args is not None:
                        h = ranker.run_blocks(h, layer, *block_args)[rows_index, enc.last]
                    scores.append(ranker.read_out(h).float().cpu().numpy())
                return ndcg_matrix(np.stack(scores), grades, docnos, judged[qid])

            values = shapley_values(value, len(members), config.permutations, rng)
            threshold = float(np.percentile(values[1:], 95))
            rows.append({"feature": feature, "qid": str(qid), "group_size": size,
                         "random_groups": n_random, "shapley_probe": float(values[0]),
                         "shapley_random_mean": float(values[1:].mean()),
                         "random_p95": threshold, "above_p95": bool(values[0] > threshold),
                         "percentile": float(100 * (values[1:] < values[0]).mean())})
            step += 1
            if progress:
                progress(step, total, f"{feature}, query {qid}")
    per_query = pd.DataFrame(rows)
    summary = (per_query.groupby("feature", sort=False)
               .agg(layer=("qid", lambda _: layer), group_size=("group_size", "first"),
                    queries=("qid", "count"), above_p95=("above_p95", "sum"),
                    shapley_probe=("shapley_probe", "mean"),
                    shapley_random=("shapley_random_mean", "mean"),
                    median_percentile=("percentile", "median"))
               .reset_index())
    summary["above_p95"] = summary.above_p95.astype(int)
    summary["above_p95_pct"] = 100.0 * summary.above_p95 / summary.queries
    if store is not None:
        store.write_frame(key + "-summary", "shapley", ranker.spec.name, collection.name,
                          asdict(config), summary)
        store.write_frame(key, "shapley", ranker.spec.name, collection.name, asdict(config),
                          per_query)
    return per_query, summary
