"""`python -m core patch`: activation patching (IE per layer × position group, heads)."""

from __future__ import annotations

import sys

from core.cli.common import (TEST_SPLIT, add_collection, add_ranker, load, out_file, progress_bar,
                              store_for)
from core.constants import PATCH_COMPONENTS, POSITION_GROUPS, PROMPTS

NAME = "patch"
HELP = "activation patching: IE per layer × position, heads"
STOPPED = "finished pairs are saved; run the same command again to resume"


def arguments(p) -> None:
    """The sweep's flags (the head knock-out, which builds on a stored sweep, is
    ``python -m core knockout``)."""
    add_ranker(p, aliases=("--model",))
    add_collection(p, flags=("depth", "split"), depth=100,
                   depth_help="negatives come from the BM25 top-k non-relevant documents "
                              "(study: 100)", **TEST_SPLIT)
    p.add_argument("--prompt", default="pointwise",
                   choices=(*PROMPTS, "both"),
                   help="judges only: pairwise; both = pointwise and pairwise, with RBO")
    p.add_argument("--pairs", type=int, default=6, help="prompt pairs to patch")
    p.add_argument("--pairs-per-query", type=int, default=1,
                   help="candidate pairs per query: its i-th relevant document against its "
                        "i-th hard negative (the study: 1)")
    p.add_argument("--tries", type=int, default=None,
                   help="candidate pairs tried at most (default 4 per pair asked for)")
    p.add_argument("--doc-tokens", type=int, default=48,
                   help="documents are cut to at most this many tokens")
    p.add_argument("--min-gap", type=float, default=0.5,
                   help="exclude pairs with LD_clean − LD_corr below this")
    p.add_argument("--any-direction", action="store_true",
                   help="also keep pairs the model gets wrong (LD_clean < LD_corr)")
    p.add_argument("--components", nargs="+", default=["attn", "mlp", "resid"],
                   choices=PATCH_COMPONENTS)
    p.add_argument("--groups", nargs="+", default=list(POSITION_GROUPS), choices=POSITION_GROUPS)
    p.add_argument("--head-groups", nargs="*", default=["last", "query"], choices=POSITION_GROUPS,
                   help="position groups at which each head is patched (none: skip heads)")
    p.add_argument("--no-attention-scores", action="store_true",
                   help="skip patching attention weights between query and document")
    p.add_argument("--method", default="staged", choices=["staged", "loop"],
                   help="staged (fast) or loop (one full forward per patch; same numbers)")
    p.add_argument("--out", required=True, help="CSV file for the result table")
    p.add_argument("--per-pair", action="store_true",
                   help="also write every pair's rows to <out>-per-pair.csv")


def command_line(ranker: str, collection: str, config, store: str | None = None,
                 out: str | None = None) -> str:
    """The ``python -m core patch`` line that reruns a sweep of ``config`` (a
    :class:`core.patching.PatchConfig`) on the same store key — what the Patching page shows."""
    from core.cli import reproduce

    return reproduce(
        "patch", ranker=ranker, collection=collection, prompt=config.prompt,
        pairs=config.pairs, split=config.split or "", depth=config.depth,
        doc_tokens=config.doc_tokens,
        pairs_per_query=config.pairs_per_query if config.pairs_per_query > 1 else None,
        tries=config.tries, min_gap=config.min_gap, any_direction=not config.correct_only,
        components=list(config.components), groups=list(config.groups),
        head_groups=list(config.head_groups), no_attention_scores=not config.attention_scores,
        method=config.method if config.method != "staged" else None, store=store,
        out=out or f"patch-{config.prompt}.csv")


def _patch_config(args, prompt=None):
    from core.patching import PatchConfig

    config = PatchConfig(prompt=prompt or args.prompt, pairs=args.pairs, split=args.split or None,
                         depth=args.depth,
                         pairs_per_query=args.pairs_per_query, tries=args.tries,
                         doc_tokens=args.doc_tokens, min_gap=args.min_gap,
                         correct_only=not args.any_direction,
                         components=tuple(args.components), groups=tuple(args.groups),
                         head_groups=tuple(args.head_groups),
                         attention_scores=not args.no_attention_scores, method=args.method)
    config.validate()  # before the model loads: bad settings fail at once
    return config


def _patch(args, config, ranker, collection, store):
    from core.patching import run_patching

    bar = progress_bar("patch", "pair")
    return run_patching(ranker, collection, config, store,
                        progress=lambda done, total, _: bar(done, total))


def run(args) -> int:
    """Activation patching sweep; write the per-patch table (mean IE) to --out (CSV)."""
    from core.patching import head_table, mean_effects

    out = out_file(args.out, "patch.csv")
    import pandas as pd

    from core.patching import rbo_table

    prompts = ["pointwise", "pairwise"] if args.prompt == "both" else [args.prompt]
    configs = [_patch_config(args, prompt) for prompt in prompts]
    ranker, collection = load(args)
    for config in configs:
        config.validate(ranker)
    store = store_for(args)
    results = {}
    try:
        for config in configs:
            results[config.prompt] = _patch(args, config, ranker, collection, store)
    finally:
        store.close()
    tables, per_pair = [], []
    for prompt, result in results.items():
        for note in result.notes:
            print(f"note: {prompt}: {note}", file=sys.stderr)
        effects = mean_effects(result.used)
        effects.insert(0, "prompt", prompt)
        effects.insert(0, "collection", collection.name)
        effects.insert(0, "ranker", ranker.spec.name)
        tables.append(effects)
        per_pair.append(result.results.assign(prompt=prompt))
        used = result.pairs[result.pairs.status == "used"]
        print(f"patch {result.key} ({prompt}): {len(used)} of {len(result.pairs)} pairs used, "
              f"{len(result.results)} patched runs, {result.seconds:.1f}s")
    effects = pd.concat(tables, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out, index=False)
    if args.per_pair:
        pd.concat(per_pair).to_csv(out.with_name(out.stem + "-per-pair.csv"), index=False)
    print(f"→ {out}")
    if len(tables) == 2:
        print("RBO (p = 0.7) of pointwise vs pairwise layer rankings:")
        print(rbo_table(tables[0], tables[1]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for (prompt, result), table in zip(results.items(), tables):
        components = table[table.target.isin(["attn", "mlp"])]
        for target in ("attn", "mlp"):
            best = components[components.target == target].nlargest(3, "ie_mean")
            print(f"{prompt} top {target}: " + ", ".join(
                f"layer {r.layer} {r.group} IE {r.ie_mean:.2f}" for r in best.itertuples()))
        heads = head_table(result.used)
        for column in [c for c in heads.columns if c.startswith("head IE")]:
            best = heads.nlargest(3, column)[["layer", "head", column]]
            print(f"{prompt} top heads ({column}): " + ", ".join(
                f"L{layer:.0f}H{head:.0f} {value:.2f}"
                for layer, head, value in best.itertuples(index=False, name=None)))
    return 0
