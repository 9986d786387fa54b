"""Patching sweep: RankScope's staged, batched patched runs vs one full forward per patch.

    python bench/patch_sweep.py [--ranker smollm2-judge] [--pairs 3] [--threads 2] [--full]

Both sides (after one untimed warm-up pair) patch the same prompt pairs of the demo collection's test split, in this process:
the study's sweep, every layer × position group (document, query, instruction, last) ×
{attention output, MLP output} (``--full`` adds the residual stream, each head at the last token
and the query, and each head's query↔document attention weights). The baseline is the loop
TransformerLens / MechIR run: the corrupted input through the whole model once per patch, with
a hook replacing one activation. RankScope starts each patched run at the patched layer from
the cached corrupted residual stream, carries only the positions a patch can change (causal
decoders, with cached keys/values), skips patches whose clean and corrupted values are equal,
and batches the patched runs. Both sides use the same (eager) attention kernel.

Prints ``RESULT patch_speedup=<x>`` and ``RESULT patch_max_abs_ie_diff=<d>``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import load_collection  # noqa: E402
from core.models import load_ranker  # noqa: E402
from core.patching import (PatchConfig, encode_pair, patch_pair, plan_patches,  # noqa: E402
                           prepare_pair, prompt_pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="smollm2-judge")
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--prompt", default="pointwise", choices=["pointwise", "pairwise"])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true",
                        help="also residual stream, heads and attention scores")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ranker = load_ranker(args.ranker)
    collection = load_collection(args.collection)
    config = PatchConfig(prompt=args.prompt, pairs=args.pairs, min_gap=0.0)
    if not args.full:
        config = replace(config, components=("attn", "mlp"), head_groups=(),
                         attention_scores=False)
    pairs = prompt_pairs(collection, config)
    # warm-up, untimed: one pair through both sides (first calls allocate and register kernels)
    warm = pairs.iloc[0]
    enc, _, _ = encode_pair(ranker, warm.query, warm.positive, warm.negative, config)
    if enc is not None:
        prepared = prepare_pair(ranker, enc)
        few = plan_patches(ranker, prepared, config)[:8]
        patch_pair(ranker, prepared, few, "staged")
        patch_pair(ranker, prepared, few, "loop")
    totals = {"staged": 0.0, "loop": 0.0}
    max_diff, n_patches = 0.0, 0
    for row in pairs.itertuples(index=False):
        enc, reason, _ = encode_pair(ranker, row.query, row.positive, row.negative, config)
        if enc is None:
            print(f"  query {row.qid}: skipped ({reason})")
            continue
        started = time.perf_counter()
        prepared = prepare_pair(ranker, enc)  # the cached clean/corrupted runs: our side only
        patches = plan_patches(ranker, prepared, config)
        staged = patch_pair(ranker, prepared, patches, "staged", config.batch_rows)
        totals["staged"] += time.perf_counter() - started
        started = time.perf_counter()
        loop = patch_pair(ranker, prepared, patches, "loop")
        totals["loop"] += time.perf_counter() - started
        diff = float(np.abs((staged - loop) / prepared.gap).max())
        max_diff = max(max_diff, diff)
        n_patches += len(patches)
        print(f"  query {row.qid}: {len(patches)} patches, {prepared.n_positions} tokens, "
              f"LD gap {prepared.gap:+.3f}, max |ΔIE| {diff:.2e}  (cumulative: staged "
              f"{totals['staged']:.1f}s, loop {totals['loop']:.1f}s)", flush=True)
    print(f"{args.ranker}, {args.prompt}, {n_patches} patched runs, torch threads {args.threads}: "
          f"RankScope {totals['staged']:.2f}s (incl. the clean/corrupted runs), one forward per "
          f"patch {totals['loop']:.2f}s")
    print(f"RESULT patch_speedup={totals['loop'] / totals['staged']:.2f}")
    print(f"RESULT patch_max_abs_ie_diff={max_diff:.2e}")


if __name__ == "__main__":
    main()
