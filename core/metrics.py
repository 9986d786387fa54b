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
    (ir_measures' convention), so re-rankers and BM25 are compared on the same footing.
    """
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
