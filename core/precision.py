"""What a precision costs: the same pairs scored in every precision the machine supports.

A user who picks ``4bit-nf4`` (or ``bf16``, ``8bit``) to fit a bigger ranker should see what
it changes before trusting an analysis run on it. :func:`compare_precisions` loads the ranker
once per precision, scores the same (query, document) pairs, and reports against ``fp32``:

- ``spearman`` / ``kendall``: rank correlation of all scores with fp32's;
- ``flipped``: the share of same-query candidate pairs (d_i, d_j) whose order differs from
  fp32's (ties count as a flip only when one side ties and the other does not);
- ``max_abs_diff``: the largest change of one score (scores move even where orders hold:
  the MiniLM cross-encoder's NF4 scores are shifted and shrunk, its ranking much less so);
- ``nDCG@10`` / ``MRR@10`` of re-ranking the candidates (when judgments are given);
- ``memory_mb`` (weights and buffers as loaded) and ``pairs_per_s`` (scoring only, batches of
  similar length, after one untimed warm-up batch).

Used by ``python -m core precisions``, the Workspace page's panel and ``bench/gpu_check.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from core.errors import InputError
from core.models import QUANTIZATIONS, ModelSpec, load_ranker

COLUMNS = ["precision", "spearman", "kendall", "flipped", "max_abs_diff", "nDCG@10", "MRR@10",
           "memory_mb", "pairs_per_s", "load_s"]


def supported_precisions(device: torch.device | str | None = None) -> list[str]:
    """The precisions this machine can run: 8-bit needs CUDA (bitsandbytes' int8 kernels)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(device).type == "cuda"
    return [p for p in QUANTIZATIONS if p != "8bit" or cuda]


def flipped_share(qids: np.ndarray, reference: np.ndarray, scores: np.ndarray) -> float:
    """Share of same-query candidate pairs whose order differs between the two score lists."""
    flips = total = 0
    qids = np.asarray(qids)
    for qid in pd.unique(qids):
        at = np.flatnonzero(qids == qid)
        if len(at) < 2:
            continue
        upper = np.triu_indices(len(at), k=1)
        a = np.sign(np.subtract.outer(reference[at], reference[at]))[upper]
        b = np.sign(np.subtract.outer(scores[at], scores[at]))[upper]
        flips += int((a != b).sum())
        total += len(a)
    return flips / total if total else float("nan")


def score_pairs(ranker, pairs: pd.DataFrame, batch_size: int = 32) -> tuple[np.ndarray, float]:
    """Scores of ``pairs`` (in their order; ``Ranker.score`` batches by length) and pairs/s.

    One batch is scored untimed first (kernels, caches, bitsandbytes' one-time repack)."""
    queries, documents = pairs["query"].tolist(), pairs["document"].tolist()
    ranker.score(queries[:batch_size], documents[:batch_size], batch_size=batch_size)
    if ranker.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    scores = ranker.score(queries, documents, batch_size=batch_size).astype(np.float64)
    if ranker.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return scores, len(pairs) / seconds if seconds > 0 else float("inf")


def compare_precisions(spec: ModelSpec, pairs: pd.DataFrame, judged=None,
                       precisions: list[str] | None = None, batch_size: int = 32,
                       log: Callable[[str], None] | None = None,
                       load: Callable[[ModelSpec], object] = load_ranker) -> pd.DataFrame:
    """One row per precision (fp32 first, the reference): see the module docstring.

    Args:
        spec: the ranker; its ``quantization`` is replaced by each precision in turn.
        pairs: ``qid, query, document`` (and ``docno`` for nDCG/MRR), e.g.
            :func:`core.retrieval.candidate_pairs`.
        judged: a collection whose qrels score the re-ranking (None: no nDCG/MRR).
        precisions: default :func:`supported_precisions` of the spec's device.
        load: how a spec becomes a ranker (tests pass a counting loader).

    Raises:
        InputError: no pairs, an unknown precision, or 8-bit without CUDA.
    """
    from core.metrics import evaluate

    if pairs.empty:
        raise InputError("no pairs to score: the collection (or --limit) selects no candidates")
    device = None if spec.device == "auto" else spec.device
    supported = supported_precisions(device)
    chosen = list(precisions) if precisions else supported
    unknown = [p for p in chosen if p not in QUANTIZATIONS]
    if unknown:
        raise InputError(f"unknown precision {', '.join(unknown)}; choose from "
                         f"{', '.join(QUANTIZATIONS)}")
    missing = [p for p in chosen if p not in supported]
    if missing:
        raise InputError(f"{', '.join(missing)} needs a CUDA GPU and none is visible; this "
                         f"machine runs {', '.join(supported)}")
    chosen = ["fp32"] + [p for p in chosen if p != "fp32"]  # the reference comes first
    rows, reference = [], None
    for precision in chosen:
        if log:
            log(f"{precision}: loading and scoring {len(pairs)} pairs")
        started = time.perf_counter()
        ranker = load(spec.with_quantization(precision))
        load_seconds = time.perf_counter() - started
        scores, speed = score_pairs(ranker, pairs, batch_size)
        memory = ranker.memory_bytes() / 2**20
        del ranker
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if reference is None:
            reference = scores
        row = {"precision": precision, "memory_mb": memory, "pairs_per_s": speed,
               "load_s": load_seconds,
               "max_abs_diff": float(np.abs(scores - reference).max())}
        row.update(agreement(reference, scores, pairs["qid"].to_numpy()))
        if judged is not None:
            row.update(evaluate(judged, pairs, scores))
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[[c for c in COLUMNS if c in frame]]


def agreement(reference: np.ndarray, scores: np.ndarray, qids: np.ndarray) -> dict[str, float]:
    """Spearman and Kendall τ of ``scores`` with ``reference``, and the flipped share."""
    from scipy.stats import kendalltau, spearmanr

    if len(scores) < 2 or np.ptp(scores) == 0 or np.ptp(reference) == 0:
        rho = tau = float("nan")
    else:
        rho = float(spearmanr(reference, scores).statistic)
        tau = float(kendalltau(reference, scores).statistic)
    return {"spearman": rho, "kendall": tau, "flipped": flipped_share(qids, reference, scores)}
