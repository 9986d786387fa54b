"""Collections: the demo collection's promises, loaders, and malformed files."""

import json

import pandas as pd
import pytest

from core.data import (SHARED_DATA as SHARED, Collection, load_collection, load_folder,
                       read_trec_qrels, read_tsv, validate)
from core.errors import InputError
from core.retrieval import candidate_pairs


def test_demo_collection_is_deterministic_and_large_enough(demo):
    again = load_collection("demo")
    assert demo.content_hash == again.content_hash
    assert len(demo.queries) >= 300
    assert set(demo.qrels.relevance) == {0, 1, 2, 3}
    pairs = candidate_pairs(demo)
    per_query = pairs.groupby("qid").size()
    assert per_query.min() >= 20 and len(per_query) == len(demo.queries)
    # every query has an answering passage among its candidates and at least one that is not
    best = pairs.groupby("qid").relevance.max()
    assert (best >= 2).mean() > 0.95
    assert (pairs.groupby("qid").relevance.min() <= 1).all()


def test_demo_features_spread_over_their_ranges(demo):
    lengths = demo.docs.text.str.split().str.len()
    assert lengths.min() < 25 and lengths.max() > 70
    pairs = candidate_pairs(demo, limit_queries=60)
    overlap = [len(set(q.split()) & set(d.lower().split())) / len(set(q.split()))
               for q, d in zip(pairs["query"], pairs["document"])]
    assert min(overlap) < 0.3 and max(overlap) > 0.7


def test_demo_held_out_split(demo):
    assert (demo.queries.split == "test").sum() == len(demo.queries) // 5


