"""`python -m core saliency`: each token's contribution to one pair's score."""

from __future__ import annotations

from core.cli.common import add_ranker, load, out_file
from core.constants import PROMPTS

NAME = "saliency"
HELP = "each token's contribution to one pair's score (integrated gradients from the [PAD] baseline)"


def arguments(p) -> None:
    add_ranker(p)
    p.add_argument("--query", required=True)
    p.add_argument("--document", required=True)
    p.add_argument("--steps", type=int, default=50, help="Riemann steps (default 50)")
    p.add_argument("--rule", default="trapezoid", choices=["trapezoid", "left"])
    p.add_argument("--prompt", default="pointwise", choices=PROMPTS)
    p.add_argument("--top", type=int, default=15, help="tokens printed (all go to --out)")
    p.add_argument("--out", required=True, help="CSV: token, position, group, attribution")


def run(args) -> int:
    """Each token's contribution to one pair's score (integrated gradients on the embeddings)."""
    from core.data import check_user_text
    from core.saliency import saliency

    check_user_text("query", args.query)
    check_user_text("document", args.document)
    out = out_file(args.out, "saliency.csv")
    ranker, _ = load(args)
    result = saliency(ranker, args.query, args.document, steps=args.steps, rule=args.rule,
                      prompt=args.prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.tokens.to_csv(out, index=False)
    shown = result.tokens.reindex(result.tokens.attribution.abs()
                                  .sort_values(ascending=False).index).head(args.top)
    print(f"score {result.score:.4f}, [PAD] baseline {result.baseline_score:.4f}; "
          f"completeness gap {result.completeness_gap:.2%} ({args.steps} steps, {args.rule})")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    print(f"→ {out}")
    return 0
