"""Score heads: how each kind of ranker turns its last hidden states into one number.

One class per kind (:data:`HEADS`): the [CLS] score of a cross-encoder, the last-token score of
a RankLlama-style LLM ranker, and LD = logit(yes) − logit(no) of an LLM judge. Adding a model
kind is one :class:`Head` subclass: what transformers class loads it, which modules stay
unquantized, and the three ways a score is read (full forward, from input embeddings, from
output-position states)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from core.errors import ModelLoadError
from core.models.inputs import Encoded
from core.models.layouts import Layout

YES_TOKENS = ("yes", "Yes", " yes", " Yes")  # LD uses logsumexp over spellings (NOTES.md)
NO_TOKENS = ("no", "No", " no", " No")


class Head(ABC):
    """The score of one kind of ranker ``-> [batch]`` (float32)."""

    kind = ""
    auto_class = "AutoModelForSequenceClassification"
    num_labels: int | None = 1
    unquantized = ("classifier", "score")  # bitsandbytes skips these (a 384→1 head crashes)
    causal = True  # decoders: a token sees only earlier tokens

    def __init__(self, model, tokenizer, layout: Layout, name: str):
        self.model = model
        self.layout = layout

    def forward(self, enc: Encoded) -> torch.Tensor:
        """Full forward pass on an encoded batch (already on the model's device)."""
        return self.model(**enc.model_inputs(), use_cache=False).logits[:, 0].float()

    def from_embeddings(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        """Forward pass with the token embeddings replaced by ``embeddings``."""
        return self.read_last(self._last_hidden(enc, embeddings))

    def read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        """Output-position residual-stream states ``[n, d]`` (before the final norm) → scores."""
        return self.read_last(self.layout.final_norm(hidden))

    @abstractmethod
    def read_last(self, last: torch.Tensor) -> torch.Tensor:
        """Final hidden states at the output position ``[n, d]`` → scores."""

    def _last_hidden(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = self.layout.body()(inputs_embeds=embeddings, attention_mask=enc.attention_mask,
                                    use_cache=False).last_hidden_state
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), enc.last]


class ClsScore(Head):
    """Cross-encoders (MonoBERT): a one-logit classifier on the pooled [CLS] state."""

    kind = "cross-encoder"
    causal = False

    def forward(self, enc: Encoded) -> torch.Tensor:
        return self.model(**enc.model_inputs()).logits[:, 0].float()

    def from_embeddings(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        inputs = {"inputs_embeds": embeddings, "attention_mask": enc.attention_mask}
        if enc.token_type_ids is not None:
            inputs["token_type_ids"] = enc.token_type_ids
        return self.model(**inputs).logits[:, 0].float()

    def read_last(self, last: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(self.layout.pool(last))[:, 0].float()


class LastTokenScore(Head):
    """Pointwise LLM rankers (RankLlama): a one-logit score head on the last token's state."""

    kind = "llm-ranker"

    def read_last(self, last: torch.Tensor) -> torch.Tensor:
        return self.model.score(last)[:, 0].float()


class YesNoLogitDifference(Head):
    """Instruction LLMs as relevance judges: LD = logsumexp over the yes spellings −
    logsumexp over the no spellings of the next-token logits at the answer position."""

    kind = "llm-judge"
    auto_class = "AutoModelForCausalLM"
    num_labels = None
    unquantized = ("lm_head",)

    def __init__(self, model, tokenizer, layout: Layout, name: str):
        super().__init__(model, tokenizer, layout, name)
        self.yes_ids = _single_token_ids(tokenizer, YES_TOKENS, name)
        self.no_ids = _single_token_ids(tokenizer, NO_TOKENS, name)

    def forward(self, enc: Encoded) -> torch.Tensor:
        hidden = self.layout.body()(**enc.model_inputs(), use_cache=False).last_hidden_state
        return self.read_last(hidden[torch.arange(hidden.shape[0], device=hidden.device),
                                     enc.last])

    def read_last(self, last: torch.Tensor) -> torch.Tensor:
        logits = self.model.lm_head(last).float()
        return (torch.logsumexp(logits[:, self.yes_ids], dim=-1)
                - torch.logsumexp(logits[:, self.no_ids], dim=-1))


def _single_token_ids(tokenizer, spellings: tuple[str, ...], name: str) -> list[int]:
    ids = []
    for spelling in spellings:
        pieces = tokenizer.encode(spelling, add_special_tokens=False)
        if len(pieces) == 1 and pieces[0] not in ids:
            ids.append(pieces[0])
    if not ids:
        raise ModelLoadError(f"{name}: the tokenizer has no single token for "
                             f"{spellings[0]!r}; this model cannot act as a yes/no judge")
    return ids


HEADS: dict[str, type[Head]] = {head.kind: head for head in
                                (ClsScore, LastTokenScore, YesNoLogitDifference)}


def head_class(kind: str) -> type[Head]:
    return HEADS[kind]
