"""`python -m core knockout`: mean-ablate the top-k heads by IE vs random heads."""

from __future__ import annotations

from core.cli.common import load, out_file, progress_bar, store_for
from core.cli.patch import _patch, _patch_config, patch_arguments

NAME = "knockout"
HELP = "mean-ablate the top-k heads by IE vs random heads"
STOPPED = ("finished patching pairs are saved; the knock-out restarts when you run the same "
           "command again")


def arguments(p) -> None:
    patch_arguments(p, both=False)
    p.add_argument("--k", type=int, default=5, help="heads ablated per condition")
    p.add_argument("--repeats", type=int, default=3, help="random head sets")
    p.add_argument("--queries", type=int, default=5, help="held-out queries")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """Head knock-out after a patching sweep (runs the sweep first when it is not stored)."""
    from core.knockout import KnockoutConfig, run_knockout

    out = out_file(args.out, "knockout.csv")
    config = _patch_config(args)
    knockout = KnockoutConfig(k=args.k, repeats=args.repeats, queries=args.queries, seed=args.seed)
    ranker, collection = load(args)
    config.validate(ranker)
    knockout.validate(ranker)
    store = store_for(args)
    try:
        result = _patch(args, config, ranker, collection, store)
        bar = progress_bar("knock-out", "run")
        frame = run_knockout(ranker, collection, result, config, knockout, store,
                             progress=lambda done, total, _: bar(done, total))
    finally:
        store.close()
    frame.insert(0, "ranker", ranker.spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(frame.drop(columns=["ranker"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"→ {out}")
    return 0
