"""bench/gpu_check.py: its logic on toy sizes (CPU), and its one line without CUDA."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def _results(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^RESULT (\S+)=(\S+)$", text, re.M)}


def test_without_cuda_the_check_says_so_in_one_line(capsys, monkeypatch):
    module = _gpu_check()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert module.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no CUDA GPU visible")


def test_tiny_check_runs_every_section_of_the_gpu_code_path(capsys):
    module = _gpu_check()
    assert module.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    results = _results(out)
    assert "FAILED" not in out
    assert results["gpu_check_failed_sections"] == 0
    # the batched solver and the working-set solver fit the same probes
    assert results["lasso_max_abs_r2_diff"] < 1e-3
    # the staged patching sweep and the per-patch loop agree
    assert results["llama_bf16_patch_max_abs_ie_diff"] < 1e-3
    # every precision of the MiniLM body reported; fp32 agrees with itself
    for precision in ("fp32", "bf16", "4bit_nf4"):
        assert f"minilm_{precision}_spearman" in results
    assert results["minilm_fp32_flipped"] == 0
    # 4-bit through the loading path: scored, compared with bf16, and attribution refused
    assert "llama_4bit_vs_bf16_spearman" in results
    assert results["llama_4bit_nig_refused"] == 1
    assert "score head dtype: torch.float32" in out  # the head stays unquantized
    assert results["llama_bf16_capture_pairs_per_min"] > 0
