#!/usr/bin/env bash
# The MS MARCO-trained embedded rankers on real data, rerunnable (README "Real rankers on real
# data"): re-ranking quality on TREC DL 2019 (the test set) beside the published table,
# probing on DL19 (in distribution) vs Cranfield (out), neuron attribution + knock-out on
# DL19 and Cranfield with their intersections (MiniLM cross-encoder); the SmolLM2 ranker and
# judge on DL19 top-20, and activation patching + head knock-out of the judge on DL19.
#   scripts/study_trec_dl.sh [OUT_DIR] [STEP ...]
#   steps: evaluate probe attribute evaluate-llm patch (default all)
# ≈ 50 min (MiniLM steps) + ≈ 60 min (SmolLM2 steps) on this 2-core CPU; every result also
# lands in the store, so a rerun is served from it. Needs ../shared/data/trec-dl-2019, -2020
# and cranfield.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/trec-dl}
shift || true
STEPS=${*:-evaluate probe attribute evaluate-llm patch}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
DATA=../shared/data
export HF_HUB_OFFLINE=1
R=minilm-cross-encoder

for step in $STEPS; do
case $step in
evaluate)
  # The test set, as the literature reports it: BM25 top-100 re-ranked, official qrels.
  "$PY" -m core evaluate --ranker $R --collection trec-dl-2019 --depth 100 \
    --qrels $DATA/trec-dl-2019/official-qrels.txt --baselines bi-encoder | tee "$OUT/evaluate-dl19.txt"
  # In domain (trained on its train split; dev queries chose the checkpoint): label it so.
  "$PY" -m core evaluate --ranker $R --collection trec-dl-2020 --depth 100 \
    --qrels $DATA/trec-dl-2020/official-qrels.txt --baselines bi-encoder | tee "$OUT/evaluate-dl20.txt"
  # Cranfield's first 25 queries, as README's table of every embedded ranker
  "$PY" -m core evaluate --ranker $R --collection cranfield --limit 25 --baselines bi-encoder \
    | tee "$OUT/evaluate-cranfield25.txt"
  "$PY" -m core evaluate --ranker $R-demo --collection trec-dl-2019 --depth 100 \
    --qrels $DATA/trec-dl-2019/official-qrels.txt | tee "$OUT/evaluate-dl19-demo-adapter.txt"
  "$PY" -m core evaluate --ranker $R --collection demo --split test --baselines bi-encoder \
    | tee "$OUT/evaluate-demo.txt"
  ;;
probe)
  # Study 1's setting: all 26 features, Lasso α = 0.1, mean pooling; DL19 top-100 pairs (ID)
  # against Cranfield's BM25 top-20 (OOD).
  "$PY" -m core probe --ranker $R --collection trec-dl-2019 --depth 100 --poolings mean max \
    --groups "(covered_query_term_ratio + sum_tf + variance_tfidf)^2" "bm25 * stream_length" \
    --out "$OUT/probe-dl19.csv"
  "$PY" -m core probe --ranker $R --collection cranfield --out "$OUT/probe-cranfield.csv"
  # the RankLlama-recipe SmolLM2 ranker on DL19's BM25 top-20
  "$PY" -m core probe --ranker smollm2-ranker --collection trec-dl-2019 --depth 20 \
    --groups "(covered_query_term_ratio + sum_tf + variance_tfidf)^2" "bm25 * stream_length" \
    --out "$OUT/probe-dl19-smollm2-ranker.csv"
  ;;
attribute)
  # NIG on 10 + 10 pairs judged right; the knock-outs re-rank the BM25 top-20 of 43 queries
  # (all of DL19's; Cranfield's first 43), 10 random sets per top set
  for collection in trec-dl-2019 cranfield; do
    "$PY" -m core attribute --ranker $R --collection $collection --split '' --pairs 10 \
      --steps 100 --out "$OUT/nig-$collection.csv"
    "$PY" -m core baselines --ranker $R --collection $collection --split '' --pairs 10 \
      --out "$OUT/nig-$collection-baselines.csv"
    # the knock-out builds on the newest attribution run of $R on $collection: the one above
    "$PY" -m core ablate --ranker $R --collection $collection --split '' \
      --draws 10 --queries 43 --out "$OUT/ablate-$collection.csv"
  done
  "$PY" - "$OUT" <<'EOF'
