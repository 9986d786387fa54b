"""Named real collections (TREC DL 2019 / 2020), run-based candidates, relevance thresholds and
scoring with another qrels file — the path every published comparison goes through."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import (NAMED_FOLDERS, available_collections, load_collection, load_folder,
                       with_qrels, with_relevance_threshold)
from core.errors import InputError
from core.metrics import evaluate
from core.retrieval import candidate_pairs

ROOT = Path(__file__).resolve().parents[2]


def trec_dl(year: int) -> Path:
    folder = NAMED_FOLDERS[f"trec-dl-{year}"][0]
    if not folder.is_dir():
        pytest.skip(f"../shared/data/trec-dl-{year} is absent")
    return folder


def run_cli(*args, store=None):
    command = [sys.executable, "-m", "core", *args]
    if store is not None:
        command += ["--store", str(store)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)


def write_folder(path: Path, run: str | None = None, qrels: str | None = None,
                 settings: dict | None = None) -> Path:
    path.mkdir()
    docs = [{"doc_id": f"d{i}", "title": "", "text": f"passage number {i} about topic {i % 3}"}
            for i in range(6)]
    (path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (path / "queries.tsv").write_text("q1\ttopic one\nq2\ttopic two\n")
    (path / "qrels.txt").write_text(qrels or "q1 0 d1 3\nq1 0 d4 1\nq1 0 d0 0\nq2 0 d2 2\n")
    if run is not None:
        (path / "run.txt").write_text(run)
    if settings is not None:
        (path / "collection.json").write_text(json.dumps(settings))
    return path


@pytest.mark.parametrize("year,official_ndcg,judged_ndcg", [(2019, 0.5058, 0.5113),
                                                            (2020, 0.4796, 0.4829)])
def test_bm25_run_reproduces_the_published_anserini_figures(year, official_ndcg, judged_ndcg):
    folder = trec_dl(year)
    collection = load_collection(f"trec-dl-{year}")
    assert f"trec-dl-{year}" in available_collections()
    assert collection.min_relevant == 2 and collection.run_is_bm25
    pairs = candidate_pairs(collection, 100)
    assert len(pairs) == 100 * collection.queries.qid.nunique()
    bm25 = -pairs.bm25_rank.to_numpy(dtype=float)
    official = with_qrels(collection, folder / "official-qrels.txt")
    assert round(evaluate(official, pairs, bm25)["nDCG@10"], 4) == official_ndcg
    assert round(evaluate(collection, pairs, bm25)["nDCG@10"], 4) == judged_ndcg


def test_evaluate_cli_prints_the_official_bm25_figure_and_what_it_re_ranks(tmp_path):
    folder = trec_dl(2019)
    out = run_cli("evaluate", "--ranker", "none", "--collection", "trec-dl-2019", "--depth",
                  "100", "--qrels", str(folder / "official-qrels.txt"), store=tmp_path / "s.db")
    assert out.returncode == 0, out.stderr
    assert "re-ranking run.txt top-100" in out.stdout and "BM25 top" not in out.stdout
    assert "RESULT trec-dl-2019_BM25_ndcg10=0.5058" in out.stdout
    # TREC DL counts grade >= 2 for MRR; grade >= 1 gives the inflated 0.823
    assert "RESULT trec-dl-2019_BM25_mrr10=0.7024" in out.stdout
    lenient = run_cli("evaluate", "--ranker", "none", "--collection", "trec-dl-2019", "--depth",
                      "100", "--relevance-threshold", "1", store=tmp_path / "s.db")
    assert "RESULT trec-dl-2019_BM25_mrr10=0.8233" in lenient.stdout
    assert not (tmp_path / "s.db").exists()  # no ranker: nothing to store


def test_a_folder_run_gives_the_candidates_in_its_order(tmp_path):
    run = "".join(f"q1 Q0 d{d} {r} {10 - r} dense\n" for r, d in enumerate([4, 0, 1, 5], 1))
    collection = load_folder(write_folder(tmp_path / "c", run=run,
                                          settings={"relevance_threshold": 2}))
    assert collection.run_name == "run.txt" and not collection.run_is_bm25
    assert collection.candidates_label == "run.txt"
    pairs = candidate_pairs(collection, depth=3)
    assert pairs.docno.tolist() == ["d4", "d0", "d1"] and pairs.bm25_rank.tolist() == [1, 2, 3]
    # the run's order puts d1 (grade 3, the only one >= 2 for q1) at rank 3; reversed, first
    assert evaluate(collection, pairs, -pairs.bm25_rank.to_numpy(float))["MRR@10"] == \
        pytest.approx(1 / 3)
    assert evaluate(collection, pairs, pairs.bm25_rank.to_numpy(float))["MRR@10"] == 1.0


def test_patching_takes_its_hard_negative_from_the_collections_own_run(tmp_path):
    from core.patching import PatchConfig, prompt_pairs

    # the run's first non-relevant passage is d5 (unjudged); bm25s over these passages ties
    # them all for "topic one" and would take d0
    run = "".join(f"q1 Q0 d{d} {r} {10 - r} bm25\n" for r, d in enumerate([1, 5, 3, 0], 1))
    collection = load_folder(write_folder(tmp_path / "c", run=run,
                                          settings={"relevance_threshold": 2}))
    pairs = prompt_pairs(collection, PatchConfig(pairs=2, split=None, depth=3))
    assert pairs.qid.tolist() == ["q1"]  # q2 has no run entries, so no negative
    assert pairs.positive_docno.tolist() == ["d1"] and pairs.negative_docno.tolist() == ["d5"]
    assert pairs.bm25_rank_negative.tolist() == [2]
    # the depth cuts the run: in its top 1 there is no non-relevant passage, so no pair
    assert prompt_pairs(collection, PatchConfig(pairs=1, split=None, depth=1)).empty


def test_several_pairs_per_query_pair_the_ith_positive_with_the_ith_hard_negative(tmp_path):
    from core.patching import PatchConfig, prompt_pairs

    # q1: d1 grade 3 and d4 grade 2 relevant; the run's non-relevant passages in rank order
    # are d5 (unjudged), d0 (judged 0), d3
    run = "".join(f"q1 Q0 d{d} {r} {10 - r} bm25\n" for r, d in enumerate([4, 5, 1, 0, 3], 1))
    qrels = "q1 0 d1 3\nq1 0 d4 2\nq1 0 d0 0\nq2 0 d2 2\n"
    collection = load_folder(write_folder(tmp_path / "c", run=run, qrels=qrels,
                                          settings={"relevance_threshold": 2}))
    one = prompt_pairs(collection, PatchConfig(pairs=5, split=None))
    assert list(zip(one.positive_docno, one.negative_docno)) == [("d1", "d5")]
    three = prompt_pairs(collection, PatchConfig(pairs=5, split=None, pairs_per_query=3))
    # two positives, so two pairs (highest grade first), no document used twice
    assert list(zip(three.positive_docno, three.negative_docno)) == [("d1", "d5"), ("d4", "d0")]
    assert three.bm25_rank_negative.tolist() == [2, 4]
    assert len(prompt_pairs(collection, PatchConfig(pairs=1, split=None, pairs_per_query=3))) == 1
    # the new fields at their defaults leave a sweep's store key as it was before they existed
    assert "pairs_per_query" not in PatchConfig().key_fields()
    assert "tries" not in PatchConfig().key_fields()
    assert PatchConfig(pairs_per_query=2).key_fields() != PatchConfig().key_fields()
    with pytest.raises(InputError, match="candidate pairs tried"):
        PatchConfig(pairs=5, tries=2).validate()


def test_a_collection_declares_its_relevance_threshold(tmp_path):
    plain = load_folder(write_folder(tmp_path / "plain"))
    strict = load_folder(write_folder(tmp_path / "strict", settings={"relevance_threshold": 2}))
    assert plain.min_relevant == 1 and strict.min_relevant == 2
    pairs = candidate_pairs(plain, depth=6)
    scores = np.where(pairs.docno == "d4", 9.0, 0.0)  # the grade-1 passage first
    assert evaluate(plain, pairs, scores)["MRR@10"] > evaluate(strict, pairs, scores)["MRR@10"]
    with pytest.raises(InputError, match=r"collection.json: relevance threshold 4 is outside"):
        load_folder(write_folder(tmp_path / "high", settings={"relevance_threshold": 4}))
    with pytest.raises(InputError, match="whole number"):
        load_folder(write_folder(tmp_path / "bad", settings={"relevance_threshold": "two"}))
    with pytest.raises(InputError, match="outside the collection's positive grades"):
        with_relevance_threshold(plain, 0)


def test_bad_run_and_qrels_files_get_one_sentence_naming_file_and_line(tmp_path):
    run = "q1 Q0 d1 1 2.0 bm25\nq1 Q0 d99 2 1.0 bm25\n"
    with pytest.raises(InputError, match=r"run.txt line 2: document 'd99' is not in the "
                                         r"collection's documents.*add their texts"):
        load_folder(write_folder(tmp_path / "missing", run=run))
    collection = load_folder(write_folder(tmp_path / "ok"))
    other = tmp_path / "other-qrels.txt"
    other.write_text("301 0 FT911-3 1\n")
    with pytest.raises(InputError, match="another collection"):
        with_qrels(collection, other)
    broken = tmp_path / "broken-qrels.txt"
    broken.write_text("q1 0 d1 3\nq1 0 d2\n")
    with pytest.raises(InputError, match="broken-qrels.txt line 2: wrong field count"):
        with_qrels(collection, broken)
    with pytest.raises(InputError, match="file not found"):
        with_qrels(collection, tmp_path / "nope.txt")


def test_evaluate_cli_refuses_a_missing_qrels_file_and_writes_nothing(tmp_path):
    folder = write_folder(tmp_path / "c")
    store = tmp_path / "s.duckdb"
    out = run_cli("evaluate", "--ranker", "minilm-cross-encoder", "--collection", str(folder),
                  "--qrels", str(tmp_path / "nope.txt"), store=store)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'nope.txt'}: file not found"
    assert not store.exists()


def test_official_qrels_keep_judgments_of_passages_without_text(tmp_path):
    collection = load_folder(write_folder(tmp_path / "c"))
    qrels = tmp_path / "official.txt"
    qrels.write_text("q1 0 d1 3\nq1 0 unseen 3\nq2 0 d2 2\n")
    judged = with_qrels(collection, qrels)
    pairs = candidate_pairs(collection, depth=6)
    scores = np.where(pairs.docno == "d1", 9.0, 0.0)
    # the unseen grade-3 passage lowers the ideal-DCG ratio of q1
    assert evaluate(judged, pairs, scores)["nDCG@10"] < evaluate(collection, pairs, scores)["nDCG@10"]
