"""Playground latency: what one edit costs, per embedded ranker.

    python bench/playground_latency.py [--rankers minilm-cross-encoder smollm2-ranker]
                                       [--steps 50] [--repeats 3] [--threads 2]

One edit of the Playground reruns: the per-layer score lens (which gives the score), the token
view and the rank of the edited document among the rank view's 20 candidates (their scores are
cached; one score is new), plus, for the cross-encoder, the integrated-gradient saliency
(``--steps`` steps, the page's default 50; for the LLMs it is on request and timed apart). Timed on a fresh document text each repeat (no cache), after one untimed warm-up edit;
the baseline is the bare score of the same pair (one forward pass), in the same process.

Prints per ranker ``RESULT <ranker>_edit_seconds=<median>`` (targets: MiniLM ≤ 1 s, SmolLM2
≤ 3 s), ``RESULT <ranker>_saliency_seconds``, ``RESULT <ranker>_edit_over_score=<ratio>`` and
the parts' medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.models import load_ranker  # noqa: E402
from core.retrieval import rank_among  # noqa: E402
from core.saliency import saliency  # noqa: E402

QUERY = "what are the symptoms of influenza"
DOCUMENT = ("The first signs of influenza are usually a high fever and aching joints. Patients "
            "often report a dry cough, followed a few days later by severe fatigue.")


def one_edit(ranker, document: str, steps: int, others: np.ndarray) -> dict[str, float]:
    """The parts of one edit; ``edit`` is what the page runs by default (the saliency is on
    for the cross-encoder, on request for the LLMs)."""
    parts = {}
    started = time.perf_counter()
    lens = ranker.layer_scores([QUERY], [document])[0]
    parts["lens_and_score"] = time.perf_counter() - started
    mark = time.perf_counter()
    ranker.token_groups(QUERY, document)
    parts["tokens"] = time.perf_counter() - mark
    mark = time.perf_counter()
    rank_among(float(lens[-1]), others)
    parts["rank"] = time.perf_counter() - mark
    mark = time.perf_counter()
    saliency(ranker, QUERY, document, steps=steps)
    parts["saliency"] = time.perf_counter() - mark
    parts["edit"] = parts["lens_and_score"] + parts["tokens"] + parts["rank"]
    if ranker.kind == "cross-encoder":
        parts["edit"] += parts["saliency"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rankers", nargs="+", default=["minilm-cross-encoder", "smollm2-ranker",
                                                         "smollm2-judge"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    others = np.random.default_rng(0).normal(size=19)
    for name in args.rankers:
        ranker = load_ranker(name)
        one_edit(ranker, DOCUMENT + " Warm-up.", args.steps, others)  # untimed
        edits, scores = [], []
        for repeat in range(args.repeats):
            document = f"{DOCUMENT} Edit {repeat}: rest helps."
            edits.append(one_edit(ranker, document, args.steps, others))
            started = time.perf_counter()
            ranker.score([QUERY], [document])
            scores.append(time.perf_counter() - started)
        median = {part: statistics.median(e[part] for e in edits) for part in edits[0]}
        print(f"{name}: " + ", ".join(f"{part} {value:.3f}s" for part, value in median.items())
              + f"; bare score {statistics.median(scores):.3f}s")
        print(f"RESULT {name}_edit_seconds={median['edit']:.3f}")
        print(f"RESULT {name}_saliency_seconds={median['saliency']:.3f}")
        print(f"RESULT {name}_edit_over_score={median['edit'] / statistics.median(scores):.1f}")
        del ranker


if __name__ == "__main__":
    main()
