"""Pairs/s of RankScope's scoring path (``evaluate``) against a plain batched transformers loop.

    python bench/score_throughput.py [--ranker minilm-cross-encoder] [--queries 10]

The pairs: the first ``--queries`` TREC DL 2019 queries' BM25 top-100 (the demo collection's
BM25 top-20 when ../shared/data/trec-dl-2019 is absent). The baseline is what a notebook does:
the same loaded model and tokenizer, ``tokenizer(queries, documents, padding=True,
truncation="only_second")`` over batches of ``--batch-size`` pairs in the run's order, one
``model(**batch)`` each. RankScope's side is ``core.extract.extract`` with no captured
components (what ``python -m core evaluate`` runs) into a fresh DuckDB store, stored scores
included. The two sides alternate ``--repeats`` times in this process; the medians give
``RESULT score_speedup=<baseline s / RankScope s>``, and the scores must agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import NAMED_FOLDERS, load_collection  # noqa: E402
from core.extract import ExtractionConfig, extract  # noqa: E402
from core.models import load_ranker  # noqa: E402
from core.retrieval import candidate_pairs  # noqa: E402
from core.store import Store  # noqa: E402


def plain_loop(model, tokenizer, pairs, batch_size: int, max_length: int) -> tuple[float, np.ndarray]:
    """The notebook baseline: batches in run order, padded to their longest pair."""
    started = time.perf_counter()
    scores = []
    with torch.inference_mode():
        for first in range(0, len(pairs), batch_size):
            rows = pairs.iloc[first:first + batch_size]
            batch = tokenizer(rows["query"].tolist(), rows["document"].tolist(), padding=True,
                              truncation="only_second", max_length=max_length,
                              return_tensors="pt")
            scores.append(model(**batch).logits[:, 0].float().numpy())
    return time.perf_counter() - started, np.concatenate(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="minilm-cross-encoder")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "trec-dl-2019" if NAMED_FOLDERS["trec-dl-2019"][0].is_dir() else "demo"
    depth = 100 if name != "demo" else 20
    collection = load_collection(name)
    ranker = load_ranker(args.ranker)
    if ranker.kind != "cross-encoder":
        raise SystemExit("the plain loop is written for cross-encoders; pick one")
    config = ExtractionConfig(limit_queries=args.queries, depth=depth, components=(),
                              batch_size=args.batch_size)
    pairs = candidate_pairs(collection, depth, limit_queries=args.queries)
    plain_loop(ranker.model, ranker.tokenizer, pairs.head(args.batch_size), args.batch_size,
               ranker.spec.max_length)  # warm-up
    plain_times, ours_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            seconds, plain_scores = plain_loop(ranker.model, ranker.tokenizer, pairs,
                                               args.batch_size, ranker.spec.max_length)
            plain_times.append(seconds)
            store = Store(Path(tmp) / f"bench-{repeat}.duckdb")
            started = time.perf_counter()
            result = extract(ranker, collection, config, store)
            ours_times.append(time.perf_counter() - started)
            ours = store.scores(result.run_key)
            store.close()
            if result.computed_now != result.n_batches:
                raise SystemExit("the store served batches: the bench needs a fresh store")
    difference = float(np.abs(ours - plain_scores).max())
    plain, ours_median = statistics.median(plain_times), statistics.median(ours_times)
    print(f"{args.ranker} on {name}: {len(pairs)} pairs ({args.queries} queries x top-{depth}), "
          f"batches of {args.batch_size}, {args.threads} threads")
    print(f"plain transformers loop  median {plain:7.2f}s  all {[round(t, 2) for t in plain_times]}"
          f"  ({len(pairs) / plain:.1f} pairs/s)")
    print(f"RankScope evaluate path  median {ours_median:7.2f}s  all "
          f"{[round(t, 2) for t in ours_times]}  ({len(pairs) / ours_median:.1f} pairs/s)")
    print(f"max |score difference| {difference:.2e}")
    print(f"RESULT score_pairs_per_s={len(pairs) / ours_median:.1f}")
    print(f"RESULT score_pairs_per_s_plain={len(pairs) / plain:.1f}")
    print(f"RESULT score_max_abs_diff={difference:.2e}")
    print(f"RESULT score_speedup={plain / ours_median:.2f}")


if __name__ == "__main__":
    main()
