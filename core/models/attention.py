"""Attention access: RankScope's eager attention function records attention weights, edits
them, and prepends cached keys (patching reruns only the positions a patch can change)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from core.hooks import model_lock

@dataclass
class AttentionState:
    """What RankScope's attention function records or changes inside one ``with`` block.

    Shapes: weights ``[batch, heads, q_pos, k_pos]``; keys/values ``[batch, kv_heads, pos, d_head]``
    (after rotary embeddings, before grouped-query repetition).

    Attributes:
        record_weights: keep each layer's attention weights in ``weights``.
        record_keys: keep each layer's keys and values in ``keys``.
        prefix: layer → (keys, values) prepended to the keys of this call: a causal model then
            runs only the suffix of a sequence whose prefix it has seen (patching skips every
            position a patch cannot change).
        edit: layer → function rewriting that layer's attention weights (attention patching).
    """

    record_weights: bool = False
    record_keys: bool = False
    weights: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    prefix: dict = field(default_factory=dict)
    edit: dict = field(default_factory=dict)
    layer_of: dict = field(default_factory=dict)


# attention module id -> the state of the attention_access block open on its model (the
# model's lock makes that one block at a time per model)
_ATTENTION_STATES: dict[int, AttentionState] = {}
_ATTENTION_NAME = "rankscope_eager"


def _rankscope_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Eager attention (as transformers' reference) with the hooks of :class:`AttentionState`."""
    state = _ATTENTION_STATES.get(id(module)) or AttentionState()
    layer = state.layer_of.get(id(module))
    if state.record_keys:
        state.keys[layer] = (key, value)
    if layer in state.prefix:
        prefix_key, prefix_value = state.prefix[layer]
        batch = query.shape[0]
        key = torch.cat([prefix_key.expand(batch, -1, -1, -1), key], dim=2)
        value = torch.cat([prefix_value.expand(batch, -1, -1, -1), value], dim=2)
    repeats = getattr(module, "num_key_value_groups", 1)
    if repeats > 1:
        key = key.repeat_interleave(repeats, dim=1)
        value = value.repeat_interleave(repeats, dim=1)
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask[..., : key.shape[-2]]
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    if layer in state.edit:
        weights = state.edit[layer](weights)
    if state.record_weights:
        state.weights[layer] = weights
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    if _ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(_ATTENTION_NAME, _rankscope_attention)
        AttentionMaskInterface.register(_ATTENTION_NAME, eager_mask)




@contextlib.contextmanager
def attention_access(model, attention_paths: list[str], state: AttentionState):
    """Run ``model``'s attention through RankScope's eager function inside the block (records /
    edits weights, prepends cached keys); the model's own implementation is restored after."""
    _register_attention()
    state.layer_of = {id(model.get_submodule(path)): layer
                      for layer, path in enumerate(attention_paths)}
    configs = {id(m.config): m.config for m in model.modules()
               if getattr(m, "config", None) is not None and hasattr(m.config, "_attn_implementation")}
    configs[id(model.config)] = model.config
    before = {key: config._attn_implementation for key, config in configs.items()}
    with model_lock(model):
        # keyed by this model's attention modules: another session's block on another model
        # (its own lock) never sees this state, nor this model that one's
        outer = {module: _ATTENTION_STATES.get(module) for module in state.layer_of}
        _ATTENTION_STATES.update(dict.fromkeys(state.layer_of, state))
        try:
            for config in configs.values():
                config._attn_implementation = _ATTENTION_NAME
            yield state
        finally:
            for module, previous in outer.items():  # a nested block restores the outer one
                if previous is None:
                    _ATTENTION_STATES.pop(module, None)
                else:
                    _ATTENTION_STATES[module] = previous
            for key, config in configs.items():
                config._attn_implementation = before[key]
