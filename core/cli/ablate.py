"""`python -m core ablate`: knock out top-X% NIG neurons vs random sets (nDCG@10)."""

from __future__ import annotations

from pathlib import Path

from core.cli.common import (TEST_SPLIT, InputError, add_collection, add_ranker, load, out_file,
                              progress_bar, write_table)

NAME = "ablate"
HELP = "knock out top-X%% NIG neurons vs random sets"


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p, **TEST_SPLIT)
    p.add_argument("--attribution", required=True, help="CSV written by `attribute`")
    p.add_argument("--scheme", default="fused", choices=["relevant", "non_relevant", "fused"])
    p.add_argument("--percents", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--mode", default="zero", choices=["zero", "mean"])
    p.add_argument("--draws", type=int, default=50, help="random sets (study: 50)")
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--out", required=True)


def run(args) -> int:
    """Knock out the top-X% neurons of an attribution table; nDCG@10 vs random sets."""
    import pandas as pd

    from core.attribution import neuron_sets
    from core.knockout import NeuronAblationConfig, ablate_neuron_sets

    out = out_file(args.out, "ablate.csv")
    source = Path(args.attribution)
    if not source.is_file():
        raise InputError(f"--attribution {source} is not a file; write one with "
                         "`python -m core attribute … --out FILE.csv`")
    table = pd.read_csv(source)
    missing = {"path", "unit", args.scheme} - set(table.columns)
    if missing:
        raise InputError(f"{source} lacks column(s) {', '.join(sorted(missing))}; is it the "
                         "table `python -m core attribute` writes?")
    if "ranker" in table and args.ranker not in set(table.ranker):
        raise InputError(f"{source} holds attributions of {', '.join(set(table.ranker))}, "
                         f"not {args.ranker}")
    config = NeuronAblationConfig(mode=args.mode, draws=args.draws, queries=args.queries,
                                  depth=args.depth, split=args.split or None)
    config.validate()
    ranker, collection = load(args)
    sets = neuron_sets(table, args.scheme, args.percents)
    bar = progress_bar("ablate", "ranking")
    result = ablate_neuron_sets(ranker, collection, sets, config,
                                progress=lambda done, total, _: bar(done, total))
    write_table(result, ranker, collection, out)
    print(result.drop(columns=["ranker", "collection"]).to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"→ {out}")
    return 0
