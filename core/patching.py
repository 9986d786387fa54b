"""Activation patching: where relevance flows through a ranker (study 3 of DESIGN.md).

Context:
    *How do LLMs understand relevance?* (2025) runs each prompt twice: a **clean** run with a
    relevant document and a **corrupted** run with a non-relevant one (pairwise prompts: the
    same two documents, order swapped), documents cut to the same token length so positions
    align. The metric is LD = logit(yes) − logit(no) at the answer position (for a ranker with
    a score head, the score). A **patched** run is the corrupted run with one activation
    replaced by its clean value; its indirect effect is

        IE = (LD_patched − LD_corr) / (LD_clean − LD_corr),

    0 when the patched activation carries nothing of the difference, 1 when it carries all of
    it. Patch targets: attention output, MLP output and residual stream of every layer at the
    position groups document / query / instruction / last token; every head's output at chosen
    groups; and the attention weights between query and document tokens, per head.

Intuition for the fast path:
    A patch at layer l cannot change anything below l, so a patched run starts from the
    corrupted run's cached residual stream at l (:meth:`Ranker.run_blocks`). In a causal decoder
    it cannot change positions before the first patched position p either: the run then carries
    only positions p… through the blocks, attending to the corrupted run's cached keys and
    values of positions < p (:class:`core.models.AttentionState`). Many patched runs share a
    batch: the corrupted input repeated, each row patched differently. The one-forward-per-patch
    loop (TransformerLens / MechIR style) is kept as ``method="loop"`` — the bench's baseline
    and the tests' reference.

Everything goes through one generic routine, :func:`_patched_scores`, specialised by small
setters (STYLE.md); hooks live only inside context managers that remove them in ``finally``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from core.analysis import drive
from core.data import Collection
from core.errors import InputError
from core.models import DOCUMENT, INSTRUCTION, LAST, QUERY, AttentionState, Ranker
from core.retrieval import relevance_pairs
from core.constants import PATCH_COMPONENTS, POSITION_GROUPS
from core.store import content_key

PATCH_VERSION = 3  # 2: correct_only, excluded pairs replaced; 3: a collection's own run gives
# the negatives (TREC DL's BM25 top-100), not bm25s over its passages
GROUP_CODES = {"instruction": INSTRUCTION, "query": QUERY, "document": DOCUMENT, "last": LAST}
TARGETS = (*PATCH_COMPONENTS, "head", "attn_scores")
METHODS = ("staged", "loop")
RESULT_COLUMNS = ["pair", "target", "layer", "group", "head", "value", "ie"]
CANDIDATES_PER_PAIR = 4  # queries tried per pair asked for, when pairs are excluded


@dataclass(frozen=True)
class PatchConfig:
    """One patching sweep. Defaults follow the study where it fixes them.

    Attributes:
        prompt: pointwise (clean = positive document, corrupted = negative) or pairwise
            (judges only; clean = positive first, corrupted = order swapped).
        pairs: prompt pairs to patch.
        split: queries of this split only (the demo collection's held-out queries are "test");
            None = every query.
        doc_tokens: documents are cut to min(this, both documents' lengths) tokens.
        min_gap: pairs with LD_clean − LD_corr below this are excluded and reported (IE is a
            ratio over that gap and explodes when it is near 0).
        correct_only: keep only pairs the model judges right (LD_clean − LD_corr ≥ min_gap),
            as the study analyses how a model reaches a correct judgment; False keeps pairs
            with |LD_clean − LD_corr| ≥ min_gap either way (IE then follows the model's own
            preference). Excluded pairs are replaced by the next candidates, up to ``tries``.
        pairs_per_query: candidate pairs per query (the i-th positive against the i-th hard
            negative); 1 = the study's one pair per query.
        tries: candidate pairs tried at most (None: ``CANDIDATES_PER_PAIR`` per pair asked
            for); a weak model's pairwise prompts may need many more.
        depth: negatives come from BM25 top-``depth`` non-relevant documents (study: 100).
        components: per-layer targets patched at every position group.
        groups: position groups for ``components``.
        head_groups: position groups at which each head's output is patched (study: last
            token and query positions); () skips heads.
        attention_scores: patch each head's attention weights between query and document tokens.
        method: ``staged`` (fast path) or ``loop`` (one full forward per patch; same numbers).
        batch_rows: patched runs per forward pass (staged).
    """

    prompt: str = "pointwise"
    pairs: int = 6
    split: str | None = "test"
    pairs_per_query: int = 1
    tries: int | None = None
    doc_tokens: int = 48
    min_gap: float = 0.5
    correct_only: bool = True
    depth: int = 100  # study: negatives from BM25 top-100
    components: tuple[str, ...] = PATCH_COMPONENTS
    groups: tuple[str, ...] = POSITION_GROUPS
    head_groups: tuple[str, ...] = ("last", "query")  # study: heads at last token and query
    attention_scores: bool = True
    method: str = "staged"
    batch_rows: int = 48

    def validate(self, ranker: Ranker | None = None) -> None:
        if self.prompt not in ("pointwise", "pairwise"):
            raise InputError(f"prompt must be pointwise or pairwise, got {self.prompt!r}")
        if ranker is not None and self.prompt == "pairwise" and ranker.kind != "llm-judge":
            raise InputError(f"{ranker.spec.name} is a {ranker.kind}: pairwise prompts need a "
                             "yes/no judge (llm-judge); use --prompt pointwise")
        if not 1 <= self.pairs <= 10_000:
            raise InputError(f"pairs must be between 1 and 10000, got {self.pairs}")
        if not 1 <= self.pairs_per_query <= 100:
            raise InputError("pairs_per_query must be between 1 and 100, got "
                             f"{self.pairs_per_query}")
        if self.tries is not None and self.tries < self.pairs:
            raise InputError(f"tries ({self.tries}) must be at least pairs ({self.pairs})")
        if self.doc_tokens < 4:
            raise InputError(f"doc_tokens must be at least 4, got {self.doc_tokens}")
        if self.min_gap < 0:
            raise InputError(f"min_gap must be ≥ 0, got {self.min_gap}")
        for name, values, allowed in (("components", self.components, PATCH_COMPONENTS),
                                      ("groups", self.groups, POSITION_GROUPS),
                                      ("head_groups", self.head_groups, POSITION_GROUPS)):
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise InputError(f"unknown {name}: {', '.join(unknown)}; choose from "
                                 f"{', '.join(allowed)}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.batch_rows < 1:
            raise InputError("batch_rows must be at least 1")

    def key_fields(self) -> dict:
        """What determines the numbers (method and batch size do not)."""
        fields = asdict(self)
        fields.pop("method")
        fields.pop("batch_rows")
        for added, default in (("pairs_per_query", 1), ("tries", None)):
            if fields[added] == default:  # added later: at their defaults, old keys stay valid
                fields.pop(added)
        return fields


@dataclass(frozen=True)
class Patch:
    """One patched run: ``target`` at ``layer`` over the positions of ``group`` (``head`` for
    head targets). For ``attn_scores`` the group names the attention direction."""

    target: str
    layer: int
    group: str
    head: int = -1


# --------------------------------------------------------------------------- prompt pairs
def prompt_pairs(collection: Collection, config: PatchConfig, *, skip_qids=(),
                 limit: int | None = None) -> pd.DataFrame:
    """The sweep's positive / negative pairs (:func:`core.retrieval.relevance_pairs` with the
    sweep's split, depth and pairs per query; at most ``limit`` rows, default
    ``config.pairs``)."""
    return relevance_pairs(collection, limit or config.pairs,
                           pairs_per_query=config.pairs_per_query, split=config.split,
                           depth=config.depth, skip_qids=skip_qids)


def encode_pair(ranker: Ranker, query: str, positive: str, negative: str, config: PatchConfig):
    """Clean and corrupted inputs in one batch of 2, documents cut to one token length.

    Returns:
        (encoded batch or None, reason it cannot be used or "", document tokens)
    """
    tokens = [ranker.count_tokens(d) for d in (positive, negative)]
    n = max(1, min(config.doc_tokens, *tokens))
    if config.prompt == "pairwise":
        enc = ranker.encode([query, query], [positive, negative], "pairwise",
                            documents_b=[negative, positive], doc_tokens=n)
    else:
        enc = ranker.encode([query, query], [positive, negative], doc_tokens=n)
    if not bool(enc.attention_mask.all()) or not torch.equal(enc.groups[0], enc.groups[1]):
        return None, "clean and corrupted positions do not align after truncation", n
    return enc, "", n


# --------------------------------------------------------------------------- one pair's caches
@dataclass
class PreparedPair:
    """The clean and corrupted runs of one pair, cached for patching.

    Shapes: ``groups`` ``[pos]``; ``block_inputs[l]`` (corrupted residual stream entering block
    l), ``clean[(target, l)]`` ``[pos, d]``; ``clean_heads[l]`` ``[pos, n_heads * head_dim]``;
    ``weights[l]`` ``[2, heads, pos, pos]`` (clean, corrupted); ``keys[l]`` corrupted
    (keys, values) ``[1, kv_heads, pos, d_head]``.
    """

    enc: object
    groups: torch.Tensor
    ld_clean: float
    ld_corr: float
    block_inputs: list
    clean: dict
    clean_heads: dict
    corrupted: dict
    corrupted_heads: dict
    weights: dict
    keys: dict
    call: object  # the corrupted row's core.models.BlockCall (masks, rotary tables …)
    n_positions: int
    direction: tuple[str, str] = ("query", "document")

    @property
    def gap(self) -> float:
        return self.ld_clean - self.ld_corr

    def positions(self, group: str) -> torch.Tensor:
        """Token positions of a group (``all``: every position)."""
        if group == "all":
            return torch.arange(self.n_positions, device=self.groups.device)
        return torch.nonzero(self.groups == GROUP_CODES[group]).flatten()


@torch.inference_mode()
def prepare_pair(ranker: Ranker, enc) -> PreparedPair:
    """One forward pass of [clean, corrupted] recording everything patching needs."""
    enc = enc.to(ranker.device)
    n_layers = ranker.n_layers
    component_paths = {(t, l): p for l in range(n_layers)
                       for t, p in ranker.component_paths(l).items() if t in PATCH_COMPONENTS}
    block_paths = [ranker.block_path(l) for l in range(n_layers)]
    head_paths = [ranker.head_input_path(l) for l in range(n_layers)]
    state = AttentionState(record_weights=True, record_keys=True)
    with ranker.attention_access(state):
        with ranker.capture(list(component_paths.values())) as outputs, \
                ranker.capture_inputs(block_paths + head_paths) as inputs:
            scores = ranker.forward(enc)
        call = ranker.block_call(enc)
    corrupted = torch.tensor([1], device=ranker.device)
    groups = enc.groups[0].clone()
    query_first = int(torch.nonzero(groups == QUERY).min()) < int(torch.nonzero(groups == DOCUMENT).min())
    direction = ("document", "query") if ranker.is_causal and query_first else ("query", "document")
    return PreparedPair(
        enc=enc, groups=groups, ld_clean=float(scores[0]), ld_corr=float(scores[1]),
        block_inputs=[inputs[p][1] for p in block_paths],
        clean={key: outputs[path][0] for key, path in component_paths.items()},
        clean_heads={l: inputs[p][0] for l, p in enumerate(head_paths)},
        corrupted={key: outputs[path][1] for key, path in component_paths.items()},
        corrupted_heads={l: inputs[p][1] for l, p in enumerate(head_paths)},
        weights={l: w.detach() for l, w in state.weights.items()},
        keys={l: (k[1:2].detach(), v[1:2].detach()) for l, (k, v) in state.keys.items()},
        call=call.rows(corrupted),
        n_positions=int(enc.input_ids.shape[1]), direction=direction)


# --------------------------------------------------------------------------- patched runs
def patch_positions(prepared: PreparedPair, patch: Patch) -> torch.Tensor:
    """Token positions a patch rewrites (for attention scores: the attending positions)."""
    if patch.target == "attn_scores":
        return prepared.positions(prepared.direction[0])
    return prepared.positions(patch.group)


def changes_nothing(ranker: Ranker, prepared: PreparedPair, patch: Patch) -> bool:
    """True when the clean values a patch writes equal the corrupted ones (e.g. query tokens
    that precede the document in a causal decoder): the patched run *is* the corrupted run."""
    positions = patch_positions(prepared, patch)
    if patch.target in PATCH_COMPONENTS:
        key = (patch.target, patch.layer)
        clean, corrupted = prepared.clean[key][positions], prepared.corrupted[key][positions]
    elif patch.target == "head":
        cols = slice(patch.head * ranker.head_dim, (patch.head + 1) * ranker.head_dim)
        clean = prepared.clean_heads[patch.layer][positions, cols]
        corrupted = prepared.corrupted_heads[patch.layer][positions, cols]
    else:
        attended = prepared.positions(prepared.direction[1])
        weights = prepared.weights[patch.layer][:, patch.head][:, positions][:, :, attended]
        clean, corrupted = weights[0], weights[1]
    return bool(torch.equal(clean, corrupted))


def _start(ranker: Ranker, prepared: PreparedPair, patch: Patch) -> int:
    """First position a patch can change (0 for encoders: every position sees every other)."""
    if not ranker.is_causal:
        return 0
    positions = patch_positions(prepared, patch)
    return int(positions.min()) if len(positions) else prepared.n_positions - 1


def setter_for_weights(mask: torch.Tensor, clean: torch.Tensor) -> Callable:
    """Attention-weight edit: clean weights where ``mask`` ``[rows, heads, q, k]`` is set."""
    return lambda weights: torch.where(mask, clean.to(weights.dtype), weights)


def _layer_hooks(ranker: Ranker, prepared: PreparedPair, patches: list[Patch | None],
                 layer: int, span: slice):
    """Setters (outputs, inputs) and an attention-weight edit that apply each row's patch at
    ``layer``; ``patches[r]`` is None for rows patched at another layer."""
    rows, width, device = len(patches), span.stop - span.start, ranker.device

    def row_mask(target: str, last_dim: int, head_slices: bool = False) -> torch.Tensor | None:
        mask = None
        for r, patch in enumerate(patches):
            if patch is None or patch.target != target:
                continue
            if mask is None:
                mask = torch.zeros(rows, width, last_dim, dtype=torch.bool, device=device)
            positions = patch_positions(prepared, patch) - span.start
            positions = positions[positions >= 0]
            if head_slices:
                cols = slice(patch.head * ranker.head_dim, (patch.head + 1) * ranker.head_dim)
                mask[r, positions, cols] = True
            else:
                mask[r, positions] = True
        return mask

    def setter(mask: torch.Tensor, clean: torch.Tensor) -> Callable:
        clean = clean[span].to(device)
        return lambda out: torch.where(mask, clean.to(out.dtype), out)

    paths = ranker.component_paths(layer)
    outputs, inputs, edit = {}, {}, None
    for target in PATCH_COMPONENTS:
        if (mask := row_mask(target, 1)) is not None:
            outputs[paths[target]] = setter(mask, prepared.clean[(target, layer)])
    if (mask := row_mask("head", ranker.n_heads * ranker.head_dim, head_slices=True)) is not None:
        inputs[ranker.head_input_path(layer)] = setter(mask, prepared.clean_heads[layer])
    if any(p is not None and p.target == "attn_scores" for p in patches):
        n = prepared.n_positions
        weight_mask = torch.zeros(rows, ranker.n_heads, width, n, dtype=torch.bool, device=device)
        attending = prepared.positions(prepared.direction[0]) - span.start
        attending = attending[attending >= 0]
        attended = prepared.positions(prepared.direction[1])
        for r, patch in enumerate(patches):
            if patch is not None and patch.target == "attn_scores":
                weight_mask[r, patch.head, attending.unsqueeze(1), attended.unsqueeze(0)] = True
        clean_weights = prepared.weights[layer][0, :, span]
        edit = setter_for_weights(weight_mask, clean_weights)
    return outputs, inputs, edit


def _patched_scores(ranker: Ranker, prepared: PreparedPair, patches: list[Patch],
                    start: int) -> torch.Tensor:
    """LD of the corrupted run with row r patched as ``patches[r]`` says ``-> [rows]``.

    ``patches`` are sorted by layer and all change nothing before position ``start``. The
    batch grows block by block: the rows patched at layer l join at block l with the corrupted
    residual stream entering it, so no block runs for a row below its patched layer, and in a
    causal decoder only positions ``start…`` are carried (keys and values of the earlier
    positions come from the corrupted run).
    """
    n, first = prepared.n_positions, patches[0].layer
    span = slice(start, n)
    state = AttentionState()
    if start > 0:
        state.prefix = {l: (k[:, :, :start], v[:, :, :start])
                        for l, (k, v) in prepared.keys.items() if l >= first}
    # masks and rotary tables keep batch 1 and broadcast over the patched rows
    call = prepared.call.suffix(start)
    hidden, joined = None, []
    with ranker.attention_access(state):
        for layer in range(first, ranker.n_layers):
            entering = [p for p in patches if p.layer == layer]
            if entering:
                fresh = prepared.block_inputs[layer][span].unsqueeze(0).expand(len(entering), -1, -1)
                hidden = fresh if hidden is None else torch.cat([hidden, fresh])
                joined += entering
            rows = [None] * (len(joined) - len(entering)) + entering
            outputs, inputs, edit = _layer_hooks(ranker, prepared, rows, layer, span) \
                if entering else ({}, {}, None)
            state.edit = {layer: edit} if edit is not None else {}
            with ranker.intervene(outputs), ranker.intervene_inputs(inputs):
                hidden = ranker.run_block(layer, hidden, call)
    scores = ranker.read_out(hidden[:, int(prepared.enc.last[1]) - start])
    order = {id(p): i for i, p in enumerate(joined)}
    return scores[torch.tensor([order[id(p)] for p in patches], device=scores.device)]


def _loop_score(ranker: Ranker, prepared: PreparedPair, patch: Patch) -> float:
    """The baseline: the whole corrupted input through the model once, with one patch."""
    span = slice(0, prepared.n_positions)
    outputs, inputs, edit = _layer_hooks(ranker, prepared, [patch], patch.layer, span)
    state = AttentionState(edit={patch.layer: edit} if edit is not None else {})
    enc = prepared.enc
    one = enc.rows(slice(1, 2))
    with ranker.attention_access(state), ranker.intervene(outputs), \
            ranker.intervene_inputs(inputs):
        return float(ranker.forward(one)[0])


def plan_patches(ranker: Ranker, prepared: PreparedPair, config: PatchConfig) -> list[Patch]:
    """Every patch of the sweep for one pair (groups absent from the input are skipped)."""
    present = [g for g in POSITION_GROUPS if len(prepared.positions(g))]
    patches = []
    for layer in range(ranker.n_layers):
        patches += [Patch(t, layer, g) for t in config.components for g in config.groups
                    if g in present]
        patches += [Patch("head", layer, g, h) for g in config.head_groups if g in present
                    for h in range(ranker.n_heads)]
        if config.attention_scores and all(g in present for g in prepared.direction):
            label = f"{prepared.direction[0]}→{prepared.direction[1]}"
            patches += [Patch("attn_scores", layer, label, h) for h in range(ranker.n_heads)]
    return patches


@torch.inference_mode()
def patch_pair(ranker: Ranker, prepared: PreparedPair, patches: list[Patch],
               method: str = "staged", batch_rows: int = 48) -> np.ndarray:
    """LD_patched for every patch ``-> [len(patches)]``."""
    out = np.empty(len(patches), dtype=np.float64)
    if method == "loop":
        for i, patch in enumerate(patches):
            out[i] = _loop_score(ranker, prepared, patch)
        return out
    buckets: dict[int, list[int]] = {}
    for i, patch in enumerate(patches):
        if changes_nothing(ranker, prepared, patch):
            out[i] = prepared.ld_corr
            continue
        buckets.setdefault(_start(ranker, prepared, patch), []).append(i)
    for start, members in buckets.items():
        members.sort(key=lambda i: patches[i].layer)
        for chunk in range(0, len(members), batch_rows):
            index = members[chunk:chunk + batch_rows]
            scores = _patched_scores(ranker, prepared, [patches[i] for i in index], start)
            out[index] = scores.double().cpu().numpy()
    return out


def interaction_scores(prepared: PreparedPair) -> pd.DataFrame:
    """Attention interaction per layer and head: s = Σ_{i∈A} max_{k∈B} A_ik over the attending
    group A and attended group B, for clean and corrupted runs; S = s(clean) − s(corrupted).

    The study's direction is query → document; a causal decoder whose prompt puts the query
    first cannot attend from query to document, so there A = document, B = query.
    """
    attending = prepared.positions(prepared.direction[0])
    attended = prepared.positions(prepared.direction[1])
    rows = []
    for layer, weights in sorted(prepared.weights.items()):
        block = weights[:, :, attending][:, :, :, attended]  # [2, heads, |A|, |B|]
        s = block.float().amax(dim=-1).sum(dim=-1)  # [2, heads]
        for head in range(s.shape[1]):
            rows.append((layer, head, float(s[0, head]), float(s[1, head])))
    frame = pd.DataFrame(rows, columns=["layer", "head", "s_clean", "s_corrupted"])
    frame["interaction"] = frame.s_clean - frame.s_corrupted
    return frame


# --------------------------------------------------------------------------- sweeps
def patch_key(ranker: Ranker, collection: Collection, config: PatchConfig) -> str:
    return content_key("patching", prefix="patch-", length=16, ranker=ranker.spec.key(),
                       collection=collection.content_hash, config=config.key_fields(),
                       version=PATCH_VERSION)


@dataclass
class PatchResult:
    key: str
    pairs: pd.DataFrame
    results: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0
    config: PatchConfig | None = None  # the sweep's settings (read back with a stored run)

    @property
    def used(self) -> pd.DataFrame:
        """Per-patch rows of the pairs kept (IE present)."""
        keep = set(self.pairs[self.pairs.status == "used"].pair)
        return self.results[self.results.pair.isin(keep)]


def load_patching(store, key: str) -> PatchResult | None:
    """A stored sweep with its settings, without loading the model (None: no such run)."""
    import json

    runs = store.patch_runs()
    run = runs[runs.patch_key == key]
    if run.empty:
        return None
    stored = {k: tuple(v) if isinstance(v, list) else v
              for k, v in json.loads(run.iloc[0].config).items()}
    pairs, results = store.patch_results(key)
    return PatchResult(key, pairs, results, stopped=run.iloc[0].status != "done",
                       config=PatchConfig(**stored))


def stored_sweeps(store, ranker: str, collection: str) -> list[dict[str, PatchResult]]:
    """The finished sweeps of ``ranker`` on ``collection`` in the store, newest first, each
    as ``{prompt: result}`` with its pointwise / pairwise twin (the same settings but the
    prompt) beside it when that is stored too — what the Patching page draws after a
    restart."""
    import json

    runs = store.patch_runs()
    runs = runs[(runs.status == "done") & (runs.ranker == ranker)
                & (runs.collection == collection)].iloc[::-1]
    settings = {r.patch_key: json.loads(r.config) for r in runs.itertuples()}
    views, seen = [], set()
    for key, config in settings.items():
        if key in seen:
            continue
        twins = [k for k, c in settings.items() if k not in seen and
                 {**c, "prompt": ""} == {**config, "prompt": ""}]
        seen.update(twins)
        loaded = [load_patching(store, k) for k in twins]
        views.append({r.config.prompt: r for r in sorted(loaded, key=lambda r: r.config.prompt,
                                                         reverse=True)})
    return views


def run_patching(ranker: Ranker, collection: Collection, config: PatchConfig, store=None, *,
                 progress: Callable[[int, int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> PatchResult:
    """Patch every target for each prompt pair; resumable per pair through ``store``.

    Returns per-pair rows (``pairs``: LD_clean, LD_corr, status, tokens) and per-patch rows
    (``results``: pair, target, layer (1-based), group, head, value = LD_patched — or S for
    target ``interaction`` — and ie).
    """
    config.validate(ranker)
    started = time.perf_counter()
    key = patch_key(ranker, collection, config)
    tries = config.tries or config.pairs * CANDIDATES_PER_PAIR
    pairs = prompt_pairs(collection, config, limit=tries)
    notes = []
    if store is not None:
        store.begin_patch(key, ranker=ranker.spec.name, collection=collection.name,
                          config=config.key_fields(), n_pairs=config.pairs)
        stored, _ = store.patch_results(key)
        done = set(stored.pair)
        used = int((stored.status == "used").sum())
    else:
        done, used = set(), 0
    state = {"used": used}

    def compute(index, row):
        if progress:
            progress(state["used"], config.pairs,
                     f"pair {state['used'] + 1}/{config.pairs}: query {row.qid}")
        pair_row, frame = _sweep_pair(ranker, config, index, row)
        state["used"] += pair_row["status"] == "used"
        return pair_row, frame

    def write(index, row, output):
        store.write_patch_pair(key, *output)

    outputs, stopped = drive(list(pairs.itertuples(index=False)), compute, done=done,
                             write=write if store is not None else None,
                             should_stop=should_stop,
                             enough=lambda: state["used"] >= config.pairs)
    used = state["used"]
    pair_rows = [pair_row for pair_row, _ in outputs]
    result_frames = [frame for _, frame in outputs]
    if used < config.pairs and not stopped:
        notes.append(f"{used} of the {config.pairs} pairs asked for could be used ({len(pairs)} "
                     "candidate pairs of a relevant document and a BM25 negative were tried; "
                     "--tries or --pairs-per-query offer more)")
    if progress and not stopped:
        progress(config.pairs, config.pairs, "done")
    if store is not None:
        if not stopped:
            store.finish_patch(key)
        pair_frame, results = store.patch_results(key)
    else:
        pair_frame = pd.DataFrame(pair_rows)
        results = (pd.concat(result_frames, ignore_index=True) if result_frames
                   else pd.DataFrame(columns=RESULT_COLUMNS))
    excluded = pair_frame[pair_frame.status != "used"] if len(pair_frame) else pair_frame
    for item in excluded.itertuples(index=False):
        notes.append(f"pair {item.pair + 1} (query {item.qid}) excluded: {item.status}")
    return PatchResult(key, pair_frame, results, notes, stopped, time.perf_counter() - started,
                       config)


def _sweep_pair(ranker: Ranker, config: PatchConfig, index: int, row) -> tuple[dict, pd.DataFrame]:
    enc, reason, doc_tokens = encode_pair(ranker, row.query, row.positive, row.negative, config)
    pair_row = {"pair": index, "qid": str(row.qid), "positive_docno": str(row.positive_docno),
                "negative_docno": str(row.negative_docno), "doc_tokens": doc_tokens,
                "n_tokens": 0, "ld_clean": float("nan"), "ld_corr": float("nan"),
                "status": reason or "used", "tokens": "[]"}
    if enc is None:
        return pair_row, pd.DataFrame(columns=RESULT_COLUMNS)
    prepared = prepare_pair(ranker, enc)
    pair_row.update(n_tokens=prepared.n_positions, ld_clean=prepared.ld_clean,
                    ld_corr=prepared.ld_corr, tokens=json.dumps(_tokens(ranker, enc),
                                                                ensure_ascii=False))
    if config.correct_only and prepared.gap < config.min_gap:
        pair_row["status"] = (f"LD_clean − LD_corr = {prepared.gap:.3f} is below min_gap "
                              f"{config.min_gap}" + (" (the model prefers the negative document)"
                                                     if prepared.gap < 0 else ""))
        return pair_row, pd.DataFrame(columns=RESULT_COLUMNS)
    if abs(prepared.gap) < config.min_gap:
        pair_row["status"] = (f"|LD_clean − LD_corr| = {abs(prepared.gap):.3f} is below "
                              f"min_gap {config.min_gap}")
        return pair_row, pd.DataFrame(columns=RESULT_COLUMNS)
    patches = plan_patches(ranker, prepared, config)
    patched = patch_pair(ranker, prepared, patches, config.method, config.batch_rows)
    frame = pd.DataFrame({
        "pair": index, "target": [p.target for p in patches],
        "layer": [p.layer + 1 for p in patches], "group": [p.group for p in patches],
        "head": [p.head for p in patches], "value": patched,
        "ie": (patched - prepared.ld_corr) / prepared.gap})
    interaction = interaction_scores(prepared)
    frame = pd.concat([frame, pd.DataFrame({
        "pair": index, "target": "interaction", "layer": interaction.layer + 1,
        "group": f"{prepared.direction[0]}→{prepared.direction[1]}", "head": interaction["head"],
        "value": interaction.interaction, "ie": np.nan})], ignore_index=True)
    return pair_row, frame[RESULT_COLUMNS]


def _tokens(ranker: Ranker, enc) -> list[list]:
    """[[token, clean group, corrupted token]] for the clickable token view."""
    from core.models import GROUP_NAMES

    clean = ranker.token_texts(enc.input_ids[0].tolist())
    corrupted = ranker.token_texts(enc.input_ids[1].tolist())
    return [[a, GROUP_NAMES[int(g)], b] for a, b, g in zip(clean, corrupted, enc.groups[0].tolist())]


# --------------------------------------------------------------------------- summaries (tidy)
def edit_effects(ranker: Ranker, query: str, original: str, edited: str,
                 prompt: str = "pointwise") -> tuple[pd.DataFrame, dict]:
    """Where an edit acts: activation patching between a document and its edited version.

    Both directions, one (component, layer, position group) at a time with the staged sweep:
    ``edited→original`` patches the edited run's activation into the original's run, IE =
    (patched − s(original)) / (s(edited) − s(original)) — how much of the edit's effect that one
    activation carries; ``original→edited`` patches the original's into the edited run, IE =
    (patched − s(edited)) / (s(original) − s(edited)) — how much of it is undone there.

    Returns ``(frame [direction, target, layer, group, head, value, ie], info)``, rows shaped
    as :func:`mean_effects` reads them, ``info`` the two scores and the token count.

    Raises:
        InputError: the two documents do not align token for token (patching needs the same
            positions), or the edit does not change the score (nothing to localise).
    """
    from core.data import check_user_text

    for what, text in (("query", query), ("document", original), ("edited document", edited)):
        check_user_text(what, text)
    if original.strip() == edited.strip():
        raise InputError("the edited document is the original: edit it first")
    lengths = (ranker.count_tokens(original), ranker.count_tokens(edited))
    if lengths[0] != lengths[1]:
        raise InputError(
            f"the edit changes the document's length from {lengths[0]} to {lengths[1]} tokens, "
            "so no position of one run matches a position of the other; patching needs "
            "aligned positions — replace words by words of the same token length (a synonym, "
            "a name) to see where an edit acts")
    config = PatchConfig(prompt=prompt, components=PATCH_COMPONENTS, head_groups=(),
                         attention_scores=False, doc_tokens=ranker.spec.max_length,
                         min_gap=0.0, correct_only=False)
    frames, info = [], {"tokens": lengths[0]}
    for direction, clean, corrupted in (("edited→original", edited, original),
                                        ("original→edited", original, edited)):
        enc, reason, _ = encode_pair(ranker, query, clean, corrupted, config)
        if enc is None:
            raise InputError(f"the two documents cannot be patched into each other: {reason}")
        prepared = prepare_pair(ranker, enc)
        if abs(prepared.gap) < 1e-6:
            raise InputError("the edit does not change the score: there is no effect to locate")
        info[direction] = (prepared.ld_corr, prepared.ld_clean)
        patches = plan_patches(ranker, prepared, config)
        values = patch_pair(ranker, prepared, patches)
        frames.append(pd.DataFrame({
            "direction": direction, "target": [q.target for q in patches],
            "layer": [q.layer + 1 for q in patches], "group": [q.group for q in patches],
            "head": [q.head for q in patches], "value": values,
            "ie": (values - prepared.ld_corr) / prepared.gap}))
    info["score_original"], info["score_edited"] = info["edited→original"]
    return pd.concat(frames, ignore_index=True), info


def mean_effects(results: pd.DataFrame) -> pd.DataFrame:
    """Mean / sd / count of IE per (target, layer, group, head) over the pairs kept."""
    data = results[results.target != "interaction"]
    grouped = data.groupby(["target", "layer", "group", "head"], as_index=False).ie
    return grouped.agg(ie_mean="mean", ie_sd="std", pairs="count").fillna({"ie_sd": 0.0})


def layer_rankings(effects: pd.DataFrame) -> dict[tuple[str, str], list[int]]:
    """(component, group) → layers ordered by mean IE, highest first (ties: lower layer);
    a component whose IE is the same at every layer (e.g. 0 everywhere) has no ranking."""
    out = {}
    for (target, group), frame in effects[effects.target.isin(PATCH_COMPONENTS)].groupby(["target", "group"]):
        if frame.ie_mean.nunique() < 2:
            continue
        ordered = frame.sort_values(["ie_mean", "layer"], ascending=[False, True])
        out[(target, group)] = ordered.layer.astype(int).tolist()
    return out


def rbo_table(pointwise: pd.DataFrame, pairwise: pd.DataFrame, p: float = 0.7) -> pd.DataFrame:
    """RBO (Webber et al. 2010, p = 0.7 as the study) of pointwise vs pairwise layer rankings
    per component and position group, from two :func:`mean_effects` frames."""
    from core.metrics import rank_biased_overlap

    left, right = layer_rankings(pointwise), layer_rankings(pairwise)
    keys = {tuple(k) for k in pd.concat([pointwise, pairwise])[["target", "group"]]
            .drop_duplicates().itertuples(index=False) if k[0] in PATCH_COMPONENTS}
    rows = [(target, group, rank_biased_overlap(left[(target, group)], right[(target, group)], p)
             if (target, group) in left and (target, group) in right else float("nan"),
             left.get((target, group), [])[:3], right.get((target, group), [])[:3])
            for target, group in sorted(keys)]
    return pd.DataFrame(rows, columns=["component", "group", "rbo", "top layers (pointwise)",
                                       "top layers (pairwise)"])


def head_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head): mean IE of its output at each head group, of its attention scores,
    and mean interaction S — the scatter's data."""
    data = results[results.target.isin(["head", "attn_scores", "interaction"])]
    if data.empty:
        return pd.DataFrame(columns=["layer", "head"])
    data = data.assign(column=np.where(data.target == "head", "head IE @ " + data.group,
                                       np.where(data.target == "attn_scores", "attention-score IE",
                                                "interaction S")),
                       measure=np.where(data.target == "interaction", data.value, data.ie))
    table = data.pivot_table(index=["layer", "head"], columns="column", values="measure",
                             aggfunc="mean").reset_index()
    table.columns.name = None
    return table