def _write(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_tsv_wrong_field_count_names_file_and_line(tmp_path):
    path = _write(tmp_path, "queries.tsv", "1\tgood query\n2 no tab at all\n")
    with pytest.raises(InputError, match=r"queries.tsv line 2: wrong field count.*got 1"):
        read_tsv(path, ["qid", "text"])
    skipped = {}
    frame = read_tsv(path, ["qid", "text"], strict=False, skipped=skipped)
    assert frame.qid.tolist() == ["1"] and sum(skipped.values()) == 1


def test_non_utf8_bytes_are_reported_with_line(tmp_path):
    path = _write(tmp_path, "queries.tsv", b"1\tfine\n2\tcaf\xe9\n")
    with pytest.raises(InputError, match=r"line 2: not valid UTF-8"):
        read_tsv(path, ["qid", "text"])


def test_bom_is_tolerated(tmp_path):
    path = _write(tmp_path, "queries.tsv", b"\xef\xbb\xbf1\thello\n")
    assert read_tsv(path, ["qid", "text"]).qid.tolist() == ["1"]


def test_qrels_wrong_fields_and_non_integer_grade(tmp_path):
    path = _write(tmp_path, "qrels.txt", "1 0 d1 1\n1 0 d2\n1 0 d3 x\n")
    with pytest.raises(InputError, match="line 2: wrong field count"):
        read_trec_qrels(path)
    skipped = {}
    frame = read_trec_qrels(path, strict=False, skipped=skipped)
    assert frame.docno.tolist() == ["d1"] and sum(skipped.values()) == 2


def _collection(**frames):
    docs = pd.DataFrame({"docno": ["d1", "d2"], "title": ["", ""], "text": ["a b", "c d"]})
    queries = pd.DataFrame({"qid": ["1"], "text": ["a"]})
    qrels = pd.DataFrame({"qid": ["1"], "docno": ["d1"], "relevance": [1]})
    parts = {"docs": docs, "queries": queries, "qrels": qrels, **frames}
    return Collection("t", parts["docs"], parts["queries"], parts["qrels"])


def test_unknown_qid_in_qrels_raises_or_is_counted():
    bad = pd.DataFrame({"qid": ["1", "99"], "docno": ["d1", "d1"], "relevance": [1, 1]})
    with pytest.raises(InputError, match="unknown query id '99'"):
        validate(_collection(qrels=bad))
    kept = validate(_collection(qrels=bad), strict=False)
    assert len(kept.qrels) == 1 and kept.skipped["qrels with unknown query id"] == 1


def test_duplicate_ids_and_empty_texts():
    docs = pd.DataFrame({"docno": ["d1", "d1", "d2"], "title": "", "text": ["a", "b", "  "]})
    with pytest.raises(InputError, match="duplicate document id 'd1'"):
        validate(_collection(docs=docs))
    kept = validate(_collection(docs=docs), strict=False)
    assert kept.docs.docno.tolist() == ["d1"]
    assert kept.skipped["empty document text"] == 1


def test_negative_grade_is_refused():
    bad = pd.DataFrame({"qid": ["1"], "docno": ["d1"], "relevance": [-1]})
    with pytest.raises(InputError, match="negative grade"):
        validate(_collection(qrels=bad))


def test_beir_folder(tmp_path):
    (tmp_path / "qrels").mkdir()
    _write(tmp_path, "corpus.jsonl", "\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "T", "text": "wind turbines turn"},
        {"_id": "d2", "title": "", "text": "bees make honey"}]))
    _write(tmp_path, "queries.jsonl", json.dumps({"_id": "q1", "text": "honey"}))
    _write(tmp_path, "qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    collection = load_folder(tmp_path, strict=True)
    assert collection.qrels.to_dict("records") == [{"qid": "q1", "docno": "d2", "relevance": 1}]


def test_msmarco_tsv_folder_with_trec_run(tmp_path):
    _write(tmp_path, "collection.tsv", "d1\tfirst passage\nd2\tsecond passage\n")
    _write(tmp_path, "queries.tsv", "q1\tfirst\n")
    _write(tmp_path, "qrels.txt", "q1 0 d1 1\n")
    _write(tmp_path, "run.txt", "q1 Q0 d2 1 2.5 bm25\nq1 Q0 d1 2 1.5 bm25\n")
    collection = load_folder(tmp_path, strict=True)
    pairs = candidate_pairs(collection)
    assert pairs.docno.tolist() == ["d2", "d1"] and pairs.relevance.tolist() == [0, 1]


def test_a_passage_whose_text_holds_tabs_is_read_to_the_end_of_its_line(tmp_path):
    """Tables copied from web pages hold tabs: such a passage loads whole (it went missing,
    and the run then named a document the collection lacked)."""
    _write(tmp_path, "collection.tsv", "d1\tprice\t4.99\tin stock\nd2\tsecond passage\n")
    _write(tmp_path, "queries.tsv", "q1\tprice of\thoney\n")
    _write(tmp_path, "qrels.txt", "q1 0 d1 1\n")
    _write(tmp_path, "run.txt", "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1.5 bm25\n")
    collection = load_folder(tmp_path, strict=True)
    assert collection.docs.text.tolist() == ["price\t4.99\tin stock", "second passage"]
    assert collection.queries.text.tolist() == ["price of\thoney"]
    assert candidate_pairs(collection).docno.tolist() == ["d1", "d2"]


def test_a_folder_without_qrels_loads_and_refuses_only_what_needs_judgments(tmp_path):
    """TREC DL 2022 here has no judgments: it is candidates and text for extraction,
    features and scoring; evaluation and relevance pairs are refused in one sentence."""
    import numpy as np

    from core.metrics import evaluate
    from core.retrieval import relevance_pairs

    _write(tmp_path, "collection.tsv", "d1\tfirst passage\nd2\tsecond passage\n")
    _write(tmp_path, "queries.tsv", "q1\tfirst\n")
    _write(tmp_path, "run.txt", "q1 Q0 d2 1 2.5 bm25\nq1 Q0 d1 2 1.5 bm25\n")
    collection = load_folder(tmp_path, strict=True)
    assert not collection.judged and len(candidate_pairs(collection)) == 2
    pairs = candidate_pairs(collection)
    with pytest.raises(InputError, match="has no relevance judgments .* cannot give nDCG@10"):
        evaluate(collection, pairs, np.zeros(len(pairs)))
    with pytest.raises(InputError, match="cannot give pairs of a relevant"):
        relevance_pairs(collection, 1)


@pytest.mark.skipif(not (SHARED / "trec-dl-2022").is_dir(), reason="shared data absent")
def test_trec_dl_2021_and_2022_load_by_name():
    judged, unjudged = load_collection("trec-dl-2021"), load_collection("trec-dl-2022")
    assert (len(judged.queries), len(judged.qrels), judged.min_relevant) == (53, 4812, 2)
    assert judged.run is not None and judged.run_is_bm25 and not judged.skipped
    assert (len(unjudged.queries), len(unjudged.docs), unjudged.judged) == (76, 16660, False)
    assert unjudged.min_relevant == 2 and len(candidate_pairs(unjudged, 100)) == 7600


def test_trec_run_with_nan_score(tmp_path):
    _write(tmp_path, "collection.tsv", "d1\tx\n")
    _write(tmp_path, "queries.tsv", "q1\tx\n")
    _write(tmp_path, "qrels.txt", "q1 0 d1 1\n")
    _write(tmp_path, "run.txt", "q1 Q0 d1 1 nan bm25\n")
    with pytest.raises(InputError, match="run.txt line 1: score is not finite"):
        load_folder(tmp_path, strict=True)


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        load_collection(tmp_path / "nope")
    with pytest.raises(InputError, match="no documents found"):
        load_folder(tmp_path)


def test_cranfield_loads_with_counted_skips(cranfield_dir):
    collection = load_folder(cranfield_dir)
    assert len(collection.queries) == 226 and len(collection.docs) == 1403
    assert collection.skipped["empty text"] == 2  # two abstracts are empty (README)
    assert candidate_pairs(collection, limit_queries=3).groupby("qid").size().min() == 20


def test_qids_of_a_split_and_of_a_collection_without_splits(demo, cranfield_dir):
    from core.data import load_collection
    from core.errors import InputError

    test = demo.qids("test")
    assert test == demo.queries[demo.queries["split"] == "test"].qid.tolist() and len(test) == 72
    assert demo.qids(None) is None
    with pytest.raises(InputError, match="no query in split 'dev'.*its splits: test, train"):
        demo.qids("dev", required=True)
    with pytest.raises(InputError, match="no query in split 'banana'"):
        demo.qids("banana")  # an analysis default or not: a split it lacks is never "no query"
    cranfield = load_collection(str(cranfield_dir))
    assert cranfield.qids("test") is None  # an analysis default: every query
    with pytest.raises(InputError, match="has no query splits; drop --split"):
        cranfield.qids("test", required=True)  # the user asked for it
