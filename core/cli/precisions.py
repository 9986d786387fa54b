"""`python -m core precisions`: the same pairs in every precision, against fp32."""

from __future__ import annotations

import sys

from core.cli.common import (InputError, add_collection, add_ranker, out_file, ranker_spec)
from core.constants import QUANTIZATIONS

NAME = "precisions"
HELP = ("the same pairs in fp32 / bf16 / 4-bit (/ 8-bit on CUDA): agreement with fp32, nDCG, "
        "memory, speed")


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p)
    p.add_argument("--precisions", nargs="+", choices=QUANTIZATIONS,
                   help="default: every precision this machine supports")
    p.add_argument("--qrels", default=None, help="score with this TREC qrels file")
    p.add_argument("--out", default=None, help="also write the table as CSV")


def run(args) -> int:
    """Score the same pairs in every precision the machine supports; compare with fp32."""
    from core.data import load_collection, with_qrels
    from core.precision import compare_precisions
    from core.retrieval import candidate_pairs

    out = out_file(args.out, "precisions.csv") if args.out else None
    spec = ranker_spec(args)
    collection = load_collection(args.collection)
    judged = with_qrels(collection, args.qrels) if args.qrels else collection
    judged = judged if judged.judged else None  # unjudged (TREC DL 2022): scores only
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1 query, got {args.limit}")
    pairs = candidate_pairs(collection, args.depth, qids=collection.qids(args.split, True),
                            limit_queries=args.limit)
    candidates = collection.run_name if collection.run is not None else "BM25"
    table = compare_precisions(spec, pairs, judged, args.precisions or None,
                               batch_size=args.batch_size,
                               log=lambda m: print(m, file=sys.stderr))
    split = f", split {args.split}" if args.split else ""
    print(f"{spec.name} on {collection.name}{split}: {len(pairs)} pairs of "
          f"{pairs.qid.nunique()} queries (top-{args.depth} of {candidates}); agreement with "
          f"fp32")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for record in table.to_dict("records"):
        for column in ("spearman", "kendall", "flipped", "nDCG@10", "MRR@10", "memory_mb",
                       "pairs_per_s"):
            if column in record:
                name = column.replace("@", "").lower()
                print(f"RESULT {record['precision']}_{name}={record[column]:.4f}")
    if out is not None:
        table.to_csv(out, index=False)
        print(f"wrote {out}")
    return 0
