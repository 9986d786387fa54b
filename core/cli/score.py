"""`python -m core score`: one query-document pair's score."""

from __future__ import annotations

from core.cli.common import add_ranker, load

NAME = "score"
HELP = "score one query-document pair"


def arguments(p) -> None:
    add_ranker(p)
    p.add_argument("--query", required=True)
    p.add_argument("--document", required=True)


def run(args) -> int:
    from core.data import check_user_text

    check_user_text("query", args.query)
    check_user_text("document", args.document)
    ranker, _ = load(args)
    score = ranker.score([args.query], [args.document])[0]
    print(f"{score:.4f}")
    return 0