import sys
import pandas as pd
from core.attribution import TOP_PERCENTS, overlap, top_set

out = sys.argv[1]
a, b = (pd.read_csv(f"{out}/nig-{c}.csv") for c in ("trec-dl-2019", "cranfield"))
rows = []
for scheme in ("relevant", "non_relevant", "fused"):
    for percent in (*TOP_PERCENTS, 10.0):
        rows.append((scheme, percent, overlap(top_set(a[scheme].to_numpy(), percent),
                                              top_set(b[scheme].to_numpy(), percent))))
table = pd.DataFrame(rows, columns=["scheme", "top_percent", "dl19_cap_cranfield_percent"])
table.to_csv(f"{out}/intersections.csv", index=False)
print(table.to_string(index=False))
EOF
  ;;
evaluate-llm)
  # SmolLM2 ranker and judge (MS MARCO-trained and demo-trained), re-ranking the BM25 top-20:
  # a SmolLM2 pair costs ≈ 0.25 s on this CPU, so the top-100 of 43 queries would take
  # ≈ 20 min per model. BM25, the bi-encoder and MiniLM on the same top-20 for comparison.
  for r in all smollm2-ranker-demo smollm2-judge-demo; do
    "$PY" -m core evaluate --ranker $r --collection trec-dl-2019 --depth 20 \
      --qrels $DATA/trec-dl-2019/official-qrels.txt --baselines bi-encoder \
      | tee "$OUT/evaluate-dl19-top20-$r.txt"
  done
  # in domain (their 2020 train and dev queries), the demo collection, Cranfield
  "$PY" -m core evaluate --ranker all --collection trec-dl-2020 --depth 20 \
    --qrels $DATA/trec-dl-2020/official-qrels.txt --baselines bi-encoder \
    | tee "$OUT/evaluate-dl20-top20.txt"
  "$PY" -m core evaluate --ranker all --collection demo --split test | tee "$OUT/evaluate-demo-all.txt"
  "$PY" -m core evaluate --ranker all --collection cranfield --limit 25 \
    | tee "$OUT/evaluate-cranfield25-all.txt"
  ;;
patch)
  # Study 3 on its own data: the judge on DL19 pairs (relevant passages, highest grade first,
  # each against the next best-ranked non-relevant passage of the BM25 top-100), pointwise
  # and pairwise, then the head knock-out (Table 1: F1 of the judgments, nDCG@10 re-ranking
  # the BM25 top-20 of held-out queries). Up to 10 pairs a query from at most 150 candidate
  # pairs (15 queries): the judge is weak on pairwise prompts (≈ 1 candidate in 20 is
  # usable), and the other 28 queries stay held out for the knock-out.
  PATCH=(--ranker smollm2-judge --collection trec-dl-2019 --split '' --pairs 30
         --pairs-per-query 10 --tries 150)
  "$PY" -m core patch "${PATCH[@]}" --prompt pairwise --out "$OUT/patch-judge-dl19-pairwise.csv" \
    | tee "$OUT/patch-judge-dl19-pairwise.txt"
  "$PY" -m core patch "${PATCH[@]}" --prompt pointwise --out "$OUT/patch-judge-dl19.csv" \
    | tee "$OUT/patch-judge-dl19.txt"
  # the knock-out names the pointwise sweep by its store key (printed by `patch`)
  KEY=$(sed -n 's/.*key \(patch-[0-9a-f]*\);.*/\1/p' "$OUT/patch-judge-dl19.txt")
  "$PY" -m core knockout --ranker smollm2-judge --collection trec-dl-2019 --patch "$KEY" \
    --queries 28 --out "$OUT/knockout-judge-dl19.csv" | tee "$OUT/knockout-judge-dl19.txt"
  ;;
*) echo "unknown step $step (evaluate, probe, attribute, evaluate-llm, patch)" >&2; exit 2 ;;
esac
done
