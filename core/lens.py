"""Score lens over a collection: how well would the ranker rank if it stopped after layer l?

The Playground's score lens (:meth:`core.models.Ranker.layer_scores`, a logit lens —
nostalgebraist 2020 — for relevance) shows one pair. This analysis reads the output head off
the output position after every block for every candidate of every query, then re-ranks each
query's candidates by each layer's read-out: nDCG@10 / MRR@10 per layer, and the Spearman
correlation of each layer's scores with the final ones. Where the curve rises is where the
ranking decision forms; a layer whose read-out already ranks as well as the last one shows
that the later blocks mostly rescale. (Early layers are read through a head trained on the
last layer's states, so their values are a lower bound on what those layers encode — the
probing study measures that directly.)

It is also the worked example of the analysis contract (:mod:`core.analysis`): one module,
registered; its CLI command (``python -m core lens``) and its page are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.analysis import Analysis, Job, option, register


@dataclass(frozen=True)
class LensConfig:
    depth: int = option(20, "candidates per query: the run's top-k, else BM25's",
                        label="Candidates per query", minimum=1)
    queries: int = option(10, "queries (the first of the split)", label="Queries", minimum=1)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")
    batch_size: int = option(16, "pairs per forward pass", label="Batch size", minimum=1)
    qrels: str = option("", "judge with this TREC qrels file instead of the collection's "
                            "(e.g. TREC DL's official-qrels.txt, for published figures)",
                        label="Qrels file (optional)")


@register
class ScoreLens(Analysis):
    name = "lens"
    title = "Score lens"
    summary = "nDCG@10 of the ranker's own head read after every layer (where the ranking forms)"
    unit = "query"
    version = 3  # 2: unit rows carry the first stage's rank; 3: one lens pass (Ranker.layer_scores)
    Config = LensConfig

    @staticmethod
    def pairs(job: Job) -> pd.DataFrame:
        from core.retrieval import candidate_pairs

        config = job.config
        split = config.split or None
        return job.cached("pairs", lambda: candidate_pairs(
            job.collection, config.depth, qids=job.collection.qids(split, True),
            limit_queries=config.queries))

    def units(self, job: Job) -> list[str]:
        if job.config.qrels:  # a missing or foreign qrels file: said now, not after the run
            from core.data import with_qrels
            from core.errors import InputError

            try:
                with_qrels(job.collection, job.config.qrels)
            except InputError as bad:
                raise InputError(f"Qrels file: {bad}") from None
        return [str(q) for q in self.pairs(job).qid.drop_duplicates()]

    def compute(self, job: Job, unit: str) -> pd.DataFrame:
        ranker, config = job.ranker, job.config
        pairs = self.pairs(job)
        pairs = pairs[pairs.qid.astype(str) == unit]
        rows = []
        for start in range(0, len(pairs), config.batch_size):
            batch = pairs.iloc[start:start + config.batch_size]
            lens = ranker.layer_scores(batch["query"].tolist(), batch["document"].tolist())
            for layer in range(lens.shape[1]):
                rows.append(pd.DataFrame({"qid": unit, "docno": batch.docno.astype(str).to_numpy(),
                                          "layer": layer + 1, "score": lens[:, layer],
                                          "final": lens[:, -1],
                                          "first_stage_rank": batch.bm25_rank.to_numpy()}))
        return pd.concat(rows, ignore_index=True)

    def summarise(self, frame: pd.DataFrame, collection, config: LensConfig) -> pd.DataFrame:
        from scipy.stats import spearmanr

        from core.metrics import evaluate

        from core.data import with_qrels

        judged = with_qrels(collection, config.qrels) if config.qrels else collection
        first = frame[frame.layer == frame.layer.min()]
        first_stage = evaluate(judged, first, -first.first_stage_rank.to_numpy(dtype=float))
        rows = []
        for layer, at in frame.groupby("layer", sort=True):
            measures = evaluate(judged, at, at.score.to_numpy())
            rhos = [spearmanr(q.score, q.final).statistic for _, q in at.groupby("qid")
                    if len(q) > 1 and np.ptp(q.score) > 0 and np.ptp(q.final) > 0]
            rows.append({"layer": int(layer), **measures,
                         "spearman_with_final": float(np.mean(rhos)) if rhos else float("nan"),
                         "first_stage_nDCG@10": first_stage["nDCG@10"]})
        return pd.DataFrame(rows)

    def notes(self, frame: pd.DataFrame, config: LensConfig) -> list[str]:
        if frame.empty:
            return []
        return [f"{frame.qid.nunique()} queries, {len(frame) // frame.layer.nunique()} pairs"]

    def charts(self, result) -> dict:
        return {"lens": self.chart(result.frame)}

    MEASURES = {"nDCG@10": "nDCG@10 of the ranking read at this layer",
                "spearman_with_final": "agreement with the final ranking (Spearman ρ)",
                "first_stage_nDCG@10": "nDCG@10 of the first stage's own order (BM25)"}

    @classmethod
    def chart(cls, table: pd.DataFrame):
        """Per layer: the ranking's nDCG@10 and its agreement with the final ranking; the
        first stage's nDCG@10 as a dashed line — each named in the legend in words."""
        import altair as alt

        long = table.melt("layer", list(cls.MEASURES), "measure", "value")
        long["measure"] = long.measure.map(cls.MEASURES)
        names = list(cls.MEASURES.values())
        return alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("layer:Q", title="layer the score head reads",
                    axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title="nDCG@10 or Spearman ρ"),
            color=alt.Color("measure:N", title=None, sort=names,
                            legend=alt.Legend(orient="bottom", direction="vertical",
                                              labelLimit=0)),
            strokeDash=alt.StrokeDash("measure:N", sort=names, legend=None,
                                      scale=alt.Scale(domain=names,
                                                      range=[[1, 0], [1, 0], [6, 4]])),
            tooltip=["layer", "measure", alt.Tooltip("value:Q", format=".3f")]).properties(
            height=320, title="Where the ranking forms: the score head read after every layer")
