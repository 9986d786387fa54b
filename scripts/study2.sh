#!/usr/bin/env bash
# The neuron-attribution and ablation figures of README ("Which neurons matter"), rerunnable:
#   scripts/study2.sh [OUT_DIR]      (≈ 20 min on a 2-core CPU; results also land in the store)
# The study draws 50 random sets over all queries; on this CPU one re-ranking of 10 queries ×
# 20 candidates takes ≈3 s (MiniLM) and ≈15 s (SmolLM2), hence the smaller counts below.
# Probe and patching runs for the agreement / Shapley tables come from the store
# (`python -m core probe …`, `python -m core patch …`); their rows are left out where absent.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/study2}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1
for collection in demo cranfield; do
  "$PY" -m core attribute --ranker minilm-cross-encoder --collection "$collection" --pairs 10 \
    --steps 100 --out "$OUT/nig-minilm-$collection.csv"
  "$PY" -m core baselines --ranker minilm-cross-encoder --collection "$collection" --pairs 10 \
    --out "$OUT/nig-minilm-$collection-baselines.csv"
  # ablate and agreement build on the newest attribution run on "$collection": the one above
  "$PY" -m core ablate --ranker minilm-cross-encoder --collection "$collection" \
    --draws 10 --queries 10 --out "$OUT/ablate-minilm-$collection.csv"
  "$PY" -m core agreement --ranker minilm-cross-encoder --collection "$collection" \
    --percent 1 --threshold 0.5 --out "$OUT/agree-minilm-$collection.csv"
done
# SmolLM2: the trapezoid rule (bench/completeness.py: the left sum leaves a median 40% of
# F(x) − F(baseline) unexplained at N = 100 on this decoder, the trapezoid 1%)
"$PY" -m core attribute --ranker smollm2-ranker-demo --collection demo --pairs 2 --steps 50 \
  --rule trapezoid --out "$OUT/nig-smollm2-demo.csv"
"$PY" -m core baselines --ranker smollm2-ranker-demo --collection demo --pairs 2 \
  --out "$OUT/nig-smollm2-demo-baselines.csv"
"$PY" -m core ablate --ranker smollm2-ranker-demo --collection demo --draws 5 --queries 5 \
  --out "$OUT/ablate-smollm2-demo.csv"
"$PY" -m core agreement --ranker smollm2-ranker-demo --collection demo --percent 1 \
  --threshold 0.5 --out "$OUT/agree-smollm2-demo.csv"
"$PY" -m core shapley --ranker smollm2-ranker-demo --collection demo --threshold 0.8 \
  --queries 10 --out "$OUT/shapley-smollm2-demo.csv"
"$PY" -m core shapley --ranker minilm-cross-encoder --collection demo --layer 2 \
  --queries 3 --permutations 10 --random-groups 9 --out "$OUT/shapley-minilm-demo-layer2.csv"
