"""Completeness of neuron conductance: the left Riemann sum (the study's, captum's) vs the
trapezoid rule on the same points, for held-out demo pairs.

    python bench/completeness.py [--ranker smollm2-ranker] [--pairs 2] [--steps 100]

The last block's conductances summed over units and tokens should equal F(x) − F(baseline);
the relative gap measures the integration error. Only the last block is attributed (the gap
does not depend on which other layers are watched). Prints per-pair gaps and
``RESULT completeness_gap_left=<median>``, ``RESULT completeness_gap_trapezoid=<median>``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.attribution import AttributionConfig, conductance  # noqa: E402
from core.data import load_collection  # noqa: E402
from core.extract import ExtractionConfig, run_pairs  # noqa: E402
from core.models import load_ranker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="smollm2-ranker")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    ranker = load_ranker(args.ranker)
    pairs = run_pairs(load_collection("demo"), ExtractionConfig(limit_queries=args.pairs,
                                                                 split="test", depth=1))
    cut = ranker.block_path(ranker.n_layers - 1)
    gaps = {"left": [], "trapezoid": []}
    for row in pairs.head(args.pairs).itertuples(index=False):
        enc = ranker.encode([row.query], [row.document])
        for rule in gaps:
            _, report = conductance(ranker, enc, AttributionConfig(steps=args.steps, rule=rule),
                                    paths=[cut])
            gaps[rule].append(report["completeness_gap"])
            print(f"{row.qid}/{row.docno} {rule}: F(x) − F(x′) = {report['delta']:.4f}, "
                  f"last block total {report['cut_total']:.4f}, gap "
                  f"{report['completeness_gap']:.4f}")
    print(f"ranker={args.ranker} N={args.steps} pairs={args.pairs}")
    for rule, values in gaps.items():
        print(f"RESULT completeness_gap_{rule}={np.median(values):.4f}")


if __name__ == "__main__":
    main()
