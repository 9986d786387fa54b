"""`python -m core shapley`: Shapley values of probe neuron groups vs random groups."""

from __future__ import annotations

from core.cli.common import (TEST_SPLIT, add_collection, add_ranker, load, out_file, progress_bar,
                              store_for, stored_key, write_table)
from core.constants import ENCODED_R2

NAME = "shapley"
HELP = "Shapley values of probe neuron groups vs random groups (nDCG@10)"


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p, **TEST_SPLIT)
    p.add_argument("--probe-collection", default=None,
                   help="collection of the stored probe run (default: --collection)")
    p.add_argument("--threshold", type=float, default=ENCODED_R2,
                   help=f"probe R² (study: {ENCODED_R2})")
    p.add_argument("--layer", type=int, default=None,
                   help="block output the probe read, 1-based (default: last)")
    p.add_argument("--random-groups", type=int, default=19)
    p.add_argument("--permutations", type=int, default=40)
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--mode", default="mean", choices=["mean", "zero"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)


def run(args) -> int:
    """Shapley values of probe-identified neuron groups vs random groups (nDCG@10 game)."""
    from core.shapley import ShapleyConfig, shapley_validation

    out = out_file(args.out, "shapley.csv")
    config = ShapleyConfig(threshold=args.threshold, layer=args.layer,
                           random_groups=args.random_groups, permutations=args.permutations,
                           queries=args.queries, depth=args.depth, split=args.split or None,
                           mode=args.mode, seed=args.seed)
    config.validate()
    store = store_for(args)
    try:
        probe_collection = args.probe_collection or args.collection
        probe = store.probe_results(stored_key(store, "probe", args.ranker, probe_collection,
                                            f"probe --ranker {args.ranker} --collection "
                                            f"{probe_collection} --out FILE.csv"))
    finally:
        store.close()
    ranker, collection = load(args)
    bar = progress_bar("shapley", "group × query")
    per_query, summary = shapley_validation(ranker, collection, probe, config,
                                            progress=lambda done, total, _: bar(done, total))
    write_table(summary, ranker, collection, out)
    per_query.to_csv(out.with_name(out.stem + "-per-query.csv"), index=False)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"→ {out}")
    return 0
