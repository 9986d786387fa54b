"""`python -m core probe`: layer-wise Lasso / ridge probes for IR features."""

from __future__ import annotations

import sys

from core.cli.common import (add_collection, add_ranker, load, out_file, progress_bar, store_for)
from core.constants import ABSENT_R2, ENCODED_R2

NAME = "probe"
HELP = "layer-wise Lasso/ridge probes for IR features"
STOPPED = "finished layers are saved; run the same command again to resume"


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p, flags=("limit", "depth"))
    p.add_argument("--features", nargs="+", default=None,
                   help="feature names (default: all 26; see core/features.py)")
    p.add_argument("--groups", nargs="+", default=[],
                   help="feature-group expressions, e.g. '(covered_query_term_ratio + sum_tf + "
                        "variance_tfidf)^2'")
    p.add_argument("--pooling", nargs="+", default=["mean"], choices=["mean", "max"])
    p.add_argument("--estimator", nargs="+", default=["lasso"], choices=["lasso", "ridge"])
    p.add_argument("--alpha", type=float, default=0.1, help="Lasso α (paper: 0.1)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-set-size", type=int, default=4000)
    p.add_argument("--solver", default="auto", choices=["auto", "working_set", "batched", "sklearn"],
                   help="Lasso solver: working_set (core.solvers, the CPU default), batched torch "
                        "(the CUDA default) or scikit-learn's Lasso per feature and fold (the "
                        "reference)")
    p.add_argument("--out", required=True, help="CSV file for the tidy result table")


def run(args) -> int:
    """Probe every layer for IR features; write the tidy table to --out (CSV)."""
    from core.features import FEATURES
    from core.probing import ProbeConfig, positives_negatives, probe_ranker

    out = out_file(args.out, "probe.csv")
    config = ProbeConfig(features=tuple(args.features or FEATURES), groups=tuple(args.groups),
                         poolings=tuple(args.pooling), estimators=tuple(args.estimator),
                         lasso_alpha=args.alpha, folds=args.folds, seed=args.seed,
                         max_set_size=args.max_set_size, solver=args.solver)
    config.validate()  # before the model loads: bad settings fail at once
    ranker, collection = load(args)
    store = store_for(args)
    bars = {stage: progress_bar(stage) for stage in ("extract", "probe")}
    try:
        result = probe_ranker(ranker, collection, store, config, limit_queries=args.limit,
                              depth=args.depth,
                              progress=lambda done, total, stage: bars[stage](done, total))
    finally:
        store.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    columns = ["ranker", "collection", "feature", "layer", "pooling", "estimator", "r2_mean",
               "r2_sd", "r2_val", "mse", "n_nonzero", "set_size"]
    out.parent.mkdir(parents=True, exist_ok=True)
    result.frame[columns].to_csv(out, index=False)
    summary = positives_negatives(result.frame)
    encoded = summary[summary.max_r2 > ENCODED_R2].feature.unique().tolist()
    absent = summary[summary.max_r2 < ABSENT_R2].feature.unique().tolist()
    print(f"probe {result.key}: {len(result.frame)} rows ({result.computed_now} of "
          f"{result.units} layer × pooling units computed now) in {result.seconds:.1f}s → {out}")
    print(f"encoded (max R² > {ENCODED_R2}): {', '.join(encoded) or 'none'}")
    print(f"absent (max R² < {ABSENT_R2}): {', '.join(absent) or 'none'}")
    return 0
