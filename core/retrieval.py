"""BM25 candidates (bm25s) and the (query, document) pairs every analysis works on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.constants import BM25_B, BM25_K1
from core.data import Collection

DEFAULT_DEPTH = 20  # re-rank BM25 top-20, as the NIG and patching studies do


def doc_texts(docs: pd.DataFrame) -> list[str]:
    """Title and text joined: what BM25 indexes and what rankers read."""
    titles = docs["title"].fillna("").astype(str)
    texts = docs["text"].fillna("").astype(str)
    return [f"{t}. {x}" if t and not x.startswith(t) else x for t, x in zip(titles, texts)]


_RUN_CACHE: dict[tuple, pd.DataFrame] = {}
_RUN_CACHE_SIZE = 16


def bm25_run(collection: Collection, depth: int = DEFAULT_DEPTH,
             qids: list[str] | None = None) -> pd.DataFrame:
    """BM25 top-``depth`` per query as a run frame ``[qid, docno, score, rank]`` (rank from 1).

    Memoised per (collection content, depth, queries) within the process.
    """
    key = (collection.content_hash, depth, None if qids is None else tuple(qids))
    if key not in _RUN_CACHE:
        if len(_RUN_CACHE) >= _RUN_CACHE_SIZE:
            _RUN_CACHE.pop(next(iter(_RUN_CACHE)))
        _RUN_CACHE[key] = _bm25_run(collection, depth, qids)
    return _RUN_CACHE[key].copy()


def _bm25_run(collection: Collection, depth: int, qids: list[str] | None) -> pd.DataFrame:
    import bm25s

    corpus = doc_texts(collection.docs)
    tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
    retriever.index(tokens, show_progress=False)
    queries = collection.queries if qids is None else collection.queries[
        collection.queries.qid.isin(qids)]
    k = min(depth, len(corpus))
    query_tokens = bm25s.tokenize(queries.text.tolist(), stopwords="en", show_progress=False)
    results, scores = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
    docnos = collection.docs.docno.to_numpy()
    rows = []
    for qid, doc_rows, score_row in zip(queries.qid, results, scores):
        for rank, (index, score) in enumerate(zip(doc_rows, score_row), start=1):
            rows.append((qid, docnos[int(index)], float(score), rank))
    return pd.DataFrame(rows, columns=["qid", "docno", "score", "rank"])


def first_stage_run(collection: Collection, depth: int = DEFAULT_DEPTH,
                    qids: list[str] | None = None) -> pd.DataFrame:
    """The run a collection re-ranks, top-``depth`` per query ``[qid, docno, score, rank]``:
    its own run (TREC DL's standard BM25 top-100) when it has one, else BM25 with bm25s."""
    if collection.run is None:
        return bm25_run(collection, depth, qids)
    run = collection.run
    if qids is not None:
        run = run[run.qid.isin(qids)]
    run = run.sort_values(["qid", "rank"], kind="stable")
    return run.groupby("qid", sort=False).head(depth).reset_index(drop=True)


def candidate_pairs(collection: Collection, depth: int = DEFAULT_DEPTH,
                    qids: list[str] | None = None, limit_queries: int | None = None) -> pd.DataFrame:
    """Pairs to score: the collection's run if it has one, else BM25 top-``depth``.

    Returns ``[qid, docno, query, document, relevance, bm25_rank]``; unjudged documents get
    relevance 0. Rows are ordered by (query order, rank) so the frame is deterministic.
    """
    run = first_stage_run(collection, depth, qids)
    order = {qid: i for i, qid in enumerate(collection.queries.qid)}
    run = run.assign(_order=run.qid.map(order)).sort_values(["_order", "rank"])
    if limit_queries is not None:
        keep = run.qid.drop_duplicates().head(limit_queries)
        run = run[run.qid.isin(keep)]
    texts = dict(zip(collection.docs.docno, doc_texts(collection.docs)))
    queries = dict(zip(collection.queries.qid, collection.queries.text))
    grades = {(q, d): r for q, d, r in collection.qrels[["qid", "docno", "relevance"]].itertuples(
        index=False)}
    return pd.DataFrame({
        "qid": run.qid.to_numpy(),
        "docno": run.docno.to_numpy(),
        "query": [queries[q] for q in run.qid],
        "document": [texts[d] for d in run.docno],
        "relevance": np.array([grades.get((q, d), 0) for q, d in zip(run.qid, run.docno)],
                              dtype=np.int64),
        "bm25_rank": run["rank"].to_numpy(),
    })


def rank_candidates(ranker, pairs: pd.DataFrame, batch_size: int = 16) -> pd.DataFrame:
    """One query's candidates (``candidate_pairs`` rows) re-ranked by ``ranker``: adds
    ``score``, ``rank`` (1 = best) and ``rank_change`` (first-stage rank − ranker's rank:
    positive = moved up), sorted by the ranker's rank."""
    if pairs.qid.nunique() != 1:
        raise ValueError("rank_candidates takes the candidates of one query")
    scores = ranker.score(pairs["query"].tolist(), pairs["document"].tolist(),
                          batch_size=batch_size)  # batches by length itself
    ranked = pairs.assign(score=scores.astype(float))
    ranked["rank"] = ranked.score.rank(ascending=False, method="first").astype(int)
    ranked["rank_change"] = ranked.bm25_rank - ranked["rank"]
    return ranked.sort_values("rank").reset_index(drop=True)


def rank_among(score: float, others: np.ndarray) -> int:
    """The rank (1 = best) a document with ``score`` takes among ``others`` (the rest)."""
    return int(1 + np.sum(np.asarray(others) > score))


def relevance_pairs(collection: Collection, limit: int, *, pairs_per_query: int = 1,
                    split: str | None = None, depth: int = 100,
                    skip_qids=()) -> pd.DataFrame:
    """Per query up to ``pairs_per_query`` pairs of a positive and a negative document
    ``[qid, query, positive, negative, positive_docno, negative_docno, bm25_rank_negative]``.

    Positives: the query's relevant judged documents, highest grade first (ties: the better
    BM25 rank, then docno). Negatives: the documents of the first stage's top-``depth`` (the
    collection's run, e.g. TREC DL's BM25 top-100, else BM25) judged (or assumed)
    non-relevant, best-ranked first — hard negatives, as in the patching study. The i-th
    positive is paired with the i-th negative, so no document is used twice. Queries (of
    ``split``, none of ``skip_qids``) are taken in collection order; at most ``limit`` rows.
    Patching's prompt pairs and the knock-out's reference and held-out pairs.
    """
    from core.errors import InputError

    queries = collection.queries
    collection.require_judgments("pairs of a relevant and a non-relevant document")
    chosen = collection.qids(split)
    if chosen is not None:
        queries = queries[queries.qid.isin(chosen)]
    relevant = collection.qrels[collection.qrels.relevance >= collection.min_relevant]
    queries = queries[queries.qid.isin(set(relevant.qid)) & ~queries.qid.isin(set(skip_qids))]
    if queries.empty:
        raise InputError(f"collection {collection.name!r} has no queries with a relevant "
                         f"document{' in split ' + split if split else ''}")
    run = first_stage_run(collection, depth, queries.qid.tolist())
    texts = dict(zip(collection.docs.docno, doc_texts(collection.docs)))
    grades = {(q, d): r for q, d, r in collection.qrels[["qid", "docno", "relevance"]]
              .itertuples(index=False)}
    rows = []
    for qid, query in zip(queries.qid, queries.text):
        ranked = run[run.qid == qid]
        bm25_rank = dict(zip(ranked.docno, ranked["rank"]))
        judged = relevant[relevant.qid == qid]
        order = sorted(zip(judged.docno, judged.relevance),
                       key=lambda item: (-item[1], bm25_rank.get(item[0], 10**9), item[0]))
        negatives = [(d, r) for d, r in zip(ranked.docno, ranked["rank"])
                     if grades.get((qid, d), 0) < collection.min_relevant]
        room = min(pairs_per_query, limit - len(rows))
        for (positive, _), (negative, rank) in list(zip(order, negatives))[:room]:
            rows.append((qid, query, texts[positive], texts[negative], positive, negative,
                         int(rank)))
        if len(rows) >= limit:
            break
    return pd.DataFrame(rows, columns=["qid", "query", "positive", "negative", "positive_docno",
                                       "negative_docno", "bm25_rank_negative"])
