"""The adapter training script on real-judgment data: groups, the dev split, determinism."""

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from core.data import load_folder

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("train_adapters", ROOT / "scripts" / "train_adapters.py")
train_adapters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_adapters)

TOPICS = ["honey storage", "wisdom tooth removal", "google docs saving", "public records",
          "solar panels", "river otters", "bread baking", "tax deadlines"]


def tiny_trec_dl(path: Path) -> Path:
    """A TREC-DL-shaped folder: 8 queries, graded qrels, a BM25-tagged run, official qrels."""
    path.mkdir()
    docs, qrels, run = [], [], []
    for q, topic in enumerate(TOPICS):
        qid = str(1000 + q)
        for d in range(10):
            docno = f"{qid}-{d}"
            grade = [3, 2, 1, 0, 0, 0, 0, 0, 0, 0][d]
            text = (f"{topic} explained ({d}): how {topic} works and why it matters."
                    if grade >= 2 else f"a note on {TOPICS[(q + d) % len(TOPICS)]} in passing "
                                       f"({d}).")
            docs.append({"doc_id": docno, "title": "", "text": text})
            if d < 9:
                qrels.append(f"{qid} 0 {docno} {grade}")
            run.append(f"{qid} Q0 {docno} {d + 1} {10.0 - d} bm25")
    (path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    (path / "queries.tsv").write_text("".join(f"{1000 + q}\t{t}\n" for q, t in enumerate(TOPICS)))
    (path / "qrels.txt").write_text("\n".join(qrels) + "\n")
    (path / "official-qrels.txt").write_text("\n".join(qrels + ["1000 0 unseen 3"]) + "\n")
    (path / "run.txt").write_text("\n".join(run) + "\n")
    return path


def test_groups_hold_every_lower_graded_candidate_and_dev_queries_are_held_out(tmp_path):
    collection = load_folder(tiny_trec_dl(tmp_path / "dl"))
    train, dev = train_adapters.dl_split(collection)
    assert dev == ["1003", "1007"] and not set(train) & set(dev) and len(train) == 6
    groups = train_adapters.folder_groups(collection, train, random.Random(0))
    assert len(groups) == 2 * len(train)  # one group per passage of grade >= 2
    for query, positive, negatives, grades, grade in groups:
        assert grade >= 2 and all(g < grade for g in grades)
        # the unjudged run passage (d = 9) counts as grade 0
        assert len(negatives) == (9 if grade == 3 else 8)
    strict = train_adapters.folder_groups(collection, train, random.Random(0), min_negatives=9)
    assert len(strict) == len(train) and {g[4] for g in strict} == {3}
    assert {g[0] for g in groups} == {TOPICS[int(q) - 1000] for q in train}


def test_near_identical_passages_of_a_query_are_one_candidate_with_the_best_grade(tmp_path):
    """MS MARCO v2 repeats passages with other spacing or case, sometimes judged differently:
    such copies are one candidate (graded by the best judgment), never an answer and a
    negative of the same group."""
    root = tiny_trec_dl(tmp_path / "dl")
    docs = [json.loads(line) for line in (root / "docs.jsonl").read_text().splitlines()]
    for doc in docs:  # passage 5 of each query (grade 0) copies its grade-3 answer, re-spaced
        if doc["doc_id"].endswith("-5"):
            answer = next(d for d in docs if d["doc_id"] == doc["doc_id"][:-1] + "0")
            doc["text"] = "  " + answer["text"].upper().replace(" ", "  ")
    (root / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    collection = load_folder(root)
    train, _ = train_adapters.dl_split(collection)
    groups = train_adapters.folder_groups(collection, train, random.Random(0))
    assert len(groups) == 2 * len(train)  # still one group per answer
    for query, positive, negatives, grades, grade in groups:
        keys = [train_adapters._text_key(t) for t in (positive, *negatives)]
        assert len(set(keys)) == len(keys)  # no passage twice in a group
        assert len(negatives) == (8 if grade == 3 else 7)  # the copy is gone from the pool


def test_training_on_a_slice_is_deterministic(tmp_path):
    root = tiny_trec_dl(tmp_path / "dl")
    reports, weights = [], []
    for run in ("a", "b"):
        out = tmp_path / run / "minilm-cross-encoder"
        reports.append(train_adapters.train("minilm-cross-encoder", steps=3, collection_root=root,
                                            queries=2, dev_queries=1, output=out))
        weights.append(load_file(str(out / "adapter_model.safetensors")))
        assert json.loads((out / "rankscope.json").read_text())["chosen_checkpoint"] == "step_3"
        assert not out.with_name(out.name + ".best").exists()
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 0
    for key in weights[0]:
        assert np.array_equal(weights[0][key], weights[1][key]), key
    for report in reports:
        report.pop("train_seconds")
    assert reports[0] == reports[1]
    assert reports[0]["data"].startswith("dl: 2 training / 1 dev queries")
    assert reports[0]["training_groups"] == 4


def test_a_stopped_training_resumes_to_the_uninterrupted_result(tmp_path, capsys):
    root = tiny_trec_dl(tmp_path / "dl")
    whole = tmp_path / "whole" / "minilm-cross-encoder"
    parts = tmp_path / "parts" / "minilm-cross-encoder"
    common = dict(steps=5, collection_root=root, queries=2, dev_queries=1, eval_every=2,
                  save_every=2)
    expected = train_adapters.train("minilm-cross-encoder", output=whole, **common)
    assert train_adapters.train("minilm-cross-encoder", output=parts, stop_after=3,
                                **common) is None
    assert not parts.exists() and parts.with_name(parts.name + ".resume").is_dir()
    # a different recipe must not continue this state
    with pytest.raises(train_adapters.TrainingError, match="another recipe"):
        train_adapters.train("minilm-cross-encoder", output=parts,
                             overrides={"lr": 1e-4}, **common)
    capsys.readouterr()
    resumed = train_adapters.train("minilm-cross-encoder", output=parts, **common)
    printed = capsys.readouterr().out
    # it continued (steps 4 and 5 only; the 'before' figure came from the saved state)
    assert "resuming at step 3" in printed and "step    0" not in printed
    assert not parts.with_name(parts.name + ".resume").exists()
    a, b = (load_file(str(folder / "adapter_model.safetensors")) for folder in (whole, parts))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    for report in (expected, resumed):
        report.pop("train_seconds")
    assert resumed == expected and expected["chosen_checkpoint"] in ("step_2", "step_4",
                                                                     "step_5")


class LookupRanker:
    """A 'ranker' whose score of a document is one trainable number (no model)."""

    def __init__(self, documents):
        self.index = {d: i for i, d in enumerate(documents)}
        self.values = torch.zeros(len(documents), requires_grad=True)

    def encode(self, queries, documents):
        return documents

    def forward(self, documents):
        return self.values[[self.index[d] for d in documents]]


def test_the_judges_yes_no_term_is_balanced_and_only_added_when_asked():
    group = ("q", "answer", ["on topic", "off a", "off b"], [1, 0, 0], 3)

    def loss_and_grad(bce):
        ranker = LookupRanker(["answer", "on topic", "off a", "off b"])
        loss = train_adapters._graded_group_loss(ranker, [group], 4, random.Random(0),
                                                 pool=None, bce=bce)
        loss.backward()
        return float(loss), ranker.values.grad.numpy()

    plain, plain_grad = loss_and_grad(0.0)
    judged, judged_grad = loss_and_grad(1.0)
    # at LD = 0 every binary cross-entropy is ln 2; the answer weighs as much as the 3 no's
    # together: mean of (3, 1, 1, 1) × ln 2
    assert judged - plain == pytest.approx(1.5 * np.log(2), rel=1e-6)
    extra = judged_grad - plain_grad
    assert extra[0] == pytest.approx(-0.375) and np.allclose(extra[1:], 0.125)
    assert extra.sum() == pytest.approx(0.0, abs=1e-7)  # yes pushed up as hard as no's down


def test_a_training_that_cannot_start_says_why_and_writes_nothing(tmp_path):
    """A missing data folder or a recipe value out of range: one sentence, exit 2 from the
    command, nothing in the adapter folder."""
    import subprocess
    import sys

    out = tmp_path / "adapters" / "minilm-cross-encoder"
    with pytest.raises(train_adapters.TrainingError, match="training data folder .* missing"):
        train_adapters.train("minilm-cross-encoder", collection_root=tmp_path / "nope",
                             output=out)
    with pytest.raises(train_adapters.TrainingError, match="lr=-0.1 is out of range"):
        train_adapters.train("minilm-cross-encoder", overrides={"lr": -0.1}, output=out)
    assert not (tmp_path / "adapters").exists()
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_adapters.py"),
                           "minilm-cross-encoder", "--set", "group_size=1", "--output",
                           str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "group_size=1 is out of range" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "adapters").exists()
