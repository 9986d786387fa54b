"""Neuron attribution: RankScope's one integrated pass over every linear layer vs captum.

    python bench/attribution.py [--ranker minilm-cross-encoder] [--pairs 2] [--steps 50]

Both sides compute conductance (Riemann, N steps, baseline = every non-special token → [PAD])
of every output unit of every linear layer in the blocks, summed over tokens, for the same
(query, document) pairs of the demo collection, in this process. captum's
``LayerConductance`` runs the interpolation once per layer (its API takes one layer; a list of
layers raises, NOTES.md); RankScope keeps every linear output of a chunk of steps and gets all
their gradients from one backward pass. ``method="riemann_trapezoid"`` makes captum use the
same N + 1 points as RankScope.

Prints ``RESULT attribution_speedup=<x>`` and ``RESULT attribution_max_rel_diff=<d>``
(per layer max |ours − captum| / max |captum|, worst layer).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.attribution import AttributionConfig, baseline_embeddings, conductance  # noqa: E402
from core.data import load_collection  # noqa: E402
from core.extract import ExtractionConfig, run_pairs  # noqa: E402
from core.models import Encoded, load_ranker  # noqa: E402


def captum_all_layers(ranker, enc, steps):
    from captum.attr import LayerConductance

    enc = enc.to(ranker.device)
    x = ranker.input_embeddings(enc).detach()
    base = baseline_embeddings(ranker, enc, "pad").detach()

    def forward(embeddings):
        n = embeddings.shape[0]
        batch = Encoded(enc.input_ids.expand(n, -1), enc.attention_mask.expand(n, -1),
                        enc.groups.expand(n, -1), enc.last.expand(n),
                        None if enc.token_type_ids is None else enc.token_type_ids.expand(n, -1))
        return ranker.forward_from_embeddings(batch, embeddings)

    out = {}
    for path in ranker.linear_paths():
        layer = LayerConductance(forward, ranker.model.get_submodule(path))
        values = layer.attribute(x, baselines=base, n_steps=steps, method="riemann_trapezoid")
        out[path] = values.sum(dim=(0, 1)).double().detach().cpu().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="minilm-cross-encoder")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ranker = load_ranker(args.ranker)
    pairs = run_pairs(load_collection("demo"), ExtractionConfig(split="test", limit_queries=1))
    config = AttributionConfig(steps=args.steps)
    ours_s = theirs_s = 0.0
    worst = 0.0
    for row in pairs.head(args.pairs).itertuples(index=False):
        enc = ranker.encode([row.query], [row.document])
        started = time.perf_counter()
        ours, report = conductance(ranker, enc, config)
        ours_s += time.perf_counter() - started
        started = time.perf_counter()
        theirs = captum_all_layers(ranker, enc, args.steps)
        theirs_s += time.perf_counter() - started
        gaps = {p: float(np.abs(ours[p] - theirs[p]).max() / max(np.abs(theirs[p]).max(), 1e-30))
                for p in theirs}
        worst = max(worst, max(gaps.values()))
        print(f"  {row.qid}/{row.docno}: {len(theirs)} linear layers, "
              f"{sum(v.size for v in ours.values())} neurons, completeness gap "
              f"{report['completeness_gap']:.4f}, worst layer rel. diff {max(gaps.values()):.2e} "
              f"(cumulative: RankScope {ours_s:.1f}s, captum {theirs_s:.1f}s)", flush=True)
    print(f"{args.ranker}, N = {args.steps}, torch threads {args.threads}: RankScope "
          f"{ours_s:.2f}s, captum LayerConductance layer by layer {theirs_s:.2f}s")
    print(f"RESULT attribution_speedup={theirs_s / ours_s:.2f}")
    print(f"RESULT attribution_max_rel_diff={worst:.2e}")


if __name__ == "__main__":
    main()
