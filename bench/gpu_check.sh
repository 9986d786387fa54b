#!/usr/bin/env bash
# Build what bench/gpu_check.py needs on a borrowed GPU machine (Python 3.12, its own torch with
# CUDA 13, transformers, peft, safetensors, numba, pandas, pyarrow, scikit-learn; no network)
# into bench/gpu_bundle/ (git-ignored), at most 64 MiB:
#   site/               wheels unpacked, used only where the machine lacks the package:
#                       bitsandbytes trimmed to its CUDA 13 and CPU libraries, bm25s (the demo
#                       collection's BM25), ir_measures + pytrec_eval (nDCG / MRR, cp312)
#   minilm-body/        all-MiniLM-L6-v2 in fp16 (the cross-encoder's base; the adapters travel
#                       with the repository)
#   smollm2-tokenizer/  SmolLM2's tokenizer (the 7B-shaped Llama's), not the 98 MB GGUF
#   manifest.txt        every file and its size
# Prints RESULT bundle_mib=<n>; exits 1 (and says so) when the bundle is over 64 MiB.
#   bash bench/gpu_check.sh
# Then, with the device: carry bench/gpu_bundle and run `python bench/gpu_check.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BUNDLE=bench/gpu_bundle
LIMIT_MIB=64
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/site" "$BUNDLE/wheels"
version() { grep -i "^$1==" requirements.txt | cut -d= -f3; }
# cp312 / manylinux wheels for the borrowed machine, whatever Python runs here
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --implementation cp \
  -d "$BUNDLE/wheels" \
  "bitsandbytes==$(version bitsandbytes)" "bm25s==$(version bm25s)" \
  "ir_measures==$(version ir_measures)" "pytrec-eval-terrier==0.5.11"
"$PY" - "$BUNDLE" <<'EOF'
import sys
import zipfile
from pathlib import Path

bundle = Path(sys.argv[1])
site = bundle / "site"
for wheel in sorted((bundle / "wheels").glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.namelist():
            name = Path(member).name
            # bitsandbytes ships one native library per CUDA / ROCm / XPU version (125 MB):
            # keep the CPU one and CUDA 13.0 (torch 2.11's CUDA 13 wheels)
            if name.startswith("libbitsandbytes_") and name not in (
                    "libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so"):
                continue
            archive.extract(member, site)
    print(f"unpacked {wheel.name}")
EOF
rm -rf "$BUNDLE/wheels"
"$PY" - "$BUNDLE" <<'EOF'
import sys
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, ".")
from core.models import PRESETS, resolve_source  # noqa: E402

bundle = Path(sys.argv[1])
source = resolve_source(PRESETS["minilm-cross-encoder"])
body = AutoModel.from_pretrained(source, dtype=torch.float16)
body.save_pretrained(bundle / "minilm-body", safe_serialization=True)
AutoTokenizer.from_pretrained(source).save_pretrained(bundle / "minilm-body")
spec = PRESETS["smollm2-ranker"]
tokenizer = AutoTokenizer.from_pretrained(resolve_source(spec), gguf_file=spec.gguf_file)
tokenizer.save_pretrained(bundle / "smollm2-tokenizer")
# the fast tokenizer's tokenizer.json is all transformers reads; vocab / merges duplicate it
for extra in ("vocab.json", "merges.txt", "vocab.txt"):
    path = bundle / "smollm2-tokenizer" / extra
    if path.exists() and (bundle / "smollm2-tokenizer" / "tokenizer.json").exists():
        path.unlink()
print("minilm-body (fp16) and smollm2-tokenizer written")
EOF
find "$BUNDLE" -name "__pycache__" -prune -exec rm -rf {} +
(cd "$BUNDLE" && find . -type f -printf "%s\t%p\n" | sort -k2 > manifest.txt)
bytes=$(du -sb "$BUNDLE" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
echo "RESULT bundle_mib=$mib"
if awk -v m="$mib" -v l="$LIMIT_MIB" 'BEGIN { exit !(m > l) }'; then
  echo "error: the bundle is $mib MiB, over the $LIMIT_MIB MiB that can be brought; see $BUNDLE/manifest.txt" >&2
  exit 1
fi
echo "bundle ready in $BUNDLE ($mib MiB): carry it and run python bench/gpu_check.py"
