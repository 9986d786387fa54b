"""Inputs: prompt templates, position groups and the tokenized batch (:class:`Encoded`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.constants import PROMPTS

# Position-group codes shared by every analysis (stored as int8 next to each input).
PAD, INSTRUCTION, QUERY, DOCUMENT, LAST = 0, 1, 2, 3, 4
GROUP_NAMES = {PAD: "pad", INSTRUCTION: "instruction", QUERY: "query", DOCUMENT: "document",
               LAST: "last"}

RANKLLAMA_TEMPLATE = "query: {query} document: {document}{eos}"  # Ma et al. 2023, RankLlama
JUDGE_POINTWISE = (
    "Judge whether the document is relevant to the search query.\n"
    "Query: {query}\nDocument: {document}\n"
    "Does the document answer the query? Answer yes or no.")
JUDGE_PAIRWISE = (
    "Compare two documents for the search query.\n"
    "Query: {query}\nDocument A: {document}\nDocument B: {document_b}\n"
    "Is Document A more relevant to the query than Document B? Answer yes or no.")


@dataclass
class Encoded:
    """A tokenized batch. ``groups[b, t]`` holds a group code (PAD … LAST) for each token.

    Shapes: ``input_ids``, ``attention_mask``, ``groups``: ``[batch, pos]``; ``last``: ``[batch]``
    (index of the output position: the last non-pad token for decoders, [CLS] for encoders).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    groups: torch.Tensor
    last: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    texts: list[str] = field(default_factory=list)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        out = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            out["token_type_ids"] = self.token_type_ids
        return out

    def rows(self, index) -> "Encoded":
        """Rows ``index`` of the batch (a slice, or a sequence / tensor of row numbers)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long, device=self.input_ids.device)
        texts = self.texts[index] if isinstance(index, slice) else \
            [self.texts[i] for i in index.tolist()] if self.texts else []
        return Encoded(self.input_ids[index], self.attention_mask[index], self.groups[index],
                       self.last[index],
                       None if self.token_type_ids is None else self.token_type_ids[index], texts)

    def repeat(self, n: int) -> "Encoded":
        """A batch of ``n`` copies of this one-row batch (views, no copy)."""
        return Encoded(self.input_ids.expand(n, -1), self.attention_mask.expand(n, -1),
                       self.groups.expand(n, -1), self.last.expand(n),
                       None if self.token_type_ids is None else self.token_type_ids.expand(n, -1),
                       [])

    def to(self, device) -> "Encoded":
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device),
                       self.groups.to(device), self.last.to(device),
                       None if self.token_type_ids is None else self.token_type_ids.to(device),
                       self.texts)


def _render_with_spans(template: str, values: dict[str, str]) -> tuple[str, list[tuple[int, int, int]]]:
    """Fill ``{name}`` slots and return the text plus (start, end, group) char spans of slots."""
    groups = {"query": QUERY, "document": DOCUMENT, "document_b": DOCUMENT}
    text, spans, position = "", [], 0
    while True:
        start = template.find("{", position)
        if start < 0:
            text += template[position:]
            return text, spans
        end = template.index("}", start)
        name = template[start + 1:end]
        text += template[position:start]
        value = values[name]
        if name in groups:
            spans.append((len(text), len(text) + len(value), groups[name]))
        text += value
        position = end + 1



def prepare_tokenizer(kind: str, tokenizer, model) -> None:
    """A pad token distinct from EOS for decoders, right padding, and the model told its id."""
    if tokenizer.pad_token is None or (kind != "cross-encoder"
                                       and tokenizer.pad_token == tokenizer.eos_token):
        # The RankLlama template ends with EOS; a pad equal to EOS would hide it from the
        # last-non-pad pooling of LlamaForSequenceClassification.
        candidates = [t for t in ("<|endoftext|>", "<pad>", "<unk>")
                      if t in tokenizer.get_vocab() and t != tokenizer.eos_token]
        if candidates:
            tokenizer.pad_token = candidates[0]
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id


class InputBuilder:
    """(query, document) → :class:`Encoded` for one ranker: its template (RankLlama's, the
    judge prompts through the chat template, or the tokenizer's own pair encoding for
    cross-encoders), truncation at token boundaries, and each token's position group."""

    def __init__(self, kind: str, tokenizer, max_length: int):
        self.kind = kind
        self.tokenizer = tokenizer
        self.max_length = max_length

    def template(self, prompt: str) -> str:
        if self.kind == "llm-ranker":
            return RANKLLAMA_TEMPLATE.replace("{eos}", self.tokenizer.eos_token or "")
        user = JUDGE_PAIRWISE if prompt == "pairwise" else JUDGE_POINTWISE
        if self.tokenizer.chat_template:
            # Render the chat template around sentinel slots, then restore the slot names.
            sentinel = {k: f"\ue000{k}\ue000" for k in ("query", "document", "document_b")}
            content = user.format(**sentinel)
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)
            rendered = rendered.replace("{", "{{").replace("}", "}}")
            for name, mark in sentinel.items():
                rendered = rendered.replace(mark, "{" + name + "}")
            return rendered
        return user + "\nAnswer:"

    def truncate(self, text: str, budget: int) -> str:
        """Cut ``text`` after ``budget`` tokens, at a token boundary (document side first)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= budget:
            return text
        return text[: offsets[max(budget, 1) - 1][1]]

    def encode(self, queries: list[str], documents: list[str], prompt: str = "pointwise",
               documents_b: list[str] | None = None, doc_tokens: int | None = None) -> Encoded:
        """See :meth:`core.models.ranker.Ranker.encode`."""
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
        if prompt == "pairwise" and (self.kind != "llm-judge" or documents_b is None):
            raise ValueError("pairwise prompts need an llm-judge and documents_b")
        if self.kind == "cross-encoder":
            return self._encode_pair(queries, documents, doc_tokens)
        texts, spans = self._render(queries, documents, prompt, documents_b, doc_tokens)
        tok = self.tokenizer
        add_special = self.kind == "llm-ranker" and bool(getattr(tok, "add_bos_token", False))
        batch = tok(texts, return_tensors="pt", padding=True, return_offsets_mapping=True,
                    add_special_tokens=add_special, truncation=True, max_length=self.max_length)
        offsets = batch.pop("offset_mapping")
        groups = torch.full(batch["input_ids"].shape, PAD, dtype=torch.int8)
        mask = batch["attention_mask"].bool()
        for b, slots in enumerate(spans):
            for t in range(groups.shape[1]):
                if not mask[b, t]:
                    continue
                start, end = int(offsets[b, t, 0]), int(offsets[b, t, 1])
                code = INSTRUCTION
                probe = end - 1 if end > start else -1
                for s, e, group in slots:
                    if s <= probe < e:
                        code = group
                        break
                groups[b, t] = code
        last = mask.sum(dim=1) - 1  # right padding: last real token
        groups[torch.arange(len(texts)), last] = LAST
        return Encoded(batch["input_ids"], batch["attention_mask"], groups, last, None, texts)

    def _render(self, queries, documents, prompt, documents_b, doc_tokens):
        """The filled-in prompts and, per prompt, the character spans of its slots."""
        template = self.template(prompt)
        texts, spans_all = [], []
        for i, (query, document) in enumerate(zip(queries, documents)):
            query = self.truncate(query, 64)
            skeleton = len(self.tokenizer(
                _render_with_spans(template, {"query": query, "document": "", "document_b": ""})[0],
                add_special_tokens=False)["input_ids"])
            n_docs = 2 if prompt == "pairwise" else 1
            budget = doc_tokens or max(8, (self.max_length - skeleton - 2) // n_docs)
            values = {"query": query, "document": self.truncate(document, budget)}
            if prompt == "pairwise":
                values["document_b"] = self.truncate(documents_b[i], budget)
            text, spans = _render_with_spans(template, values)
            texts.append(text)
            spans_all.append(spans)
        return texts, spans_all

    def _encode_pair(self, queries, documents, doc_tokens) -> Encoded:
        if doc_tokens is not None:
            documents = [self.truncate(d, doc_tokens) for d in documents]
        queries = [self.truncate(q, 64) for q in queries]
        batch = self.tokenizer(queries, documents, return_tensors="pt", padding=True,
                               truncation="only_second", max_length=self.max_length)
        groups = torch.full(batch["input_ids"].shape, PAD, dtype=torch.int8)
        for b in range(len(queries)):
            for t, sequence in enumerate(batch.sequence_ids(b)):
                if not batch["attention_mask"][b, t]:
                    continue
                groups[b, t] = {None: INSTRUCTION, 0: QUERY, 1: DOCUMENT}[sequence]
        groups[:, 0] = LAST  # the [CLS] position feeds the score head
        last = torch.zeros(len(queries), dtype=torch.long)
        texts = [f"{q} [SEP] {d}" for q, d in zip(queries, documents)]
        return Encoded(batch["input_ids"], batch["attention_mask"], groups, last,
                       batch.get("token_type_ids"), texts)

    def token_texts(self, input_ids: list[int]) -> list[str]:
        """Each token of ``input_ids`` as the text it stands for."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(input_ids))
        return [self.tokenizer.convert_tokens_to_string([t]) for t in tokens]
