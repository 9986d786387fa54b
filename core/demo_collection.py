"""The generated demo collection: deterministic English passages with graded relevance.

Context:
    Classrooms have no hub access, so RankScope ships a collection it builds itself. Each query
    asks about one *aspect* (symptoms, habitat, how it works, ...) of one *subject* (influenza,
    the red fox, a wind turbine, ...). Passages are written from sentence templates whose slots
    are filled from per-category word pools (the data file ``demo_collection.json`` beside
    this module), so the text reads as plain English while every relevance label is known by
    construction.

Intuition:
    Relevance needs more than term matching. Answering passages often use a paraphrase of the
    aspect word ("signs" for "symptoms"), while passages about *other* subjects repeat the
    literal aspect word, and passages about the same subject but another aspect repeat the
    subject name. BM25 is therefore a fair but beatable baseline, and the IR features of the
    probing study (coverage, TF, stream length, similarities) spread over their ranges.

Grades (per query = subject s, aspect a):
    3: the long passage about (s, a) — a full answer;
    2: the short passage about (s, a) — a partial answer;
    1: any other passage about s — on topic, does not answer;
    0: everything else (passages on other subjects, general-interest passages).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DEMO_SEED = 13  # fixed: the collection is part of the project, not a random draw
HELD_OUT_EVERY = 5  # every 5th query (qid order) is held out from adapter training
TEMPLATES = Path(__file__).with_name("demo_collection.json")  # the categories' templates


@dataclass(frozen=True)
class Aspect:
    name: str
    queries: tuple[str, ...]  # templates with {s}
    literal: str  # the aspect word as users type it (BM25 bait in distractors)
    answers: tuple[str, ...]  # answer sentence templates with {s}, {a1}, {a2}, {a3}
    pool: tuple  # values for {a1}..{a3}: one tuple shared by all slots, or three tuples (one a slot)


@dataclass(frozen=True)
class Category:
    name: str
    subjects: tuple[str, ...]
    aspects: tuple[Aspect, ...]
    fillers: tuple[str, ...]  # on-topic sentences that answer nothing, with {s}


def _tuples(value):
    """JSON lists back to the tuples the templates were written as (nested)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _load_templates(path: Path = TEMPLATES) -> tuple[tuple[Category, ...], dict, tuple]:
    """The categories (subjects, aspects with their query / answer templates and word pools,
    on-topic fillers), the paraphrased aspect leads and the general-interest sentences, from
    the data file beside this module."""
    data = json.loads(path.read_text(encoding="utf-8"))
    categories = tuple(
        Category(c["name"], _tuples(c["subjects"]),
                 tuple(Aspect(a["name"], _tuples(a["queries"]), a["literal"],
                              _tuples(a["answers"]), _tuples(a["pool"])) for a in c["aspects"]),
                 _tuples(c["fillers"]))
        for c in data["categories"])
    leads = {name: _tuples(values) for name, values in data["aspect_leads"].items()}
    return categories, leads, _tuples(data["general_topics"])


CATEGORIES, ASPECT_LEADS, GENERAL_TOPICS = _load_templates()


