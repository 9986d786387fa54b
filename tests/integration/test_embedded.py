"""The real embedded rankers (loaded once per session), the CLI, and the CUDA path when present."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.extract import ExtractionConfig, extract
from core.hooks import count_hooks
from core.models import EMBEDDED, PRESETS, load_ranker
from core.retrieval import candidate_pairs
from core.store import Store

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {"minilm-cross-encoder": (6, 384, 12), "smollm2-ranker": (30, 576, 9),
            "smollm2-judge": (30, 576, 9)}


@pytest.fixture(scope="module")
def held_out_pairs(demo):
    qids = demo.queries[demo.queries.split == "test"].qid.tolist()[:6]
    return candidate_pairs(demo, qids=qids)


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_ranker_card(embedded_rankers, name):
    ranker = embedded_rankers(name)
    card = ranker.card()
    assert (card["layers"], card["hidden size"], card["heads"]) == EXPECTED[name]
    assert card["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert card["quantization"] == "fp32" and card["parameters"] > 20e6


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_ranker_prefers_answering_passages(embedded_rankers, held_out_pairs, name):
    ranker = embedded_rankers(name)
    scores = ranker.score(held_out_pairs["query"].tolist(), held_out_pairs["document"].tolist())
    grades = held_out_pairs.relevance.to_numpy()
    assert np.isfinite(scores).all()
    assert scores[grades == 3].mean() > scores[grades <= 1].mean()


@pytest.mark.parametrize("quantization,min_pearson,max_mean_abs", [
    # measured: NF4 on this 6-layer, d=384 model costs real accuracy (Pearson 0.946, mean
    # |Δ| 0.78 on scores spanning ±7); bf16 is nearly exact (Pearson 0.9999, mean |Δ| 0.026)
    ("4bit-nf4", 0.9, 1.0), ("bf16", 0.999, 0.05)])
def test_minilm_quantized_scores_follow_fp32(embedded_rankers, held_out_pairs, quantization,
                                             min_pearson, max_mean_abs):
    exact = embedded_rankers("minilm-cross-encoder")
    other = load_ranker(replace(PRESETS["minilm-cross-encoder"], quantization=quantization))
    queries, docs = held_out_pairs["query"].tolist()[:40], held_out_pairs["document"].tolist()[:40]
    a, b = exact.score(queries, docs), other.score(queries, docs)
    assert np.corrcoef(a, b)[0, 1] > min_pearson
    assert np.abs(a - b).mean() < max_mean_abs
    assert other.card()["memory (MB)"] < exact.card()["memory (MB)"]
    if quantization == "4bit-nf4":
        assert type(other.model.bert.encoder.layer[0].output.dense).__name__ == "Linear4bit"
        assert type(other.model.classifier).__name__ == "Linear"


def test_judge_pairwise_prompt_prefers_the_answer_first(embedded_rankers, demo):
    """Asked "is A more relevant than B?" in both orders, the judge says yes more often with
    the answer first than a coin would (one-sided binomial test, 30 held-out queries; measured:
    23 of 30)."""
    from scipy.stats import binomtest

    judge = embedded_rankers("smollm2-judge")
    qids = demo.queries[demo.queries.split == "test"].qid.tolist()[:30]
    rows = []
    for _, group in candidate_pairs(demo, qids=qids).groupby("qid"):
        best, worst = group[group.relevance == 3], group[group.relevance == 0]
        if len(best) and len(worst):
            rows.append((best["query"].iloc[0], best["document"].iloc[0], worst["document"].iloc[0]))
    queries, good, bad = map(list, zip(*rows))
    first = judge.score(queries, good, prompt="pairwise", documents_b=bad)
    second = judge.score(queries, bad, prompt="pairwise", documents_b=good)
    wins = int((first > second).sum())
    assert len(rows) == 30
    assert binomtest(wins, len(rows), 0.5, alternative="greater").pvalue < 0.05, wins


def test_extraction_on_smollm2_ranker(embedded_rankers, demo, tmp_path):
    ranker = embedded_rankers("smollm2-ranker")
    store = Store(tmp_path / "s.duckdb")
    config = ExtractionConfig(limit_queries=1, batch_size=10, components=("resid", "attn", "mlp"))
    result = extract(ranker, demo, config, store)
    layers = store.layers(result.run_key)
    assert len(layers) == 30 * 3 * 3 and (layers.dim == 576).all()
    assert store.activations(result.run_key, "mlp", 29, "last").shape == (20, 576)
    direct = ranker.score(*[candidate_pairs(demo, limit_queries=1)[c].tolist()
                            for c in ("query", "document")])
    np.testing.assert_allclose(store.scores(result.run_key), direct, atol=1e-4)
    assert count_hooks(ranker.model) == 0


def run_cli(*args, store=None):
    command = [sys.executable, "-m", "core", *args]
    if store is not None:
        command += ["--store", str(store)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_cli_models_lists_every_preset():
    out = run_cli("models")
    assert out.returncode == 0
    for name in PRESETS:
        assert name in out.stdout
    assert all(f"{name}" in line and " yes " in line for name in EMBEDDED
               for line in out.stdout.splitlines() if line.startswith(name))


def test_cli_extract_then_serves_from_store(tmp_path):
    store = tmp_path / "cli.duckdb"
    first = run_cli("extract", "--ranker", "minilm-cross-encoder", "--limit", "1", store=store)
    assert first.returncode == 0, first.stderr
    assert "20 pairs in 1 batches (1 computed now" in first.stdout
    second = run_cli("extract", "--ranker", "minilm-cross-encoder", "--limit", "1", store=store)
    assert "(0 computed now, 1 from the store)" in second.stdout


@pytest.mark.parametrize("args,message", [
    (("extract", "--ranker", "nope"), "unknown ranker 'nope'"),
    (("extract", "--ranker", "minilm-cross-encoder", "--collection", "/no/such/dir"), "not a folder"),
    (("extract", "--ranker", "minilm-cross-encoder", "--batch-size", "0"), "Batch size"),
    (("score", "--ranker", "monobert-large", "--query", "q", "--document", "d"), "offline"),
    (("score", "--ranker", "minilm-cross-encoder", "--quantization", "8bit", "--query", "q",
      "--document", "d"), "needs a CUDA GPU"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, args, message):
    if "8bit" in args and torch.cuda.is_available():
        pytest.skip("CUDA present")
    out = run_cli(*args, store=tmp_path / "s.duckdb" if args[0] == "extract" else None)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", EMBEDDED)
def test_cuda_4bit_and_bf16_follow_fp32(name, held_out_pairs):
    queries, docs = held_out_pairs["query"].tolist()[:40], held_out_pairs["document"].tolist()[:40]
    exact = load_ranker(replace(PRESETS[name], device="cpu")).score(queries, docs)
    for quantization in ("4bit-nf4", "bf16"):
        ranker = load_ranker(replace(PRESETS[name], quantization=quantization, device="cuda"))
        assert np.corrcoef(exact, ranker.score(queries, docs))[0, 1] > 0.98


def test_cli_evaluate_prints_bm25_and_ranker_measures(tmp_path):
    out = run_cli("evaluate", "--ranker", "minilm-cross-encoder", "--split", "test", "--limit", "2",
                  store=tmp_path / "e.duckdb")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT demo_")]
    names = {line.split("=")[0] for line in lines}
    assert names == {"RESULT demo_BM25_ndcg10", "RESULT demo_BM25_mrr10",
                     "RESULT demo_minilm-cross-encoder_ndcg10",
                     "RESULT demo_minilm-cross-encoder_mrr10"}
    assert all(0 <= float(line.split("=")[1]) <= 1 for line in lines)


def test_cli_probe_writes_the_tidy_table_and_serves_again_from_the_store(tmp_path):
    import pandas as pd

    store, out = tmp_path / "p.duckdb", tmp_path / "probe.csv"
    args = ("probe", "--ranker", "minilm-cross-encoder", "--limit", "8", "--features", "bm25",
            "stream_length", "covered_query_term_ratio", "embedding_cosine_minilm",
            "--groups", "bm25 * stream_length", "--out", str(out))
    first = run_cli(*args, store=store)
    assert first.returncode == 0, first.stderr
    table = pd.read_csv(out)
    assert list(table.columns[:7]) == ["layer", "pooling", "feature", "estimator", "r2_mean",
                                       "r2_sd", "r2_val"]
    assert {"mse", "n_nonzero"} <= set(table.columns)
    assert sorted(table.layer.unique()) == [1, 2, 3, 4, 5, 6]
    assert set(table.feature) == {"bm25", "stream_length", "covered_query_term_ratio",
                                  "embedding_cosine_minilm", "bm25 * stream_length"}
    # R² is at most 1 and may be far below 0 on small, heavy-tailed sets (test part: 20 pairs)
    assert np.isfinite(table.r2_mean).all() and (table.r2_mean <= 1).all()
    assert (table.set_size >= 25).all()
    assert table[table.feature == "stream_length"].r2_mean.max() > 0.5  # MiniLM: block 1
    assert "(6 of 6 layers; key " in first.stdout and "encoded (R² > 0.85)" in first.stdout
    key = first.stdout.split("key ")[1].split(";")[0]
    second = run_cli(*args, store=store)  # read back: the same key, the same table
    assert f"key {key};" in second.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out), table)


@pytest.mark.parametrize("extra,message", [
    (("--features", "bm42"), "invalid choice: 'bm42'"), (("--folds", "1"), "Folds must be at least 2"),
    (("--lasso-alpha", "-1"), "must be positive"), (("--groups", "bm25 ^ 0.5"), "powers"),
])
def test_cli_probe_refuses_bad_settings(tmp_path, extra, message):
    out = run_cli("probe", "--ranker", "minilm-cross-encoder", "--limit", "8",
                  "--out", str(tmp_path / "x.csv"), *extra, store=tmp_path / "s.duckdb")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.csv").exists()


def test_cli_patch_on_the_judge_writes_mean_ie_and_serves_again(tmp_path):
    import pandas as pd

    store, out = tmp_path / "p.duckdb", tmp_path / "patch.csv"
    args = ("patch", "--ranker", "smollm2-judge", "--pairs", "1", "--components", "attn", "mlp",
            "--head-groups", "last", "--no-attention-scores", "--min-gap", "0",
            "--out", str(out))
    first = run_cli(*args, store=store)
    assert first.returncode == 0, first.stderr
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["target", "layer", "group", "head"]
    components = table[table.target.isin(["attn", "mlp"])]
    assert len(components) == 30 * 2 * 4 and set(components.layer) == set(range(1, 31))
    assert len(table[table.target == "head"]) == 30 * 9
    # the query precedes the document in the judge's prompt: a causal model's query tokens are
    # identical in clean and corrupted runs, so patching them cannot move LD at all
    assert (components[components.group == "query"].ie_mean == 0).all()
    assert components[components.group == "document"].ie_mean.abs().max() > 0.1
    per_pair = pd.read_csv(tmp_path / "patch-units.csv")  # every patched run of every pair
    assert set(per_pair.target.dropna()) == {"attn", "mlp", "head", "interaction"}
    assert set(per_pair.status) == {"used"} and "highest mean IE" in first.stdout
    key = first.stdout.split("key ")[1].split(";")[0]
    second = run_cli(*args, store=store)
    assert second.returncode == 0 and f"key {key};" in second.stdout
    pd.testing.assert_frame_equal(pd.read_csv(out), table)


@pytest.mark.parametrize("args,message", [
    (("patch", "--ranker", "minilm-cross-encoder", "--prompt", "pairwise"), "pairwise prompts need"),
    (("patch", "--ranker", "minilm-cross-encoder", "--pairs", "0"), "Pairs must be at least 1"),
    (("knockout", "--ranker", "minilm-cross-encoder", "--k", "0"),
     "Heads knocked out (k) must be at least 1"),
    (("knockout", "--ranker", "minilm-cross-encoder"), "the store holds none: run `python -m core "
                                                       "patch --ranker minilm-cross-encoder"),
    (("patch", "--ranker", "minilm-cross-encoder", "--split", "nope"), "no query in split 'nope' (its splits: test, train)"),
])
def test_cli_patch_and_knockout_refuse_bad_settings(tmp_path, args, message):
    out = run_cli(*args, "--out", str(tmp_path / "x.csv"), store=tmp_path / "s.duckdb")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.csv").exists()


def test_cli_attribute_writes_one_row_per_neuron_and_checks_completeness(tmp_path):
    import pandas as pd

    out = tmp_path / "nig.csv"
    store = tmp_path / "s.duckdb"
    result = run_cli("attribute", "--ranker", "minilm-cross-encoder", "--pairs", "1",
                     "--steps", "20", "--out", str(out), store=store)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert len(table) == 6 * (3 * 384 + 384 + 1536 + 384)  # Q, K, V, attn out, FFN in, FFN out
    assert table[["relevant", "non_relevant"]].notna().all().all()
    np.testing.assert_allclose(table.fused, (table.relevant + table.non_relevant) / 2)
    pairs = pd.read_csv(tmp_path / "nig-units.csv")  # one row per pair: its completeness
    assert set(pairs.label) == {"relevant", "non_relevant"} and "conductances" not in pairs
    assert (pairs.completeness_gap < 0.2).all()  # N = 20 here; the study's N = 100 is tighter
    assert "fused set by component" in result.stdout and "median gap" in result.stderr
    agreed = run_cli("agreement", "--ranker", "minilm-cross-encoder", "--percent", "1",
                     "--out", str(tmp_path / "agree.csv"), store=store)
    assert agreed.returncode == 0, agreed.stderr
    agree = pd.read_csv(tmp_path / "agree.csv")
    assert agree.layer.tolist() == [1, 2, 3, 4, 5, 6]
    assert (agree.nig_attn + agree.nig_mlp).sum() == 207  # the top 1 % of 20,736 neurons
    assert "no probe run was used" in agreed.stderr  # this store has none: columns left out
    no_probe = run_cli("shapley", "--ranker", "minilm-cross-encoder",
                       "--out", str(tmp_path / "shap.csv"), store=store)
    assert no_probe.returncode == 2 and "builds on a probe run" in no_probe.stderr
    assert "Traceback" not in no_probe.stderr
    ablated = run_cli("ablate", "--ranker", "minilm-cross-encoder",  # the run above, by default
                      "--percents", "1", "--draws", "2", "--queries", "2",
                      "--out", str(tmp_path / "ablate.csv"), store=store)
    assert ablated.returncode == 0, ablated.stderr
    table = pd.read_csv(tmp_path / "ablate.csv")
    assert table.set.tolist() == ["top 1.0% fused"] and table.neurons.iloc[0] == 207
    assert {"ndcg_full", "ndcg_ablated", "ndcg_random", "p_value", "significant"} <= set(table.columns)


def test_cli_attribute_refuses_a_quantized_ranker(tmp_path):
    out = run_cli("attribute", "--ranker", "minilm-cross-encoder", "--quantization", "4bit-nf4",
                  "--out", str(tmp_path / "x.csv"))
    assert out.returncode == 2 and "silently wrong" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "x.csv").exists()


def test_ablating_a_planted_relevance_neuron_collapses_ndcg(demo):
    """Route MiniLM's score through one pooler unit (the classifier reads only it): knocking
    that unit out must collapse nDCG@10, a random unit of the same layer must not."""
    import pandas as pd
    import torch

    from core.analysis import registered, run
    from core.attribution import AttributionResult
    from core.knockout import NeuronAblationConfig
    from core.models import load_ranker

    ranker = load_ranker("minilm-cross-encoder")  # its own copy: the head is rewired below
    weight = ranker.model.classifier.weight.data[0]
    planted = int(weight.abs().argmax())
    with torch.no_grad():
        kept = torch.zeros_like(weight)
        kept[planted] = weight[planted]
        weight.copy_(kept)
    planted_set = pd.DataFrame({"path": ["bert.pooler.dense"], "neuron": [planted], "fused": [1.0]})
    attribution = AttributionResult("planted", planted_set, pd.DataFrame(), {})
    table = run(registered()["ablate"], ranker, demo,
                NeuronAblationConfig(percents=(100.0,), draws=3, queries=8),
                inputs={"attribution": attribution}).frame
    row = table.iloc[0]
    assert row.ndcg_full > 0.6  # the single unit still ranks well
    assert row.change_pct < -50 and row.significant
    assert abs(row.random_change_pct) < 5  # random units of the pooler are not read at all
    assert count_hooks(ranker.model) == 0


def test_shapley_singles_out_a_planted_probe_group(demo):
    """Route MiniLM's score through 16 residual dimensions of the last block (the pooler unit
    the classifier reads sees only them) and hand them in as a probe group: random groups must
    get a Shapley value of exactly 0, the probe group v(full) − v(group ablated) computed
    independently with ir_measures, and it ranks above the random groups' 95th percentile
    exactly where that is positive."""
    import json

    import pandas as pd

    from core.hooks import capture, intervene
    from core.metrics import evaluate
    from core.analysis import registered, run
    from core.shapley import ShapleyConfig

    ranker = load_ranker("minilm-cross-encoder")  # its own copy: the head is rewired below
    weight = ranker.model.classifier.weight.data[0]
    unit = int(weight.abs().argmax())
    pooler = ranker.model.bert.pooler.dense.weight.data
    dims = np.sort(np.argsort(-pooler[unit].abs().numpy())[:16])
    with torch.no_grad():
        weight.copy_(torch.zeros_like(weight).index_fill_(0, torch.tensor([unit]), weight[unit]))
        row = torch.zeros_like(pooler[unit])
        row[dims] = pooler[unit][dims]
        pooler[unit] = row
    probe = pd.DataFrame({"layer": [6], "pooling": "mean", "estimator": "lasso",
                          "feature": ["planted"], "r2_mean": [0.9],
                          "neurons": [json.dumps([[int(d), 0.1] for d in dims])]})
    config = ShapleyConfig(queries=4, permutations=8, random_groups=9)
    result = run(registered()["shapley"], ranker, demo, config, inputs={"probe": probe})
    per_query, summary = result.rows, result.frame
    assert len(per_query) == 4 and (per_query.shapley_random_mean == 0).all()
    last = ranker.block_path(ranker.n_layers - 1)
    pairs = candidate_pairs(demo, 20, qids=demo.queries[demo.queries.split == "test"].qid.tolist())
    index = torch.as_tensor(dims)
    for item in per_query.itertuples(index=False):
        here = pairs[pairs.qid == item.qid]
        queries, documents = here["query"].tolist(), here["document"].tolist()
        enc = ranker.encode(queries, documents)
        with torch.inference_mode(), capture(ranker.model, [last]) as states:
            ranker.forward(enc)
        fill = states[last][enc.attention_mask.bool()].mean(0)[index]

        def ablate(out):
            out = out.clone()
            out[..., index] = fill
            return out

        # one batch of the query's 20 candidates, as the Shapley run encodes them: the planted
        # head saturates, so candidates nearly tie and padding noise (≈1e-6) could reorder them
        with intervene(ranker.model, {last: ablate}):
            ablated = ranker.score(queries, documents, batch_size=len(queries))
        full = ranker.score(queries, documents, batch_size=len(queries))
        expected = (evaluate(demo, here, full)["nDCG@10"]
                    - evaluate(demo, here, ablated)["nDCG@10"])
        assert item.shapley_probe == pytest.approx(expected, abs=1e-9)
        assert item.above_p95 == (item.shapley_probe > 0)
    assert summary.above_p95.iloc[0] == int((per_query.shapley_probe > 0).sum())
    assert count_hooks(ranker.model) == 0
