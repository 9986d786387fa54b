"""Architecture layouts: where a model family keeps its blocks, attention, MLP, head inputs and
final norm. Every module path an analysis hooks comes from here; adding an architecture is one
:class:`Layout` subclass in :data:`LAYOUTS`."""

from __future__ import annotations

import torch

from core.errors import InputError, ModelLoadError


class Layout:
    """Module paths of one loaded model. Subclasses say which blocks they recognise."""

    family = "generic"

    def __init__(self, model, blocks_path: str):
        self.model = model
        self.blocks_path = blocks_path
        self.body_path = blocks_path.rsplit(".", 1)[0]

    @staticmethod
    def recognises(block: torch.nn.Module) -> bool:
        return True

    def block_path(self, layer: int) -> str:
        return f"{self.blocks_path}.{layer}"

    def component_paths(self, layer: int) -> dict[str, str]:
        """Module paths whose outputs are the block's residual stream, attention and MLP
        contributions (only the residual stream where the family is unknown)."""
        return {"resid": self.block_path(layer)}

    def attention_path(self, layer: int) -> str:
        """The module that calls the attention function in block ``layer``."""
        raise InputError(f"RankScope does not know where this {type(self.model).__name__} "
                         "keeps its attention; attention-level analyses need a BERT- or "
                         "Llama-like model")

    def head_input_path(self, layer: int) -> str:
        """The module whose *input* holds the concatenated head outputs of ``layer``."""
        return self.attention_path(layer)

    def body(self) -> torch.nn.Module:
        return self.model.get_submodule(self.body_path)

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """The norm between the last block and the output head (decoders); else unchanged."""
        return hidden

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooler between the output position and a classifier head (BERT); else unchanged."""
        return hidden


class LlamaLayout(Layout):
    """Llama-family decoders (Llama, Mistral, Qwen2, SmolLM2): ``model.layers.i.self_attn``,
    ``.mlp``, attention output ``self_attn.o_proj``, final ``model.norm``."""

    family = "llama"

    @staticmethod
    def recognises(block: torch.nn.Module) -> bool:
        return hasattr(block, "self_attn")

    def component_paths(self, layer: int) -> dict[str, str]:
        block = self.block_path(layer)
        return {"resid": block, "attn": f"{block}.self_attn", "mlp": f"{block}.mlp"}

    def attention_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.self_attn"

    def head_input_path(self, layer: int) -> str:
        return f"{self.attention_path(layer)}.o_proj"

    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        body = self.body()
        return body.norm(hidden) if hasattr(body, "norm") else hidden


class BertLayout(Layout):
    """BERT-family encoders (BERT, MiniLM): ``encoder.layer.i.attention.self``, attention output
    ``attention.output.dense`` (also the head-mixing projection), FFN output ``output.dense``."""

    family = "bert"

    @staticmethod
    def recognises(block: torch.nn.Module) -> bool:
        return hasattr(block, "attention") and hasattr(block, "output")

    def component_paths(self, layer: int) -> dict[str, str]:
        block = self.block_path(layer)
        return {"resid": block, "attn": f"{block}.attention.output.dense",
                "mlp": f"{block}.output.dense"}

    def attention_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.attention.self"

    def head_input_path(self, layer: int) -> str:
        return f"{self.block_path(layer)}.attention.output.dense"

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        pooler = getattr(getattr(self.model, "bert", None), "pooler", None)
        return pooler.activation(pooler.dense(hidden)) if pooler is not None else hidden


LAYOUTS: tuple[type[Layout], ...] = (LlamaLayout, BertLayout)


def detect_layout(model, n_layers: int, name: str) -> Layout:
    """The layout of ``model``: its list of ``n_layers`` blocks, and the first family in
    :data:`LAYOUTS` that recognises a block (else the generic, residual-stream-only one)."""
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n_layers:
            for layout in LAYOUTS:
                if layout.recognises(module[0]):
                    return layout(model, path)
            return Layout(model, path)
    raise ModelLoadError(f"{name}: cannot find the list of transformer blocks")
