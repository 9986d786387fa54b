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

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from core.analysis import option
from core.data import Collection
from core.errors import InputError
from core.models import DOCUMENT, INSTRUCTION, LAST, QUERY, AttentionState, Ranker
from core.retrieval import relevance_pairs
from core.constants import PATCH_COMPONENTS, POSITION_GROUPS, PROMPTS

PATCH_VERSION = 3  # 2: correct_only, excluded pairs replaced; 3: a collection's own run gives
# the negatives (TREC DL's BM25 top-100), not bm25s over its passages
GROUP_CODES = {"instruction": INSTRUCTION, "query": QUERY, "document": DOCUMENT, "last": LAST}
TARGETS = (*PATCH_COMPONENTS, "head", "attn_scores")
METHODS = ("staged", "loop")
RESULT_COLUMNS = ["pair", "target", "layer", "group", "head", "value", "ie"]
CANDIDATES_PER_PAIR = 4  # queries tried per pair asked for, when pairs are excluded


@dataclass(frozen=True)
class PatchConfig:
    """One patching sweep; defaults follow the study where it fixes them. Each field's help
    is its CLI flag's and its page widget's (:mod:`core.analysis`).

    ``correct_only``: the study analyses how a model reaches a correct judgment, so only pairs
    with LD_clean − LD_corr ≥ ``min_gap`` are kept; off, pairs with |LD_clean − LD_corr| ≥
    ``min_gap`` either way (IE then follows the model's own preference). Excluded pairs are
    replaced by the next candidates, up to ``tries``. ``method`` and ``batch_rows`` change
    speed, never numbers, so they are not part of the store key (:meth:`key_fields`).
    """

    prompt: str = option("pointwise", "pointwise: clean = a relevant document, corrupted = a "
                                      "hard non-relevant one; pairwise (yes/no judges only): "
                                      "both documents, order swapped", choices=PROMPTS,
                         label="Prompt")
    pairs: int = option(6, "prompt pairs to patch (a SmolLM2 pair takes ≈20–70 s on a CPU, a "
                           "MiniLM pair ≈2 s)", label="Pairs", minimum=1)
    split: str = option("test", "only queries of this split (demo: test; '' for all)",
                        label="Query split")
    pairs_per_query: int = option(1, "candidate pairs per query: its i-th relevant document "
                                     "against its i-th hard negative (the study: 1)",
                                  label="Pairs per query", minimum=1)
    tries: int = option(0, "candidate pairs tried at most (0: 4 per pair asked for); a weak "
                           "model's pairwise prompts may need many more",
                        label="Candidate pairs tried", minimum=0)
    doc_tokens: int = option(48, "documents are cut to at most this many tokens (both to the "
                                 "same length, so positions align)",
                             label="Document tokens (max)", minimum=4)
    min_gap: float = option(0.5, "pairs with LD_clean − LD_corr below this are excluded and "
                                 "replaced by the next candidate (IE divides by this gap)",
                            label="Min LD_clean − LD_corr", minimum=0.0)
    correct_only: bool = option(True, "keep only pairs the model judges right, as the study "
                                      "(off: any pair with a large enough gap either way)",
                                label="Only pairs judged right")
    depth: int = option(100, "negatives come from the first stage's top-k non-relevant "
                             "documents (study: 100)", label="Negatives from the top",
                        minimum=1)
    components: tuple[str, ...] = option(PATCH_COMPONENTS, "per-layer targets patched at "
                                                           "every position group",
                                         choices=PATCH_COMPONENTS, label="Components")
    groups: tuple[str, ...] = option(POSITION_GROUPS, "position groups for the components",
                                     choices=POSITION_GROUPS, label="Position groups")
    head_groups: tuple[str, ...] = option(("last", "query"), "position groups at which each "
                                                            "head's output is patched (none: "
                                                            "skip heads)",
                                          choices=POSITION_GROUPS, label="Patch heads at")
    attention_scores: bool = option(True, "patch each head's attention weights between "
                                          "query and document tokens",
                                    label="Patch attention scores")
    method: str = option("staged", "staged (fast) or loop (one full forward per patch; the "
                                   "same numbers)", choices=METHODS, label="Method")
    batch_rows: int = option(48, "patched runs per forward pass (staged; memory)",
                             label="Patched runs per pass", minimum=1)

    def validate(self, ranker: Ranker | None = None) -> None:
        """What the field metadata cannot say (and, given a ranker, what it needs)."""
        if ranker is not None and self.prompt == "pairwise" and ranker.kind != "llm-judge":
            raise InputError(f"{ranker.spec.name} is a {ranker.kind}: pairwise prompts need a "
                             "yes/no judge (llm-judge); use --prompt pointwise")
        if self.tries and self.tries < self.pairs:
            raise InputError(f"candidate pairs tried ({self.tries}) must be at least pairs "
                             f"({self.pairs}), or 0 for 4 per pair")

    @property
    def candidates(self) -> int:
        """Candidate pairs tried at most."""
        return self.tries or self.pairs * CANDIDATES_PER_PAIR

    def key_fields(self) -> dict:
        """What determines the numbers (method and batch size do not), as keyed since
        version 1: an empty split and 0 tries are stored as None."""
        fields = asdict(self)
        fields.pop("method")
        fields.pop("batch_rows")
        fields["split"] = self.split or None
        fields["tries"] = self.tries or None
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
                           pairs_per_query=config.pairs_per_query, split=config.split or None,
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


def _tokens(ranker: Ranker, enc) -> list[list]:
    """[[token, clean group, corrupted token]] for the clickable token view."""
    from core.models import GROUP_NAMES

    clean = ranker.token_texts(enc.input_ids[0].tolist())
    corrupted = ranker.token_texts(enc.input_ids[1].tolist())
    return [[a, GROUP_NAMES[int(g)], b] for a, b, g in zip(clean, corrupted, enc.groups[0].tolist())]


# --------------------------------------------------------------------------- an edit's effects
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
