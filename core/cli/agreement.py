"""`python -m core agreement`: probe neurons vs NIG top-X% vs patching, per layer."""

from __future__ import annotations

import sys

from core.cli.common import (InputError, add_collection, add_ranker, out_file, store_for,
                              stored_key)
from core.constants import ENCODED_R2

NAME = "agreement"
HELP = "probe neurons vs NIG top-X%% vs patching, per layer"


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p)
    p.add_argument("--scheme", default="fused", choices=["relevant", "non_relevant", "fused"])
    p.add_argument("--percent", type=float, default=1.0, help="NIG top-X%% (default 1)")
    p.add_argument("--threshold", type=float, default=ENCODED_R2,
                   help="probe R² for probe neurons")
    p.add_argument("--out", required=True)


def run(args) -> int:
    """Per layer: probe neurons vs top-X% NIG neurons vs patching components."""
    from core.agreement import agreement_correlation, stored_agreement
    from core.attribution import load_attribution

    out = out_file(args.out, "agree.csv")
    if not 0 < args.percent <= 100:
        raise InputError(f"--percent must be in (0, 100], got {args.percent}")
    store = store_for(args)
    try:
        attribution = load_attribution(store, stored_key(
            store, "attribution", args.ranker, args.collection,
            f"attribute --ranker {args.ranker} --collection {args.collection} --out FILE.csv"))
        table, probe_key, patch_key = stored_agreement(store, attribution, args.scheme,
                                                       args.percent, args.threshold)
    finally:
        store.close()
    table.insert(0, "ranker", args.ranker)
    table.insert(1, "collection", args.collection)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.drop(columns=["ranker", "collection"]).to_string(
        index=False, float_format=lambda v: f"{v:.3g}"))
    for name, key in (("probe", probe_key), ("patching", patch_key)):
        if key is None:
            print(f"note: no finished {name} run of {args.ranker} in the store; its columns "
                  "are left out", file=sys.stderr)
    correlation = agreement_correlation(table)
    if correlation:
        print(f"NIG top-{args.percent}% count vs patching |IE| over (layer, attn/mlp): "
              f"Spearman {correlation['spearman']:.3f} (p = {correlation['p_value']:.3g}, "
              f"n = {correlation['n']})")
    print(f"→ {out}")
    return 0
