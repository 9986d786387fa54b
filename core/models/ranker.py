"""The sealed :class:`Ranker`: the only door analyses have into a loaded model.

Analyses, pages and the CLI call its methods (capture, intervene, linear layers and widths,
pad embedding, special-token mask, token groups, score, layer scores …); they never touch
``ranker.model``, ``ranker.tokenizer`` or private state (tests/unit/test_architecture.py checks
it). What differs between kinds lives in :mod:`core.models.heads`, what differs between
architectures in :mod:`core.models.layouts`, input building in :mod:`core.models.inputs`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from core import hooks as hooks_module
from core.hooks import model_lock
from core.models.attention import AttentionState, attention_access
from core.models.blocks import BlockRunner
from core.models.heads import head_class
from core.models.inputs import GROUP_NAMES, Encoded, InputBuilder, prepare_tokenizer
from core.models.layouts import detect_layout
from core.models.specs import ModelSpec


class Ranker(BlockRunner):
    """A loaded relevance model (cross-encoder, LLM ranker or LLM judge)."""

    def __init__(self, spec: ModelSpec, model, tokenizer, device, load_seconds: float = 0.0):
        self.spec, self.model, self.tokenizer, self.device = spec, model, tokenizer, device
        self.load_seconds = load_seconds
        self.kind = spec.kind
        config = model.config
        self.n_layers, self.d_model = config.num_hidden_layers, config.hidden_size
        self.n_heads = config.num_attention_heads
        prepare_tokenizer(self.kind, tokenizer, model)
        self._layout = detect_layout(model, self.n_layers, spec.name)
        self._head = head_class(self.kind)(model, tokenizer, self._layout, spec.name)
        self._inputs = InputBuilder(self.kind, tokenizer, spec.max_length)

    # -- structure ----------------------------------------------------------------------
    @property
    def blocks_path(self) -> str:
        """Module path of the list of transformer blocks (``model.layers``, ``bert.encoder.layer``)."""
        return self._layout.blocks_path

    def block_path(self, layer: int) -> str:
        return self._layout.block_path(layer)

    def component_paths(self, layer: int) -> dict[str, str]:
        """Module paths whose outputs are the block's residual stream, attention and MLP."""
        return self._layout.component_paths(layer)

    def head_input_path(self, layer: int) -> str:
        """The module whose *input* holds the concatenated head outputs of ``layer``
        (``[batch, pos, n_heads * head_dim]``): the attention output projection."""
        return self._layout.head_input_path(layer)

    def attention_paths(self) -> list[str]:
        """Per layer, the module that calls the attention function."""
        return [self._layout.attention_path(layer) for layer in range(self.n_layers)]

    def linear_paths(self) -> list[str]:
        """Every ``nn.Linear`` inside the transformer blocks (Q, K, V, attention output, FFN;
        gate/up/down for LLMs), in model order — the units neuron attribution scores."""
        prefix = self.blocks_path + "."
        return [name for name, module in self.model.named_modules()
                if name.startswith(prefix) and isinstance(module, torch.nn.Linear)]

    def hookable_modules(self) -> dict[str, str]:
        """Module path → type name for blocks, attention, MLP and every Linear layer."""
        wanted = {path for i in range(self.n_layers) for path in self.component_paths(i).values()}
        return {name: type(module).__name__ for name, module in self.model.named_modules()
                if name in wanted or isinstance(module, torch.nn.Linear)}

    def linear_width(self, path: str) -> int:
        """Output units of the ``nn.Linear`` at ``path``."""
        return self.model.get_submodule(path).out_features

    @property
    def is_causal(self) -> bool:
        """Decoders: a token sees only earlier tokens (so a patch leaves earlier positions alone)."""
        return self._head.causal

    @property
    def head_dim(self) -> int:
        return getattr(self.model.config, "head_dim", None) or self.d_model // self.n_heads

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.model.parameters() if p.is_floating_point())

    @property
    def answer_ids(self) -> tuple[list[int], list[int]]:
        """A judge's single-token spellings of "yes" and of "no" (the two sides of LD)."""
        return self._head.yes_ids, self._head.no_ids

    # -- hooks ------------------------------------------------------------------------
    def hooked(self, hooks: dict, *, pre: bool = False):
        """Forward hooks (or pre-hooks) on module paths for the ``with`` block (removed after)."""
        return hooks_module.hooked(self.model, hooks, pre=pre)

    def capture(self, paths: list[str], reduce=None):
        """Record the outputs of ``paths`` during the forward passes of the ``with`` block."""
        return hooks_module.capture(self.model, paths, reduce)

    def capture_inputs(self, paths: list[str]):
        """Record the first inputs of ``paths`` during the ``with`` block."""
        return hooks_module.capture_inputs(self.model, paths)

    def intervene(self, setters: dict):
        """Replace the outputs of module paths (``path -> setter(output)``) in the block."""
        return hooks_module.intervene(self.model, setters)

    def intervene_inputs(self, setters: dict):
        """Replace the first inputs of module paths (``path -> setter(input)``) in the block."""
        return hooks_module.intervene_inputs(self.model, setters)

    def hook_count(self) -> int:
        """Forward (pre-)hooks registered anywhere in the model (leak checks)."""
        return hooks_module.count_hooks(self.model)

    def attention_access(self, state: AttentionState):
        """Attention through RankScope's eager function for the ``with`` block."""
        return attention_access(self.model, self.attention_paths(), state)

    # -- inputs -----------------------------------------------------------------------
    def encode(self, queries: list[str], documents: list[str], prompt: str = "pointwise",
               documents_b: list[str] | None = None, doc_tokens: int | None = None) -> Encoded:
        """Tokenize a batch and mark each token's position group.

        Args:
            doc_tokens: truncate every document to exactly this many tokens when longer (the
                patching study aligns clean and corrupted runs this way); by default documents
                are cut only as far as ``max_length`` requires.
        """
        return self._inputs.encode(queries, documents, prompt, documents_b, doc_tokens)

    def token_groups(self, query: str, document: str, prompt: str = "pointwise",
                     document_b: str | None = None) -> list[tuple[str, str]]:
        """(token, group name) for one input, for the playground's coloured view."""
        enc = self.encode([query], [document], prompt, None if document_b is None else [document_b])
        mask = enc.attention_mask[0].bool()
        texts = self._inputs.token_texts(enc.input_ids[0][mask].tolist())
        return [(text, GROUP_NAMES[g]) for text, g in zip(texts, enc.groups[0][mask].tolist())]

    def token_texts(self, input_ids: list[int]) -> list[str]:
        """Each token of ``input_ids`` as the text it stands for."""
        return self._inputs.token_texts(input_ids)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` on its own (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def special_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True where ``input_ids`` holds one of the tokenizer's special tokens."""
        return torch.isin(input_ids, torch.tensor(self.tokenizer.all_special_ids,
                                                  dtype=input_ids.dtype, device=input_ids.device))

    def input_embeddings(self, enc: Encoded) -> torch.Tensor:
        """Token embeddings of an encoded batch ``[batch, pos, d]`` (before positions are added)."""
        return self.model.get_input_embeddings()(enc.input_ids.to(self.device))

    def pad_embedding(self) -> torch.Tensor:
        """The input embedding of the padding token ``[d]`` (the attribution baseline's)."""
        return self.model.get_input_embeddings().weight[self.tokenizer.pad_token_id]

    # -- scores -----------------------------------------------------------------------
    def forward(self, enc: Encoded) -> torch.Tensor:
        """Scores ``[batch]`` for an encoded batch (hooks registered by the caller fire here):
        the score head's logit, or a judge's LD at the answer position."""
        with model_lock(self.model):
            return self._head.forward(enc.to(self.device))

    def forward_from_embeddings(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores ``[batch]`` with the token embeddings replaced by ``embeddings`` (integrated
        gradients interpolate there); gradients flow when the caller enables them."""
        with model_lock(self.model):
            return self._head.from_embeddings(enc.to(self.device), embeddings)

    def read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output head on output-position states ``[n, d] -> [n]`` (score or LD)."""
        with model_lock(self.model):
            return self._head.read_out(hidden)

    @torch.inference_mode()
    def score(self, queries: list[str], documents: list[str], batch_size: int = 16,
              prompt: str = "pointwise", documents_b: list[str] | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> np.ndarray:
        """Relevance scores for aligned lists of queries and documents ``-> [n]``."""
        if len(queries) != len(documents):
            raise ValueError("queries and documents must have the same length")
        out = np.empty(len(queries), dtype=np.float32)
        order = np.argsort([-len(d) for d in documents], kind="stable")  # less padding
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            enc = self.encode([queries[i] for i in index], [documents[i] for i in index], prompt,
                              None if documents_b is None else [documents_b[i] for i in index])
            out[index] = self.forward(enc).cpu().numpy()
            if progress:
                progress(min(start + batch_size, len(order)), len(order), "pair")
        return out

    @torch.inference_mode()
    def layer_scores(self, queries: list[str], documents: list[str]) -> np.ndarray:
        """Score lens ``-> [n, n_layers]``: the output head read off the output position after
        every block, in one pass (a logit lens, nostalgebraist 2020, for relevance). The last
        column equals :meth:`score`; earlier ones show where the decision forms."""
        enc = self.encode(queries, documents).to(self.device)
        paths = [self.block_path(i) for i in range(self.n_layers)]
        rows = torch.arange(len(queries), device=self.device)
        with self.capture(paths, reduce=lambda _, h: h[rows, enc.last]) as states:
            self.forward(enc)
        stacked = torch.cat([states[p] for p in paths]).to(self.dtype)  # layer-major [L·n, d]
        return self.read_out(stacked).reshape(self.n_layers, -1).T.float().cpu().numpy()

    # -- the model card -----------------------------------------------------------------
    def parameter_count(self) -> int:
        """Parameters of the model (bitsandbytes packs two 4-bit weights per uint8 element)."""
        return sum(p.numel() * (2 if p.dtype == torch.uint8 else 1)
                   for p in self.model.parameters())

    def memory_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def card(self) -> dict[str, object]:
        """The model card the Workspace page and ``python -m core models`` show."""
        return _card(self)


def _card(ranker: Ranker) -> dict[str, object]:
    spec = ranker.spec
    return {
        "name": spec.name, "kind": ranker.kind, "source": spec.source,
        "adapter": spec.adapter or "—", "gguf file": spec.gguf_file or "—",
        "layers": ranker.n_layers, "hidden size": ranker.d_model, "heads": ranker.n_heads,
        "device": str(ranker.device), "dtype": str(ranker.dtype).replace("torch.", ""),
        "quantization": spec.quantization, "parameters": ranker.parameter_count(),
        "memory (MB)": round(ranker.memory_bytes() / 2**20, 1),
        "hookable modules": len(ranker.hookable_modules()),
        "load time (s)": round(ranker.load_seconds, 1), "key": spec.key(),
    }
