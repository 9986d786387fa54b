"""`python -m core extract`: activations of every layer into the store."""

from __future__ import annotations

from core.cli.common import add_collection, add_ranker, load, progress_bar, store_for
from core.constants import COMPONENTS, POOLINGS

NAME = "extract"
HELP = "extract activations into the store"
STOPPED = "finished batches are saved; run the same command again to resume"


def arguments(p) -> None:
    add_ranker(p)
    add_collection(p)
    p.add_argument("--components", nargs="+", default=["resid"], choices=COMPONENTS)
    p.add_argument("--poolings", nargs="+", default=["mean", "max", "last"], choices=POOLINGS)


def run(args) -> int:
    from core.extract import ExtractionConfig, extract

    config = ExtractionConfig(limit_queries=args.limit, batch_size=args.batch_size,
                              depth=args.depth, components=tuple(args.components),
                              poolings=tuple(args.poolings), split=args.split)
    config.validate()
    ranker, collection = load(args)
    store = store_for(args)
    try:
        result = extract(ranker, collection, config, store, progress=progress_bar("extract"))
    finally:
        store.close()
    print(f"run {result.run_key}: {result.n_pairs} pairs in {result.n_batches} batches "
          f"({result.computed_now} computed now, {result.n_batches - result.computed_now} "
          f"from the store) in {result.seconds:.1f}s → {store.path}")
    return 0
