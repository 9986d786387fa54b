"""BM25 and the zero-shot bi-encoder on the training script's dev queries (what a recipe must beat).

    python scripts/dev_baselines.py            # seconds once the teacher's embeddings are cached

The dev queries are those ``scripts/train_adapters.py`` holds out: every 4th judged query of
TREC DL 2020 and of 2021. Each baseline re-ranks their run's top-100 (MiniLM's dev depth) and
top-20 (SmolLM2's), official qrels; the mean over all dev queries is the figure the training
compares its checkpoints with. TREC DL 2019 is not read.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from core.data import load_collection, with_qrels
from core.metrics import evaluate
from core.models import REPO_ROOT
from core.retrieval import candidate_pairs

_spec = importlib.util.spec_from_file_location("train_adapters",
                                               REPO_ROOT / "scripts" / "train_adapters.py")
train_adapters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_adapters)

YEARS = ("trec-dl-2020", "trec-dl-2021")


def main() -> None:
    rows = []
    for depth in (100, 20):
        totals: dict[str, float] = {}
        count = 0
        for year in YEARS:
            root = REPO_ROOT.parent / "shared" / "data" / year
            collection = load_collection(str(root))
            official = with_qrels(collection, root / "official-qrels.txt")
            _, dev = train_adapters.dl_split(collection)
            pairs = candidate_pairs(collection, depth, qids=dev)
            vectors = train_adapters._cached_embeddings(
                sorted(set(pairs["query"]) | set(pairs["document"])))
            cosine = np.array([float(vectors[q] @ vectors[d])
                               for q, d in zip(pairs["query"], pairs["document"])])
            for name, scores in (("BM25", -pairs.bm25_rank.to_numpy(dtype=float)),
                                 ("bi-encoder", cosine)):
                value = evaluate(official, pairs, scores)["nDCG@10"]
                rows.append((f"top-{depth}", year, len(dev), name, value))
                totals[name] = totals.get(name, 0.0) + value * len(dev)
            count += len(dev)
        for name, total in totals.items():
            rows.append((f"top-{depth}", "all dev", count, name, total / count))
    print(f"{'depth':8} {'collection':14} {'queries':>7} {'baseline':11} nDCG@10")
    for depth, year, n, name, value in rows:
        print(f"{depth:8} {year:14} {n:7d} {name:11} {value:.4f}")


if __name__ == "__main__":
    main()