def correlations(table: pd.DataFrame, x: str, ys: list[str]) -> pd.DataFrame:
    """Pearson and Spearman correlation of column ``x`` with each of ``ys`` over heads."""
    rows = []
    for y in ys:
        if x not in table or y not in table:
            continue
        pair = table[[x, y]].dropna()
        if len(pair) < 3 or pair[x].std() == 0 or pair[y].std() == 0:
            continue
        rows.append((x, y, len(pair), float(pair[x].corr(pair[y])),
                     float(pair[x].corr(pair[y], method="spearman"))))
    return pd.DataFrame(rows, columns=["x", "y", "heads", "pearson", "spearman"])


def top_heads(effects: pd.DataFrame, group: str | None, k: int) -> list[tuple[int, int, str]]:
    """The ``k`` heads with the highest mean IE at ``group`` (None: every group mixed) as
    (layer 0-based, head, group)."""
    heads = effects[effects.target == "head"]
    if group is not None:
        heads = heads[heads.group == group]
    heads = heads.sort_values(["ie_mean", "layer", "head"], ascending=[False, True, True])
    heads = heads.drop_duplicates(["layer", "head"]).head(k)
    return [(int(r.layer) - 1, int(r.head), str(r.group)) for r in heads.itertuples()]


@torch.inference_mode()
def head_top_tokens(ranker: Ranker, collection: Collection, config: PatchConfig,
                    heads: list[tuple[int, int]], k: int = 10, pairs: int = 4) -> pd.DataFrame:
    """Project each head's mean output at the last token of clean inputs through the
    unembedding (logit lens on a head): its top-``k`` tokens."""
    frame = prompt_pairs(collection, replace(config, pairs=pairs))
    sums: dict[tuple[int, int], torch.Tensor] = {}
    count = 0
    layers = sorted({layer for layer, _ in heads})
    paths = [ranker.head_input_path(layer) for layer in layers]
    for row in frame.itertuples(index=False):
        enc, reason, _ = encode_pair(ranker, row.query, row.positive, row.negative, config)
        if enc is None:
            continue
        enc = enc.to(ranker.device)
        with ranker.capture_inputs(paths) as inputs:
            ranker.forward(enc)
        last = int(enc.last[0])
        for layer, head in heads:
            cols = slice(head * ranker.head_dim, (head + 1) * ranker.head_dim)
            vector = ranker.head_output(layer, head, inputs[ranker.head_input_path(layer)][0, last:last + 1, cols])
            sums[(layer, head)] = sums.get((layer, head), 0) + vector.float()
        count += 1
    if not count:
        return pd.DataFrame(columns=["layer", "head", "rank", "token", "logit"])
    rows = []
    for (layer, head), total in sums.items():
        for rank, (token, logit) in enumerate(ranker.unembed(total / count, k)[0], start=1):
            rows.append((layer + 1, head, rank, token, logit))
    return pd.DataFrame(rows, columns=["layer", "head", "rank", "token", "logit"])
