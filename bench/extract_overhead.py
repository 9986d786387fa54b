"""Capture + store time over a bare forward pass of the same batches.

    python bench/extract_overhead.py [--ranker smollm2-ranker] [--queries 4] [--repeats 3]

Both sides encode the same demo batches (windows re-batched by length, as core.extract does)
and run the same forward passes in this process; the
extraction side also hooks every block (residual stream, mean/max/last pooling) and writes each
batch transactionally into a fresh DuckDB store. Sides alternate and the best of ``--repeats``
is kept for each, so background load hits both alike. Prints ``RESULT extract_overhead=<ratio>``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import demo_collection  # noqa: E402
from core.extract import WINDOW, ExtractionConfig, extract  # noqa: E402
from core.models import load_ranker  # noqa: E402
from core.retrieval import candidate_pairs  # noqa: E402
from core.store import Store  # noqa: E402


def bare(ranker, pairs, batch_size: int) -> float:
    """The same forward passes as the extraction: windows of WINDOW batches, re-batched by
    length (core.extract), with no hooks and no store."""
    started = time.perf_counter()
    span = WINDOW * batch_size
    with torch.inference_mode():
        for window in range(0, len(pairs), span):
            rows = pairs.iloc[window:window + span]
            rows = rows.iloc[np.argsort((rows["query"].str.len()
                                         + rows["document"].str.len()).to_numpy(), kind="stable")]
            for first in range(0, len(rows), batch_size):
                batch = rows.iloc[first:first + batch_size]
                ranker.forward(ranker.encode(batch["query"].tolist(), batch["document"].tolist()))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranker", default="smollm2-ranker")
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ranker = load_ranker(args.ranker)
    collection = demo_collection()
    config = ExtractionConfig(limit_queries=args.queries, batch_size=args.batch_size)
    pairs = candidate_pairs(collection, config.depth, limit_queries=args.queries)
    bare(ranker, pairs.head(args.batch_size), args.batch_size)  # warm-up
    bare_times, extract_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            bare_times.append(bare(ranker, pairs, args.batch_size))
            store = Store(Path(tmp) / f"bench-{repeat}.duckdb")
            started = time.perf_counter()
            result = extract(ranker, collection, config, store)
            extract_times.append(time.perf_counter() - started)
            assert result.computed_now == result.n_batches
            store.close()
    ratio = min(extract_times) / min(bare_times)
    print(f"{args.ranker}: {len(pairs)} pairs, {result.n_batches} batches of {args.batch_size}, "
          f"{ranker.n_layers} layers x 3 poolings captured, {args.threads} threads")
    print(f"bare forward     best {min(bare_times):7.2f}s  all {[round(t, 2) for t in bare_times]}")
    print(f"extract + store  best {min(extract_times):7.2f}s  all {[round(t, 2) for t in extract_times]}")
    print(f"RESULT extract_overhead={ratio:.3f}")


if __name__ == "__main__":
    main()
