"""`python -m core attribute`: neuron conductance (NIG) of every linear layer."""

from __future__ import annotations

import sys

from core.cli.common import (TEST_SPLIT, InputError, add_collection, add_ranker, load, out_file,
                              progress_bar, store_for, write_table)

NAME = "attribute"
HELP = "neuron conductance (NIG) of every linear layer"
STOPPED = "finished pairs are saved; run the same command again to resume"
GAP_WARNING = 0.05  # completeness gaps above this make attributions untrustworthy


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p, flags=("split",), **TEST_SPLIT)
    p.add_argument("--pairs", type=int, default=10,
                   help="pairs per label (relevant / non-relevant), judged right")
    p.add_argument("--steps", type=int, default=100, help="Riemann steps N (study: 100)")
    p.add_argument("--baseline", default="pad", choices=["pad", "pad-query", "zero"])
    p.add_argument("--rule", default="left", choices=["left", "trapezoid"],
                   help="left: the study's / captum's Riemann sum; trapezoid: same points, far "
                        "smaller completeness gaps on decoders")
    p.add_argument("--baselines", action="store_true",
                   help="also compare the pad / pad-query / zero baselines (<out>-baselines.csv)")
    p.add_argument("--out", required=True, help="CSV file: one row per neuron")


def run(args) -> int:
    """Neuron conductance of every linear layer for the relevant / non-relevant schemes."""
    from core.attribution import (TOP_PERCENTS, AttributionConfig, attribute_collection,
                                  baseline_table, overlap, scheme_pairs, set_counts, top_set)

    out = out_file(args.out, "nig.csv")
    config = AttributionConfig(steps=args.steps, baseline=args.baseline, rule=args.rule)
    config.validate()
    if args.pairs < 1:
        raise InputError(f"--pairs must be at least 1, got {args.pairs}")
    ranker, collection = load(args)
    config.validate(ranker)
    store = store_for(args)
    bar = progress_bar("attribute", "pair")
    try:
        result = attribute_collection(ranker, collection, config, args.pairs,
                                      args.split or None, store,
                                      progress=bar)
    finally:
        store.close()
    frame, reports, counts = result.frame, result.reports, result.counts
    write_table(frame, ranker, collection, out)
    reports.to_csv(out.with_name(out.stem + "-pairs.csv"), index=False)
    set_counts(frame, "fused").to_csv(out.with_name(out.stem + "-counts.csv"), index=False)
    print(f"{ranker.spec.name} on {collection.name}: {counts['relevant']} relevant and "
          f"{counts['non_relevant']} non-relevant pairs judged right ({counts['correct']} of "
          f"{counts['candidates']} candidates), {len(frame)} neurons, N = {config.steps}, "
          f"baseline {config.baseline} → {out} ({result.seconds:.0f} s)")
    gaps = reports.completeness_gap
    print(f"completeness (last block total vs F(x) − F(baseline)): median gap "
          f"{gaps.median():.4f}, max {gaps.max():.4f}")
    if gaps.median() > GAP_WARNING:
        print(f"warning: conductances miss {100 * gaps.median():.0f}% of F(x) − F(baseline) "
              "(median); use --rule trapezoid or more --steps", file=sys.stderr)
    for percent in TOP_PERCENTS:
        a = top_set(frame.relevant.to_numpy(), percent)
        b = top_set(frame.non_relevant.to_numpy(), percent)
        chosen = frame.iloc[top_set(frame.fused.to_numpy(), percent)]
        where = chosen.groupby("component").size().sort_values(ascending=False)
        print(f"top {percent}% ({len(a)} neurons): relevant ∩ non-relevant {overlap(a, b):.1f}%; "
              f"fused set by component: " + ", ".join(f"{c} {n}" for c, n in where.items()))
    if args.baselines:
        chosen, counts = scheme_pairs(ranker, collection, args.pairs, args.split or None)
        table = baseline_table(ranker, chosen, counts["threshold"])
        write_table(table, ranker, collection, out.with_name(out.stem + "-baselines.csv"))
        print("baselines (how much relevance signal each removes):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