def _capitalise(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _answer_sentences(rng: random.Random, aspect: Aspect, subject: str, count: int) -> list[str]:
    templates = rng.sample(aspect.answers, k=min(count, len(aspect.answers)))
    out = []
    for template in templates:
        if isinstance(aspect.pool[0], tuple):
            a1, a2, a3 = (rng.choice(slot) for slot in aspect.pool)
        else:
            a1, a2, a3 = rng.sample(aspect.pool, k=3)
        out.append(_capitalise(template.format(s=subject, a1=a1, a2=a2, a3=a3)))
    return out


def _lead(rng: random.Random, aspect: Aspect, subject: str) -> str:
    # Half the answering passages open with the literal aspect word, half with a paraphrase.
    words = aspect.literal if rng.random() < 0.35 else rng.choice(ASPECT_LEADS[aspect.name])
    return f"{_capitalise(subject)} — {words}."


def _add_distractors(rng: random.Random, docs: list[dict],
                     subject_docs: dict[str, list[str]]) -> None:
    """Other-subject passages that repeat the literal aspect word (BM25 bait)."""
    for category in CATEGORIES:
        for aspect in category.aspects:
            for _ in range(3):
                other = rng.choice(category.subjects)
                filler = [_capitalise(f.format(s=other)) for f in rng.sample(category.fillers, k=2)]
                general = rng.choice(GENERAL_TOPICS)
                closing = rng.choice([g for g in GENERAL_TOPICS if g != general])
                text = " ".join([general.format(lit=aspect.literal), *filler,
                                 closing.format(lit=aspect.literal)])
                docno = f"D{len(docs) + 1:04d}"
                docs.append({"docno": docno, "title": f"About {aspect.literal}", "text": text,
                             "_subject": other, "_aspect": "", "_kind": "distractor"})
                subject_docs[other].append(docno)


def _queries_and_judgments(rng: random.Random, docs: list[dict],
                           subject_docs: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
    """One query per (subject, aspect) and its graded judgments: 3 = the full answer, 2 = the
    brief one, 1 = the subject's other passages, 0 = same-aspect passages of two other
    subjects."""
    queries: list[dict] = []
    qrels: list[dict] = []
    by_docno = {d["docno"]: d for d in docs}
    for category in CATEGORIES:
        for subject in category.subjects:
            for aspect in category.aspects:
                template = rng.choice(aspect.queries)
                qid = f"Q{len(queries) + 1:03d}"
                split = "test" if len(queries) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1 else "train"
                queries.append({"qid": qid, "text": template.format(s=subject), "split": split,
                                "_subject": subject, "_aspect": aspect.name})
                for docno in subject_docs[subject]:
                    doc = by_docno[docno]
                    if doc["_kind"] == "distractor":
                        continue  # judged below with the other non-relevant candidates
                    grade = 1
                    if doc["_aspect"] == aspect.name:
                        grade = 3 if doc["_kind"] == "full" else 2
                    qrels.append({"qid": qid, "docno": docno, "relevance": grade})
                # Same-aspect passages of two other subjects: judged non-relevant.
                others = [s for s in category.subjects if s != subject]
                for other in rng.sample(others, k=2):
                    for docno in subject_docs[other]:
                        doc = by_docno[docno]
                        if doc["_aspect"] == aspect.name and doc["_kind"] == "full":
                            qrels.append({"qid": qid, "docno": docno, "relevance": 0})
    return queries, qrels


def build_demo_collection(seed: int = DEMO_SEED) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Build (docs, queries, qrels) frames of the demo collection.

    Returns:
        docs ``[docno, title, text]``, queries ``[qid, text, split]`` (split: train / test),
        qrels ``[qid, docno, relevance]`` with grades 0–3 for every (query, judged doc).
    """
    rng = random.Random(seed)
    docs: list[dict] = []
    subject_docs: dict[str, list[str]] = {}
    for category in CATEGORIES:
        for subject in category.subjects:
            subject_docs[subject] = []
            for aspect in category.aspects:
                for kind in ("full", "brief"):
                    n_answers = rng.randint(3, 4) if kind == "full" else 1
                    n_fillers = rng.randint(0, 2) if kind == "full" else rng.randint(1, 3)
                    body = _answer_sentences(rng, aspect, subject, n_answers)
                    fillers = [_capitalise(f.format(s=subject))
                               for f in rng.sample(category.fillers, k=n_fillers)]
                    sentences = body + fillers
                    rng.shuffle(sentences)
                    if kind == "full" and rng.random() < 0.6:
                        sentences.insert(0, _lead(rng, aspect, subject))
                    docno = f"D{len(docs) + 1:04d}"
                    title = f"{_capitalise(subject)}: {rng.choice(ASPECT_LEADS[aspect.name])}"
                    docs.append({"docno": docno, "title": title, "text": " ".join(sentences),
                                 "_subject": subject, "_aspect": aspect.name, "_kind": kind})
                    subject_docs[subject].append(docno)
            # A general passage per subject: on topic, answers no aspect.
            docno = f"D{len(docs) + 1:04d}"
            sentences = [_capitalise(f.format(s=subject)) for f in category.fillers]
            rng.shuffle(sentences)
            docs.append({"docno": docno, "title": _capitalise(subject),
                         "text": " ".join(sentences[: rng.randint(2, 4)]),
                         "_subject": subject, "_aspect": "", "_kind": "general"})
            subject_docs[subject].append(docno)
    _add_distractors(rng, docs, subject_docs)
    queries, qrels = _queries_and_judgments(rng, docs, subject_docs)
    docs_frame = pd.DataFrame(docs)[["docno", "title", "text"]]
    queries_frame = pd.DataFrame(queries)[["qid", "text", "split"]]
    qrels_frame = pd.DataFrame(qrels).drop_duplicates(["qid", "docno"])
    return docs_frame, queries_frame, qrels_frame.reset_index(drop=True)
