"""Running parts of a model: the blocks from a layer on, given a residual stream (patching's
staged runs, the Shapley check's knock-outs), the head read through the unembedding.

:class:`BlockRunner` is the part of :class:`core.models.Ranker` that runs blocks; it uses the
Ranker's model, layout and head, so it lives in this package. :class:`BlockCall` carries what a
block receives besides the residual stream, opaque to the analyses.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from core import hooks as hooks_module
from core.hooks import model_lock
from core.models.inputs import Encoded


class BlockRunner:
    """Mixed into :class:`core.models.Ranker`."""

    def block_call(self, enc: Encoded) -> "BlockCall":
        """What every block receives for ``enc`` besides the residual stream (masks, rotary
        embeddings …), captured from block 0 of a forward pass without running the rest."""
        args, kwargs = hooks_module.call_arguments(self.model, self.block_path(0),
                                                   lambda: self.forward(enc))
        kwargs = dict(kwargs)
        if "past_key_values" in kwargs:  # never let a key/value cache grow across calls
            kwargs["past_key_values"] = None
        return BlockCall(args, kwargs, int(enc.input_ids.shape[0]))

    def run_blocks(self, hidden: torch.Tensor, start: int, call: "BlockCall",
                   stop: int | None = None) -> torch.Tensor:
        """Blocks ``start … stop-1`` (default: to the last) on residual-stream input
        ``hidden [batch, pos, d]``."""
        blocks = self.model.get_submodule(self.blocks_path)
        with model_lock(self.model):
            for layer in range(start, self.n_layers if stop is None else stop):
                out = blocks[layer](hidden, *call.args, **call.kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def run_block(self, layer: int, hidden: torch.Tensor, call: "BlockCall") -> torch.Tensor:
        """Block ``layer`` alone on residual-stream input ``hidden [batch, pos, d]``."""
        return self.run_blocks(hidden, layer, call, stop=layer + 1)

    @torch.inference_mode()
    def residual_ablation(self, queries: list[str], documents: list[str], layer: int,
                          mode: str = "mean") -> Callable[[list], np.ndarray]:
        """Scores of one batch of pairs with residual-stream dimensions knocked out after
        block ``layer`` (0-based) at every token: one forward pass now, then
        ``scores(dimension_sets) -> [len(dimension_sets), n]``, each set's dimensions set to
        their mean over the batch's tokens (``mean``) or to 0 (``zero``) and the blocks above
        re-run (after the last block only the output position reaches the head)."""
        enc = self.encode(queries, documents).to(self.device)
        path = self.block_path(layer)
        with self.capture([path]) as states:
            self.forward(enc)
        hidden = states[path]  # [n, pos, d]
        fill = (hidden[enc.attention_mask.bool()].mean(0) if mode == "mean"
                else torch.zeros(self.d_model, dtype=hidden.dtype, device=hidden.device))
        rows = torch.arange(len(queries), device=hidden.device)
        call = self.block_call(enc) if layer < self.n_layers - 1 else None
        base = hidden if call is not None else hidden[rows, enc.last]

        @torch.inference_mode()
        def scores(dimension_sets: list) -> np.ndarray:
            out = []
            for dims in dimension_sets:
                h = base.clone()
                if len(dims):
                    index = torch.as_tensor(np.asarray(dims), device=h.device)
                    h[..., index] = fill[index]
                if call is not None:
                    h = self.run_blocks(h, layer + 1, call)[rows, enc.last]
                out.append(self.read_out(h).float().cpu().numpy())
            return np.stack(out)

        return scores

    @torch.inference_mode()
    def unembed(self, vectors: torch.Tensor, k: int = 10) -> list[list[tuple[str, float]]]:
        """Top-``k`` vocabulary tokens of residual-stream vectors ``[n, d]`` read through the
        final norm and the unembedding (the output embeddings, else the tied input ones)."""
        matrix = getattr(self.model, "get_output_embeddings", lambda: None)()
        matrix = (matrix if matrix is not None else self.model.get_input_embeddings()).weight
        if self.is_causal:
            vectors = self._layout.final_norm(vectors.to(self.dtype))
        values, index = (vectors.float() @ matrix.float().T).topk(k, dim=-1)
        return [[(self.tokenizer.decode([int(i)]), float(v)) for i, v in zip(row_i, row_v)]
                for row_i, row_v in zip(index.tolist(), values.tolist())]

    def head_output(self, layer: int, head: int, head_input: torch.Tensor) -> torch.Tensor:
        """One head's contribution to the residual stream: its slice of the output
        projection's input ``[n, head_dim]`` times its columns of the projection ``-> [n, d]``."""
        projection = self.model.get_submodule(self.head_input_path(layer))
        columns = slice(head * self.head_dim, (head + 1) * self.head_dim)
        return head_input.to(projection.weight.dtype) @ projection.weight[:, columns].T


class BlockCall:
    """The arguments a block receives besides the residual stream, kept opaque: analyses
    select rows of it or cut it to a suffix of positions, never read what is inside (the
    transformers keyword arguments differ by architecture and version)."""

    def __init__(self, args: tuple, kwargs: dict, batch: int):
        self.args, self.kwargs, self.batch = args, kwargs, batch

    def rows(self, index: torch.Tensor) -> "BlockCall":
        """The call for rows ``index`` of the batch (every tensor whose first dimension is
        the batch is indexed; masks and tables shared by the batch are kept)."""
        def select(value):
            if isinstance(value, torch.Tensor):
                return (value.index_select(0, index) if value.dim() and value.shape[0] == self.batch
                        else value)
            if isinstance(value, (tuple, list)):
                return type(value)(select(v) for v in value)
            if isinstance(value, dict):
                return {k: select(v) for k, v in value.items()}
            return value

        return BlockCall(select(self.args), select(self.kwargs), len(index))

    def suffix(self, start: int) -> "BlockCall":
        """The call for positions ``start…`` of a causal decoder (mask rows, rotary embeddings
        and position ids of the suffix; the keys of the prefix come from a cache)."""
        if start == 0:
            return self
        kwargs = dict(self.kwargs)
        if isinstance(kwargs.get("attention_mask"), torch.Tensor):
            kwargs["attention_mask"] = kwargs["attention_mask"][..., start:, :]
        if kwargs.get("position_embeddings") is not None:
            kwargs["position_embeddings"] = tuple(t[:, start:] for t in kwargs["position_embeddings"])
        for name in ("position_ids", "cache_position"):
            if isinstance(kwargs.get(name), torch.Tensor):
                kwargs[name] = kwargs[name][..., start:]
        return BlockCall(self.args, kwargs, self.batch)
