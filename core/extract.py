"""Activations → store, all layers in one forward pass per batch.

Context:
    Probing (study 1) reads the hidden state after every block, mean- or max-pooled over the
    pair's tokens; patching and attribution need the output position. One forward pass per batch
    captures every requested module through :func:`core.hooks.capture`, pooling inside the hook
    so full ``[batch, pos, d]`` tensors are dropped at once, and writes the batch in one
    transaction. Batches are fixed by the configuration, so a resumed run recomputes exactly the
    missing batches and ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from core.constants import COMPONENTS, POOLINGS  # noqa: F401 - re-exported
from core.data import Collection
from core.errors import InputError
from core.models import PAD, Ranker
from core.retrieval import candidate_pairs
from core.store import Store, content_key

# Store batches forwarded together, re-batched by length (less padding). A window's pairs are
# fixed by the configuration, so a resumed run recomputes whole windows and stays bit-identical.
WINDOW = 8


@dataclass(frozen=True)
class ExtractionConfig:
    """What to extract. Defaults follow the probing study (mean/max pooling, every block).

    Attributes:
        depth: BM25 candidates per query (top-20, as the re-ranking studies).
        limit_queries: only the first N queries (in collection order); None = all.
        batch_size: pairs per forward pass (part of the key: batches are the resume unit).
        poolings: over the pair's non-pad tokens (mean, max) and the output position (last).
        components: residual stream after each block, plus attention / MLP outputs if asked.
        prompt: judges only: pointwise or pairwise prompt.
        split: only queries of this split (the demo collection marks held-out queries "test").

    ``components=()`` extracts scores only (re-ranking evaluation), still cached and resumable.
    """

    depth: int = 20
    limit_queries: int | None = None
    batch_size: int = 20
    poolings: tuple[str, ...] = POOLINGS
    components: tuple[str, ...] = ("resid",)
    prompt: str = "pointwise"
    split: str | None = None

    def validate(self) -> None:
        if self.depth < 1:
            raise InputError(f"Candidates per query (--depth) must be at least 1, got "
                             f"{self.depth}")
        if self.limit_queries is not None and self.limit_queries < 1:
            raise InputError(f"Queries (--limit) must be at least 1, got {self.limit_queries}")
        if self.batch_size < 1:
            raise InputError(f"Batch size (--batch-size) must be at least 1, got "
                             f"{self.batch_size}")
        bad = set(self.poolings) - set(POOLINGS) or set(self.components) - set(COMPONENTS)
        if bad or not self.poolings:
            raise InputError(f"unknown or missing pooling/component {sorted(bad)}; poolings: "
                             f"{', '.join(POOLINGS)}; components: {', '.join(COMPONENTS)}")


def extraction_key(ranker: Ranker, collection: Collection, config: ExtractionConfig) -> str:
    return content_key("activations", ranker=ranker.spec.key(),
                       collection=collection.content_hash, config=asdict(config))


def pool(hidden: torch.Tensor, mask: torch.Tensor, last: torch.Tensor,
         poolings: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Pool ``hidden [batch, pos, d]`` over non-pad positions (``mask [batch, pos]``).

    ``last [batch]`` indexes the output position. Returns pooling name → ``[batch, d]`` float32.
    Pools where ``hidden`` lives (on a GPU only ``[batch, d]`` per pooling crosses to the host,
    not the whole ``[batch, pos, d]`` stream).
    """
    hidden = hidden.float()
    mask, last = mask.to(hidden.device), last.to(hidden.device)
    out = {}
    if "mean" in poolings:
        weights = mask.unsqueeze(-1).float()
        out["mean"] = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
    if "max" in poolings:
        masked = hidden.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        out["max"] = masked.max(dim=1).values
    if "last" in poolings:
        out["last"] = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return {name: value.cpu().numpy() for name, value in out.items()}


def run_pairs(collection: Collection, config: ExtractionConfig) -> pd.DataFrame:
    """The candidate pairs an extraction with ``config`` covers, in pair-index order."""
    qids = None
    if config.split is not None:
        qids = collection.qids(config.split, required=True)
    pairs = candidate_pairs(collection, config.depth, qids=qids,
                            limit_queries=config.limit_queries)
    if pairs.empty:
        raise InputError(f"collection {collection.name!r} yields no candidate pairs")
    return pairs


