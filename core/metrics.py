"""IR measures through ir_measures (nDCG@10, MRR@10), so numbers match the field's tools."""

from __future__ import annotations

import ir_measures
import numpy as np
import pandas as pd
from ir_measures import RR, nDCG

from core.data import Collection


def measures_for(collection: Collection) -> dict[str, object]:
    """nDCG@10 on graded judgments; MRR@10 with the collection's binary threshold."""
    return {"nDCG@10": nDCG @ 10, "MRR@10": RR(rel=collection.min_relevant) @ 10}


def evaluate(collection: Collection, pairs: pd.DataFrame, scores: np.ndarray,
             per_query: bool = False) -> dict[str, float] | pd.DataFrame:
    """Evaluate ``scores`` (aligned with ``pairs[qid, docno]``) against the collection's qrels.

    Queries are those present in ``pairs``; a query without a relevant candidate scores 0
    (ir_measures' convention), so re-rankers and BM25 are compared on the same footing. For
    figures comparable with published tables, judge with the complete official qrels
    (:func:`core.data.with_qrels`).
    """
    collection.require_judgments("nDCG@10 and MRR@10")
    run = pd.DataFrame({"query_id": pairs.qid.astype(str).to_numpy(),
                        "doc_id": pairs.docno.astype(str).to_numpy(),
                        "score": np.asarray(scores, dtype=float)})
    qids = set(run.query_id)
    qrels = collection.qrels[collection.qrels.qid.isin(qids)].rename(
        columns={"qid": "query_id", "docno": "doc_id"})
    measures = measures_for(collection)
    if not per_query:
        values = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
        return {name: float(values[m]) for name, m in measures.items()}
    names = {str(m): name for name, m in measures.items()}
    rows = [(r.query_id, names[str(r.measure)], r.value)
            for r in ir_measures.iter_calc(list(measures.values()), qrels, run)]
    return pd.DataFrame(rows, columns=["qid", "measure", "value"])


def rank_biased_overlap(left: list, right: list, p: float = 0.7) -> float:
    """Extrapolated rank-biased overlap of two rankings (Webber, Moffat & Zobel 2010, eq. 32).

    RBO_ext = X_k/k · p^k + (1−p)/p · Σ_{d=1..k} X_d/d · p^d, with X_d the overlap of the two
    top-d prefixes and k the length of the shorter list. 1 for identical rankings, 0 for
    disjoint ones; ``p`` weights the top (0.7 in the patching study).
    """
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    k = min(len(left), len(right))
    if k == 0:
        return float("nan")
    seen_left, seen_right, overlap, total = set(), set(), 0, 0.0
    for depth in range(1, k + 1):
        a, b = left[depth - 1], right[depth - 1]
        if a == b:
            overlap += 1
        else:
            overlap += (a in seen_right) + (b in seen_left)
        seen_left.add(a)
        seen_right.add(b)
        total += overlap / depth * p ** depth
    return float(overlap / k * p ** k + (1 - p) / p * total)


def f1(labels, predictions) -> float:
    """F1 of binary yes/no judgments (scikit-learn's, positive class 1; 0 when nothing is
    predicted relevant)."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int),
                          zero_division=0))


def ndcg_matrix(scores: np.ndarray, grades: np.ndarray, docnos: list[str],
                judged: np.ndarray, k: int = 10) -> np.ndarray:
    """nDCG@``k`` of one query under many score vectors at once ``scores [m, n] -> [m]``.

    Same definition as ir_measures' ``nDCG@k`` (trec_eval): gain = grade, discount
    1 / log2(rank + 1), ties broken by docno descending, the ideal DCG from every judged
    grade of the query (``judged``, including documents not among the candidates). The
    Shapley value function calls it thousands of times, where one ir_measures call per
    coalition would dominate; tests check it equals ir_measures.
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    grades = np.asarray(grades, dtype=float)
    ideal = np.sort(np.asarray(judged, dtype=float)[np.asarray(judged) > 0])[::-1][:k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    idcg = float((ideal * discounts[:len(ideal)]).sum())
    if idcg == 0:
        return np.zeros(len(scores))
    tie = np.argsort(np.argsort(np.asarray(docnos, dtype=object)))  # docno rank ascending
    order = np.lexsort((np.broadcast_to(-tie, scores.shape), -scores), axis=-1)[:, :k]
    gains = np.clip(grades, 0, None)[order]
    return (gains * discounts[:order.shape[1]]).sum(axis=1) / idcg