@dataclass
class ExtractionResult:
    run_key: str
    n_pairs: int
    n_batches: int
    batches_done: int
    computed_now: int
    stopped: bool
    seconds: float

    @property
    def complete(self) -> bool:
        return self.batches_done == self.n_batches


def _forward_window(ranker: Ranker, rows: pd.DataFrame, config: ExtractionConfig,
                    paths: dict[str, tuple[str, int]]
                    ) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """Scores ``[n]`` and pooled captures (path → pooling → ``[n, d]``) of a window of pairs.

    The window's pairs go through the model in batches of ``batch_size`` sorted by text length,
    so a batch pads to a length near its own pairs' instead of the longest of an arbitrary
    mix (TREC DL passages run from 20 to 250 tokens); results return in the window's order.
    """
    lengths = (rows["query"].str.len() + rows["document"].str.len()).to_numpy()
    order = np.argsort(lengths, kind="stable")
    scores = np.empty(len(rows), dtype=np.float32)
    captured: dict[str, dict[str, np.ndarray]] = {}
    queries, documents = rows["query"].tolist(), rows["document"].tolist()
    for start in range(0, len(order), config.batch_size):
        index = order[start:start + config.batch_size]
        enc = ranker.encode([queries[i] for i in index], [documents[i] for i in index],
                            config.prompt)
        mask = (enc.groups != PAD)

        def reduce(path: str, hidden: torch.Tensor, mask=mask, last=enc.last):
            return pool(hidden, mask, last, config.poolings)

        with torch.inference_mode(), ranker.capture(list(paths), reduce) as batch:
            scores[index] = ranker.forward(enc).float().cpu().numpy()
        for path, pooled in batch.items():
            for pooling, array in pooled.items():
                target = captured.setdefault(path, {}).get(pooling)
                if target is None:
                    target = captured[path][pooling] = np.empty((len(rows), array.shape[1]),
                                                                dtype=np.float32)
                target[index] = array
    return scores, captured


def extract(ranker: Ranker, collection: Collection, config: ExtractionConfig, store: Store,
            progress: Callable[[int, int, str], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> ExtractionResult:
    """Extract (or resume extracting) activations of every candidate pair into ``store``.

    Args:
        progress: called with (batches done, batches total, "batch") after each batch.
        should_stop: polled between batches; returning True stops after the current batch,
            leaving a resumable run.
    """
    config.validate()
    if config.prompt == "pairwise":
        raise InputError("extraction uses pointwise inputs; pairwise prompts belong to patching")
    started = time.perf_counter()
    pairs = run_pairs(collection, config)
    run_key = extraction_key(ranker, collection, config)
    n_batches = (len(pairs) + config.batch_size - 1) // config.batch_size
    status = store.begin_run(run_key, kind="activations" if config.components else "scores", ranker=ranker.spec.name,
                    ranker_key=ranker.spec.key(), collection=collection.name,
                    collection_key=collection.content_hash, config=asdict(config), pairs=pairs,
                    n_batches=n_batches)
    done = store.done_batches(run_key)
    paths = {}
    for layer in range(ranker.n_layers):
        for component, path in ranker.component_paths(layer).items():
            if component in config.components:
                paths[path] = (component, layer)
    computed = 0
    stopped = False
    for window_start in range(0, n_batches, WINDOW):
        window = range(window_start, min(n_batches, window_start + WINDOW))
        todo = [b for b in window if b not in done]
        if not todo:
            continue
        if should_stop is not None and should_stop():
            stopped = True
            break
        window_started = time.perf_counter()
        first = window_start * config.batch_size
        rows = pairs.iloc[first:(window.stop) * config.batch_size]
        scores, captured = _forward_window(ranker, rows, config, paths)
        seconds = (time.perf_counter() - window_started) / len(todo)
        for batch_index in todo:
            start = (batch_index - window_start) * config.batch_size
            part = slice(start, start + config.batch_size)
            blocks = {(component, layer, pooling): (path, captured[path][pooling][part])
                      for path, (component, layer) in paths.items()
                      for pooling in config.poolings}
            store.write_batch(run_key, batch_index, first + start, scores[part], blocks, seconds)
            done.add(batch_index)
            computed += 1
            if progress is not None:
                progress(len(done), n_batches, "batch")
    if len(done) == n_batches and status != "done":
        store.finish_run(run_key)
    return ExtractionResult(run_key, len(pairs), n_batches, len(done), computed, stopped,
                            time.perf_counter() - started)
