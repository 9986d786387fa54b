"""Train the LoRA adapters of the embedded rankers (deterministic).

    python scripts/train_adapters.py minilm-cross-encoder          # TREC DL 2020 (train / dev)
    python scripts/train_adapters.py smollm2-ranker smollm2-judge  # TREC DL 2020 (train / dev)
    python scripts/train_adapters.py minilm-cross-encoder-demo     # demo-trained variants
    python scripts/train_adapters.py smollm2-ranker-demo smollm2-judge-demo

Data. ``minilm-cross-encoder``, ``smollm2-ranker`` and ``smollm2-judge`` are trained on TREC
DL 2020 (``../shared/data/trec-dl-2020``:
MS MARCO passages, NIST graded judgments, the BM25 top-100): each group is one passage of
grade >= 2, lower-graded passages of the same query (judged ones and the BM25 top-100, where an
unjudged passage counts as grade 0) and answers of other queries (below everything), with the
zero-shot bi-encoder's listwise distillation added. Every 4th 2020 query (sorted by id) is a
dev query: the model trains on the others, nDCG@10 (official qrels) of re-ranking the dev
queries' BM25 top-100 (SmolLM2: top-20) is measured every ``eval_every`` steps, and the
checkpoint with the best
dev nDCG@10 is the one saved. TREC DL 2019 is the test set and is never read here.
The ``-demo`` variants are trained on the demo collection's template sentences, on its
training queries (every 5th demo query is held out).

A run saves its state every ``SAVE_EVERY`` steps (``<adapter>.resume``); after Ctrl-C, a
crash or ``--stop-after N`` the same command continues from there.

Recipe (RankLlama, Ma et al. 2023, in miniature): LoRA on the linear layers of the attention
and MLP blocks plus a trainable one-logit score head; each step sees groups of one answering
passage and lower-graded passages, trained with a softmax cross-entropy of each member against
the members graded below it (RankLlama's contrastive loss, generalised to grades). The judge
learns yes/no with a binary cross-entropy on LD = logit(yes) − logit(no), on pointwise prompts
and (one step in four) on pairwise prompts in both orders; on TREC DL its pointwise steps use
the graded groups and teacher too, with the yes/no cross-entropy added.

The adapter, its score head and a ``rankscope.json`` with the base fingerprint, the recipe, the
data and the numbers reached are written to ``adapters/<name>/``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch


from core import models  # noqa: E402
from core.data import demo_collection  # noqa: E402
from core.retrieval import candidate_pairs  # noqa: E402

SEED = 20260101
LLM_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEMO_RECIPES = {
    "minilm-cross-encoder-demo": {"steps": 300, "groups_per_step": 4, "group_size": 4,
                                  "lr": 5e-4, "eval_pairs": 120,
                                  "targets": ["query", "key", "value", "dense"]},
    # SmolLM2: LoRA on the top 18 of 30 blocks, so backward stops at block 12 (≈1.8× cheaper
    # steps on a 2-core CPU); all-layer LoRA at lr 4e-4, 2 groups a step stayed at chance loss
    # after 120 steps here. The judge collapsed to LD ≈ 0 (loss ln 2) at lr 5e-4.
    # Graded groups (v2): an answer, an on-topic non-answer (grade 1) and off-topic passages,
    # each member contrasted with the lower-graded ones. v1 (answers vs any grade ≤ 1, same
    # steps) reached held-out pairwise accuracy 0.850 but demo nDCG@10 0.683 < BM25's 0.729: it
    # never learned that grade 1 beats grade 0, and nDCG@10 is mostly grade-1 passages.
    "smollm2-ranker-demo": {"steps": 200, "groups_per_step": 4, "group_size": 4, "lr": 1e-3,
                            "eval_pairs": 80, "graded": True, "layers": list(range(12, 30)),
                            "targets": LLM_TARGETS},
    # The judge plateaued near loss ln 2 (LD ≈ constant) with plain BCE at lr 5e-4 and 2e-4 for
    # 100–160 steps; the listwise term over one answer and three non-answers, which taught the
    # ranker, is added to the BCE.
    "smollm2-judge-demo": {"steps": 200, "groups_per_step": 4, "group_size": 2, "lr": 1e-3,
                           "judge_group_size": 4, "eval_pairs": 80, "max_negative_grade": 1,
                           "layers": list(range(12, 30)), "targets": LLM_TARGETS},
}
# Recipes on real judgments (TREC DL 2020); the checkpoint is chosen by nDCG@10 on the 2020 dev
# queries and the dev curve is in the adapter's rankscope.json.
DL_RECIPES = {
    # v1 (graded groups of 8 from the query's own candidates, no teacher) fitted the training
    # groups (loss 1.8 -> 0.8) but ranked dev queries at chance: dev nDCG@10 0.078 (fresh
    # head), 0.220 at step 160, 0.200 at 320 (BM25 0.534, random order 0.164, the demo-trained
    # adapter 0.446); stopped there. v2 adds answers of other queries to each group and the
    # bi-encoder teacher's listwise distillation (kept: dev 0.496 / 0.516 / 0.504 at steps
    # 160 / 320 / 480). v3 added GPL-style pseudo-query groups every other step
    # (``--set pseudo_queries=1000``: 4–8-word crops of 2020 passages outside the dev queries'
    # candidates, the teacher's top-30 as members): dev nDCG@10 0.500 with raw crops and 0.495
    # with crops trimmed of stop words at step 160, no better than v2's 0.496 there; stopped.
    # v2 with distill = 4 (``--set distill=4``): dev 0.459 at step 160; stopped.
    "minilm-cross-encoder": {"data": ["trec-dl-2020", "trec-dl-2021"], "steps": 640,
                             "groups_per_step": 4,
                             "group_size": 8, "cross_negatives": 2, "lr": 5e-4, "lora_r": 16,
                             "graded": True, "distill": 1.0, "teacher_temperature": 0.05,
                             "targets": ["query", "key", "value", "dense"],
                             "eval_every": 160},
    "minilm-cross-encoder-dl20": {"data": "trec-dl-2020", "steps": 480, "groups_per_step": 4,
                             "group_size": 8, "cross_negatives": 2, "lr": 5e-4, "lora_r": 16,
                             "graded": True, "distill": 1.0, "teacher_temperature": 0.05,
                             "targets": ["query", "key", "value", "dense"],
                             "eval_every": 160},
    # SmolLM2 on TREC DL 2020: the MiniLM v2 groups (answer, lower-graded passages of its
    # query, answers of other queries) and the bi-encoder teacher, LoRA on the top 18 blocks as
    # the demo recipes. A SmolLM2 forward is ≈ 15× MiniLM's on this CPU, so the dev queries
    # re-rank their run's top-20 (the depth the ranker is tested at) and groups are smaller.
    # At lr 5e-4 (150 steps) the loss barely moved in 60 steps (ranker 2.58 -> 2.49) and dev
    # nDCG@10 at step 50 was 0.375 (ranker) / 0.387 (judge), below BM25's 0.534 on the dev
    # top-20 (before training: 0.361 / 0.341); stopped there for lr 1e-3 and 300 steps.
    "smollm2-ranker-dl20": {"data": "trec-dl-2020", "steps": 300, "groups_per_step": 2,
                       "group_size": 6, "cross_negatives": 2, "lr": 1e-3, "graded": True,
                       "distill": 1.0, "teacher_temperature": 0.05,
                       "layers": list(range(12, 30)), "targets": LLM_TARGETS,
                       "eval_every": 100, "dev_depth": 20},
    # The judge: the same groups on LD (pointwise prompt; negatives graded ≤ 1, so no answer
    # is ever a "no"), plus a balanced yes/no cross-entropy on LD; every 4th step pairwise
    # prompts in both orders.
    "smollm2-judge-dl20": {"data": "trec-dl-2020", "steps": 300, "groups_per_step": 2,
                      "group_size": 6, "cross_negatives": 2, "lr": 1e-3, "graded": True,
                      "distill": 1.0, "teacher_temperature": 0.05, "judge_bce": 1.0,
                      "max_negative_grade": 1, "layers": list(range(12, 30)),
                      "targets": LLM_TARGETS, "eval_every": 100, "dev_depth": 20},
    # 2020 + 2021 (81 training queries, 26 dev): the dl20 recipes were still learning at step
    # 300 (loss falling, dev flat), so twice the steps over twice the groups; dev top-20.
    "smollm2-ranker": {"data": ["trec-dl-2020", "trec-dl-2021"], "steps": 600,
                       "groups_per_step": 2, "group_size": 6, "cross_negatives": 2, "lr": 1e-3,
                       "graded": True, "distill": 1.0, "teacher_temperature": 0.05,
                       "layers": list(range(12, 30)), "targets": LLM_TARGETS,
                       "eval_every": 150, "dev_depth": 20},
    "smollm2-judge": {"data": ["trec-dl-2020", "trec-dl-2021"], "steps": 600,
                      "groups_per_step": 2, "group_size": 6, "cross_negatives": 2, "lr": 1e-3,
                      "graded": True, "distill": 1.0, "teacher_temperature": 0.05,
                      "judge_bce": 1.0, "max_negative_grade": 1, "layers": list(range(12, 30)),
                      "targets": LLM_TARGETS, "eval_every": 150, "dev_depth": 20},
}
for _name, _recipe in DEMO_RECIPES.items():
    _recipe.setdefault("data", "demo")
RECIPES = {**DEMO_RECIPES, **DL_RECIPES}
DEV_EVERY = 4  # every 4th TREC DL 2020 query (sorted by id) is a dev query
SAVE_EVERY = 10  # steps between saved training states (resume after an interruption)
DEV_DEPTH = 100  # dev re-ranks each held-out query's BM25 top-100, as the test does


class TrainingError(Exception):
    """A training that cannot start, in one sentence (the command exits 2, nothing written)."""


# recipe field → (smallest, largest) value allowed
RECIPE_RANGES = {"steps": (1, 100_000), "groups_per_step": (1, 256), "group_size": (2, 64),
                 "lr": (1e-7, 1.0), "lora_r": (1, 256), "eval_every": (1, 100_000),
                 "distill": (0.0, 100.0), "teacher_temperature": (1e-4, 10.0),
                 "cross_negatives": (0, 16), "judge_bce": (0.0, 100.0), "dev_depth": (1, 1000),
                 "unlabelled_groups": (1, 1_000_000), "pseudo_queries": (0, 1_000_000)}


def check_recipe(name: str, recipe: dict) -> None:
    """Refuse a recipe value out of range (a ``--set`` typo) before anything loads."""
    for key, (low, high) in RECIPE_RANGES.items():
        value = recipe.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= high:
            raise TrainingError(f"{name}: recipe value {key}={value!r} is out of range; it "
                                f"must be a number from {low} to {high}")


def training_groups(split: str, rng: random.Random, max_negative_grade: int | None = None
                    ) -> list[tuple[str, str, list[str], list[int], int]]:
    """(query, positive, negatives, their grades, positive grade) from BM25 top-20 of a split.

    Positives have grade ≥ 2. Negatives have a lower grade than the positive, and at most
    ``max_negative_grade`` when given (1 = only passages that do not answer: a grade-2 passage
    is never a "no" for the judge while another group calls it "yes").
    """
    collection = demo_collection()
    qids = collection.queries[collection.queries.split == split].qid.tolist()
    pairs = candidate_pairs(collection, qids=qids)
    groups = []
    for qid, frame in pairs.groupby("qid", sort=False):
        for _, positive in frame[frame.relevance >= 2].iterrows():
            negatives = frame[frame.relevance < positive.relevance]
            if max_negative_grade is not None:
                negatives = negatives[negatives.relevance <= max_negative_grade]
            if len(negatives) >= 3:
                groups.append((positive.query, positive.document, negatives.document.tolist(),
                               negatives.relevance.tolist(), int(positive.relevance)))
    rng.shuffle(groups)
    return groups


def dl_split(collection) -> tuple[list[str], list[str]]:
    """(train, dev) query ids of a TREC DL collection: every DEV_EVERY-th judged id (sorted)
    is dev. Only queries with judgments count (a run may hold unjudged queries)."""
    judged = set(collection.qrels.qid)
    qids = sorted((q for q in collection.queries.qid if q in judged),
                  key=lambda q: int(q) if q.isdigit() else q)
    dev = qids[DEV_EVERY - 1::DEV_EVERY]
    return [q for q in qids if q not in dev], dev


def _text_key(text: str) -> str:
    """Near-identical passages (MS MARCO v2 repeats a passage with other spacing or case)
    share this key."""
    return " ".join(text.lower().split())


def folder_groups(collection, qids: list[str], rng: random.Random,
                  max_negative_grade: int | None = None, depth: int = 100, min_negatives: int = 3
                  ) -> list[tuple[str, str, list[str], list[int], int]]:
    """Training groups of real judgments: one group per passage of grade ≥ 2.

    A query's candidates are its judged passages (with text) and its run's top-``depth``
    (an unjudged run passage counts as grade 0, the usual assumption for TREC DL's deep pools).
    Negatives are the candidates graded below the positive (and at most
    ``max_negative_grade``), in docno order; groups are shuffled by ``rng``.
    """
    from core.retrieval import doc_texts

    texts = dict(zip(collection.docs.docno, doc_texts(collection.docs)))
    queries = dict(zip(collection.queries.qid, collection.queries.text))
    run_pairs = candidate_pairs(collection, depth, qids=qids)
    grades: dict[str, dict[str, int]] = {q: {} for q in qids}
    for qid, docno, grade in run_pairs[["qid", "docno", "relevance"]].itertuples(index=False):
        grades[qid][docno] = int(grade)
    judged = collection.qrels[collection.qrels.qid.isin(qids)
                              & collection.qrels.docno.isin(texts.keys())]
    for qid, docno, grade in judged[["qid", "docno", "relevance"]].itertuples(index=False):
        grades[qid][docno] = int(grade)
    groups = []
    for qid in qids:
        # one candidate per distinct text (the lowest docno), graded by its best judgment:
        # two copies of one passage never face each other in a group
        kept: dict[str, tuple[str, int]] = {}
        for docno, grade in sorted(grades[qid].items()):
            key = _text_key(texts[docno])
            first, best = kept.get(key, (docno, grade))
            kept[key] = (first, max(best, grade))
        candidates = sorted(kept.values())
        for docno, grade in candidates:
            if grade < 2:
                continue
            negatives = [(d, g) for d, g in candidates if g < grade
                         and (max_negative_grade is None or g <= max_negative_grade)]
            if len(negatives) >= min_negatives:
                groups.append((queries[qid], texts[docno], [texts[d] for d, _ in negatives],
                               [g for _, g in negatives], grade))
    rng.shuffle(groups)
    return groups


def dev_ndcg(ranker: models.Ranker, parts: list[tuple], depth: int = DEV_DEPTH
             ) -> dict[str, float]:
    """nDCG@10 / MRR@10 of re-ranking the dev queries' run top-``depth`` (official qrels),
    over ``parts`` = [(collection, official qrels, dev qids)]: the mean over every dev query
    of every part, and each part's own figures (``nDCG@10 <name>``)."""
    from core.metrics import evaluate

    ranker.model.eval()
    totals: dict[str, float] = {}
    count, report = 0, {}
    for collection, official, qids in parts:
        pairs = candidate_pairs(collection, depth, qids=qids)
        scores = ranker.score(pairs["query"].tolist(), pairs["document"].tolist(), batch_size=32)
        figures = evaluate(official, pairs, scores)
        for metric, value in figures.items():
            totals[metric] = totals.get(metric, 0.0) + value * len(qids)
        count += len(qids)
        if len(parts) > 1:
            report[f"nDCG@10 {collection.name}"] = figures["nDCG@10"]
    return {**{metric: total / count for metric, total in totals.items()}, **report}


def unlabelled_groups(collection, count: int, rng: random.Random, members: int = 8,
                      depth: int = 100, top: int = 20) -> list[tuple[str, str, list[str],
                                                                     list[int], int]]:
    """Distillation groups on real queries without judgments (TREC DL 2022): each group is
    ``members`` distinct passages of one query's run top-``depth`` — half from the bi-encoder
    teacher's top-``top`` of them, half from the rest — all graded 0, so the group teaches the
    teacher's order only (and, with cross-query answers, that another query's answer ranks
    last). Queries are taken in turn; ``count`` groups in all."""
    pairs = candidate_pairs(collection, depth)
    by_query: dict[str, tuple[str, list[str]]] = {}
    for qid, frame in pairs.groupby("qid", sort=True):
        texts = list(dict.fromkeys(frame.document))  # the run's order, copies dropped
        seen, distinct = set(), []
        for text in texts:
            if _text_key(text) not in seen:
                seen.add(_text_key(text))
                distinct.append(text)
        by_query[qid] = (frame["query"].iloc[0], distinct)
    vectors = _cached_embeddings(sorted({t for q, texts in by_query.values()
                                         for t in (q, *texts)}))
    ordered = {}
    for qid, (query, texts) in by_query.items():
        similarity = np.array([float(vectors[query] @ vectors[t]) for t in texts])
        ordered[qid] = (query, [texts[i] for i in np.argsort(-similarity, kind="stable")])
    qids = [q for q in sorted(ordered) if len(ordered[q][1]) >= 2 * members]
    groups = []
    while len(groups) < count:
        qid = qids[len(groups) % len(qids)]
        query, texts = ordered[qid]
        chosen = rng.sample(texts[:top], k=members // 2) + rng.sample(texts[top:],
                                                                      k=members - members // 2)
        groups.append((query, chosen[0], chosen[1:], [0] * (members - 1), 0))
    rng.shuffle(groups)
    return groups


def bi_encoder_teacher(groups):
    """Cosine of all-MiniLM-L6-v2 sentence embeddings (the zero-shot bi-encoder, 0.64 nDCG@10
    on TREC DL 2019) for any (query, document) of the groups: ``teacher(queries, documents)``.
    Every text is embedded once, up front."""
    texts = sorted({t for query, positive, negatives, _, _ in groups
                    for t in (query, positive, *negatives)})
    started = time.perf_counter()
    vectors = _cached_embeddings(texts)
    print(f"teacher: {len(texts)} texts embedded in {time.perf_counter() - started:.0f}s",
          flush=True)

    def teacher(queries: list[str], documents: list[str]) -> np.ndarray:
        return np.array([float(vectors[q] @ vectors[d]) for q, d in zip(queries, documents)])

    return teacher


def _cached_embeddings(texts: list[str]) -> dict[str, np.ndarray]:
    """The bi-encoder's embedding of each text, computed once per machine.

    Kept in ``cache/teacher-embeddings.npz`` (text digest -> vector) so that the adapters
    trained on the same collection do not each spend minutes re-embedding the same passages;
    the file is replaced atomically, so two trainings started together at worst both embed.
    """
    import hashlib

    path = models.cache_dir() / "teacher-embeddings.npz"
    digest = {t: hashlib.sha1(t.encode()).hexdigest() for t in texts}
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as stored:
            known = dict(zip(stored["keys"].tolist(), stored["vectors"]))
    missing = [t for t in texts if digest[t] not in known]
    if missing:
        for text, vector in zip(missing, models.sentence_embeddings(missing)):
            known[digest[text]] = vector
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
        partial.replace(path)
    return {t: known[digest[t]] for t in texts}


def pairwise_accuracy(ranker: models.Ranker, groups, limit: int) -> float:
    """Share of (positive, hard negative) pairs the model orders correctly."""
    queries, docs_pos, docs_neg = [], [], []
    for query, positive, negatives, _, _ in groups[:limit]:
        queries.append(query)
        docs_pos.append(positive)
        docs_neg.append(negatives[0])
    ranker.model.eval()
    pos = ranker.score(queries, docs_pos, batch_size=16)
    neg = ranker.score(queries, docs_neg, batch_size=16)
    return float(np.mean(pos > neg))


def _base_preset(name: str) -> models.ModelSpec:
    """The preset whose base model ``name`` trains on (``x-demo`` trains x's base)."""
    return models.PRESETS[name.removesuffix("-demo").removesuffix("-dl20")]


def pseudo_query_groups(collection, exclude_qids: list[str], count: int, rng: random.Random,
                        members: int = 7, pool_top: int = 30
                        ) -> list[tuple[str, str, list[str], list[int], int]]:
    """GPL-style groups (Wang et al., NAACL 2022) on passages of the training collection.

    Each pseudo-query is a crop of 4–8 consecutive words of a passage, trimmed of stop words at
    both ends and keeping at least two content words (Contriever's cropping: no query generator
    is available offline). Its members are ``members`` passages drawn from
    the bi-encoder teacher's top-``pool_top`` of the whole passage pool, the source passage
    first; every member has grade 0, so a group teaches only the teacher's order (and, with
    cross-query answers, that another query's answer ranks last). Passages that are candidates
    or judged passages of ``exclude_qids`` (the dev queries) never enter the pool.
    """
    import re

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS as STOP_WORDS

    from core.retrieval import doc_texts

    held = set(candidate_pairs(collection, 100, qids=exclude_qids).docno) if exclude_qids else set()
    held |= set(collection.qrels[collection.qrels.qid.isin(exclude_qids)].docno)
    texts = [t for d, t in zip(collection.docs.docno, doc_texts(collection.docs)) if d not in held]
    texts = sorted(set(texts))
    vectors = _cached_embeddings(texts)
    pool = np.stack([vectors[t] for t in texts])
    sources, queries = [], []
    while len(queries) < count:
        source = rng.randrange(len(texts))
        words = re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", texts[source])
        if len(words) < 16:
            continue
        width = rng.randint(4, 8)
        start = rng.randrange(len(words) - width + 1)
        crop = [w.lower() for w in words[start:start + width]]
        while crop and crop[0] in STOP_WORDS:  # "of the …" / "… as well as" are no queries
            crop.pop(0)
        while crop and crop[-1] in STOP_WORDS:
            crop.pop()
        if sum(w not in STOP_WORDS for w in crop) < 2:
            continue
        sources.append(source)
        queries.append(" ".join(crop))
    query_vectors = _cached_embeddings(sorted(set(queries)))
    groups = []
    for source, query in zip(sources, queries):
        similarity = pool @ query_vectors[query]
        top = [int(i) for i in np.argsort(-similarity, kind="stable")[:pool_top] if i != source]
        chosen = rng.sample(top, k=members)
        groups.append((query, texts[source], [texts[i] for i in chosen], [0] * members, 0))
    return groups


def train(name: str, steps: int | None = None, threads: int = 2,
          collection_root: Path | None = None, queries: int | None = None,
          dev_queries: int | None = None, output: Path | None = None,
          eval_every: int | None = None, overrides: dict | None = None,
          save_every: int = SAVE_EVERY, stop_after: int | None = None) -> dict | None:
    """Train adapter ``name`` by its recipe; returns the report (written beside the adapter).

    Resumable: every ``save_every`` steps the training state (trainable weights, optimizer,
    schedule, data cursor, random state, losses, dev figures) goes to ``<output>.resume``; a
    later call with the same recipe continues from it and ends exactly where an uninterrupted
    run ends. ``stop_after`` stops after that many steps of this call (state saved; returns
    None), as Ctrl-C does at the last saved step.

    Args:
        collection_root: the TREC DL 2020 folder (default ``../shared/data/trec-dl-2020``).
        queries / dev_queries: only the first N train / dev queries (the determinism test's
            slice).
        output: the adapter folder (default ``adapters/<name>``).
        eval_every: override the recipe's checkpoint interval.
        overrides: recipe fields to change (a recipe variant; recorded in the report).
    """
    from peft import LoraConfig, get_peft_model

    recipe = {**RECIPES[name], **(overrides or {})}
    if steps:
        recipe["steps"] = steps
    if eval_every:
        recipe["eval_every"] = eval_every
    check_recipe(name, recipe)
    roots: list[Path] = []
    if recipe["data"] != "demo":  # before anything loads
        names = [recipe["data"]] if isinstance(recipe["data"], str) else recipe["data"]
        roots = ([Path(collection_root)] if collection_root is not None else
                 [models.REPO_ROOT.parent / "shared" / "data" / n for n in names])
        needed = roots + ([models.REPO_ROOT.parent / "shared" / "data" / recipe["unlabelled"]]
                          if recipe.get("unlabelled") else [])
        missing = [str(r) for r in needed if not r.is_dir()]
        if missing:
            raise TrainingError(f"{name}: training data folder {missing[0]} is missing; put "
                                "the shared TREC DL folders beside the project (README: Real "
                                "collections)")
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(threads)
    rng = random.Random(SEED)
    spec = _base_preset(name)
    base_spec = models.ModelSpec(spec.name, spec.kind, spec.source, spec.gguf_file, None,
                                 max_length=spec.max_length, device="cpu")
    base_dir = models.resolve_source(base_spec)
    if base_spec.gguf_file:
        base_dir = models.dequantized_gguf(base_spec, base_dir)
    model = models.merged_fp32(base_spec, base_dir, None)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    head = [] if spec.kind == "llm-judge" else (["score"] if hasattr(model, "score") else ["classifier"])
    rank = recipe.get("lora_r", 8)
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                      target_modules=recipe["targets"],
                      modules_to_save=head or None, layers_to_transform=recipe.get("layers"),
                      task_type="CAUSAL_LM" if spec.kind == "llm-judge" else "SEQ_CLS")
    peft_model = get_peft_model(model, lora)
    ranker = models.Ranker(base_spec, peft_model, tokenizer, torch.device("cpu"))
    named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    trainable = [p for _, p in named]
    optimizer = torch.optim.AdamW(trainable, lr=recipe["lr"], weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / recipe["steps"]))
    evaluation: dict = {}
    dev = recipe["data"] != "demo"
    target = output or models.ADAPTER_DIR / name
    if recipe["data"] == "demo":
        train_groups = training_groups("train", rng, recipe.get("max_negative_grade"))
        held_out = training_groups("test", random.Random(SEED + 1),
                                   recipe.get("max_negative_grade"))
        check = lambda: {"heldout_pairwise_accuracy": pairwise_accuracy(  # noqa: E731
            ranker, held_out, recipe["eval_pairs"])}
        data_note = "demo collection, train split (every 5th query held out)"
    else:
        from core.data import load_collection, with_qrels

        train_groups, parts, notes = [], [], []
        dev_depth = recipe.get("dev_depth", DEV_DEPTH)
        for root in roots:
            collection = load_collection(str(root))
            train_qids, dev_qids = dl_split(collection)
            train_qids, dev_qids = train_qids[:queries], dev_qids[:dev_queries]
            train_groups += folder_groups(collection, train_qids, rng,
                                          recipe.get("max_negative_grade"),
                                          min_negatives=recipe["group_size"] - 1)
            parts.append((collection, with_qrels(collection, root / "official-qrels.txt"),
                          dev_qids))
            notes.append(f"{root.name}: {len(train_qids)} training / {len(dev_qids)} dev queries")
        if len(roots) > 1:
            rng.shuffle(train_groups)
        check = lambda: dev_ndcg(ranker, parts, dev_depth)  # noqa: E731
        data_note = ("; ".join(notes) + f" (dev = every {DEV_EVERY}th judged id of each year, "
                     f"re-ranking their run's top-{dev_depth}; the mean over all dev queries "
                     "chooses the checkpoint; near-identical passages of a query kept once)")
        dev_qids = [q for _, _, qids in parts for q in qids]
    others = sorted({(g[0], g[1]) for g in train_groups})
    pseudo = []
    if recipe.get("pseudo_queries"):
        # every other step trains on pseudo-queries (their own data cursor: step // 2)
        pseudo = pseudo_query_groups(collection, dev_qids,
                                     recipe["pseudo_queries"], random.Random(SEED + 2),
                                     members=recipe["group_size"] - 1)
        print(f"{name}: {len(pseudo)} pseudo-query groups, e.g. {pseudo[0][0]!r}", flush=True)
    if recipe.get("unlabelled"):
        # every other step distils the teacher on real unjudged queries (TREC DL 2022)
        unlabelled_root = models.REPO_ROOT.parent / "shared" / "data" / recipe["unlabelled"]
        pseudo = unlabelled_groups(load_collection(str(unlabelled_root)),
                                   recipe.get("unlabelled_groups", 2000),
                                   random.Random(SEED + 3), members=recipe["group_size"])
        print(f"{name}: {len(pseudo)} unlabelled groups from {recipe['unlabelled']}", flush=True)
        data_note += f"; every other step: {len(pseudo)} teacher-only groups of {recipe['unlabelled']}"
    teacher = None
    if recipe.get("distill"):
        teacher = bi_encoder_teacher(train_groups + pseudo)
    if not train_groups:
        raise TrainingError(f"{name}: no training groups (no passage of grade >= 2 with "
                         "lower-graded company)")
    resume = target.with_name(target.name + ".resume")
    first, cursor, losses, earlier = 0, 0, [], 0.0
    if resume.exists():
        state = _load_state(resume, recipe, named, optimizer, schedule)
        first, cursor, losses, earlier = (state["step"], state["cursor"], state["losses"],
                                          state["seconds"])
        evaluation = state["evaluation"]
        rng.setstate(state["rng"])
        print(f"{name}: resuming at step {first} from {resume}", flush=True)
    elif check:
        evaluation["before"] = check()
    print(f"{name}: {data_note}, {len(train_groups)} training groups; before: "
          f"{evaluation.get('before', '-')}", flush=True)
    started = time.perf_counter() - earlier
    judge = spec.kind == "llm-judge"
    for step in range(first, recipe["steps"]):
        peft_model.train()
        batch = []
        if pseudo and step % 2 == 1:
            for k in range(recipe["groups_per_step"]):
                batch.append(pseudo[((step // 2) * recipe["groups_per_step"] + k) % len(pseudo)])
        else:
            for _ in range(recipe["groups_per_step"]):
                batch.append(train_groups[cursor % len(train_groups)])
                cursor += 1
        if judge and (step % 4 == 3 or not recipe.get("graded")):
            loss = _judge_loss(ranker, batch, pairwise=step % 4 == 3, rng=rng,
                               group_size=recipe.get("judge_group_size", 2))
        elif recipe.get("graded"):
            loss = _graded_group_loss(ranker, batch, recipe["group_size"], rng,
                                      pool=12 if recipe["data"] == "demo" else None,
                                      teacher=teacher, distill=recipe.get("distill", 0.0),
                                      temperature=recipe.get("teacher_temperature", 0.05),
                                      others=others, cross=recipe.get("cross_negatives", 0),
                                      bce=recipe.get("judge_bce", 0.0) if judge else 0.0)
        else:
            loss = _group_loss(ranker, batch, recipe["group_size"], rng)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if step % 20 == 0 or step == recipe["steps"] - 1:
            print(f"  step {step:4d} loss {np.mean(losses[-20:]):.4f} "
                  f"{time.perf_counter() - started:6.0f}s", flush=True)
        every = recipe.get("eval_every") or recipe["steps"]
        if dev and ((step + 1) % every == 0 or step + 1 == recipe["steps"]):
            stage = f"step_{step + 1}"
            evaluation[stage] = check()
            best = max((v["nDCG@10"], k) for k, v in evaluation.items() if k != "before")
            print(f"  dev at step {step + 1}: {evaluation[stage]}", flush=True)
            if best[1] == stage:
                _save(peft_model, target.with_name(target.name + ".best"))
        done = step + 1
        if done < recipe["steps"] and (done % save_every == 0 or done - first == stop_after):
            _save_state(resume, {"step": done, "cursor": cursor, "losses": losses,
                                 "seconds": time.perf_counter() - started,
                                 "evaluation": evaluation, "rng": rng.getstate()},
                        recipe, named, optimizer, schedule)
            if done - first == stop_after:
                print(f"{name}: stopped after step {done}; run the same command again to "
                      "resume", flush=True)
                return None
    seconds = time.perf_counter() - started
    if check and not dev:
        evaluation["after"] = check()
    print(f"{name}: {evaluation} in {seconds:.0f}s", flush=True)
    report = {
        "base": models.base_fingerprint(model.config),
        "base_source": spec.source, "gguf_file": spec.gguf_file, "kind": spec.kind,
        "data": data_note,
        "recipe": {**recipe, "seed": SEED, "lora_r": rank, "lora_alpha": 2 * rank,
                   "optimizer": "AdamW", "warmup_steps": 20, "schedule": "linear decay"},
        "training_groups": len(train_groups), "train_seconds": round(seconds, 1),
        "final_loss_mean_last_20": round(float(np.mean(losses[-20:])), 4),
        "torch": torch.__version__,
    }
    for stage, values in evaluation.items():
        for metric, value in values.items():
            report[f"{'dev_' if dev else ''}{metric}_{stage}"] = round(float(value), 4)
    if dev:
        best_ndcg, best_stage = max((v["nDCG@10"], k) for k, v in evaluation.items()
                                    if k != "before")
        report["chosen_checkpoint"] = best_stage
        report["dev_ndcg10_chosen"] = round(best_ndcg, 4)
        chosen = target.with_name(target.name + ".best")
    else:
        chosen = target.with_name(target.name + ".best")
        _save(peft_model, chosen)
    (chosen / "rankscope.json").write_text(json.dumps(report, indent=2) + "\n")
    if target.exists():
        shutil.rmtree(target)
    chosen.rename(target)
    shutil.rmtree(resume, ignore_errors=True)
    return report


def _save_state(folder: Path, progress: dict, recipe: dict, named, optimizer, schedule) -> None:
    """The training state after a step, written to a sibling folder then swapped in (a run
    killed mid-save keeps the previous state)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save({"params": {n: p.detach().clone() for n, p in named},
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "torch_rng": torch.get_rng_state()}, partial / "state.pt")
    version, internal, gauss = progress["rng"]
    (partial / "state.json").write_text(json.dumps(
        {**progress, "rng": [version, list(internal), gauss], "recipe": recipe}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _load_state(folder: Path, recipe: dict, named, optimizer, schedule) -> dict:
    """Restore a saved training state into the model, optimizer and schedule; the progress."""
    progress = json.loads((folder / "state.json").read_text())
    if progress.pop("recipe") != json.loads(json.dumps(recipe)):
        raise TrainingError(f"{folder} holds a run of another recipe; delete it to start over, "
                         "or run the recipe it was saved with")
    tensors = torch.load(folder / "state.pt", weights_only=True)
    with torch.no_grad():
        for n, p in named:
            p.copy_(tensors["params"][n])
    optimizer.load_state_dict(tensors["optimizer"])
    schedule.load_state_dict(tensors["schedule"])
    torch.set_rng_state(tensors["torch_rng"])
    version, internal, gauss = progress["rng"]
    progress["rng"] = (version, tuple(internal), gauss)
    return progress


def _save(peft_model, folder: Path) -> None:
    """The adapter (float16) in ``folder``, replacing what was there."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    peft_model.save_pretrained(folder, safe_serialization=True)
    _half_precision(folder / "adapter_model.safetensors")
    (folder / "README.md").unlink(missing_ok=True)  # peft's empty model-card template


def _half_precision(path: Path) -> None:
    """Store adapter weights as float16 (halves the committed size; loading casts back)."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def _group_loss(ranker, batch, group_size, rng) -> torch.Tensor:
    queries, documents = [], []
    for query, positive, negatives, _, _ in batch:
        chosen = rng.sample(negatives[:12], k=group_size - 1)
        queries += [query] * group_size
        documents += [positive, *chosen]
    scores = ranker.forward(ranker.encode(queries, documents)).view(len(batch), group_size)
    target = torch.zeros(len(batch), dtype=torch.long)  # the positive comes first in each group
    return torch.nn.functional.cross_entropy(scores, target)


def _graded_group_loss(ranker, batch, group_size, rng, pool: int | None = 12, teacher=None,
                       distill: float = 0.0, temperature: float = 0.05,
                       others: list[tuple[str, str]] | None = None, cross: int = 0,
                       bce: float = 0.0) -> torch.Tensor:
    """RankLlama's contrastive loss generalised to grades.

    Each group holds the answer and ``group_size − 1`` lower-graded passages, one of each lower
    grade first (highest first), the rest drawn at random (from the first ``pool`` of each
    grade; all of them with ``pool=None``). Every member with lower-graded
    company contributes a softmax cross-entropy of itself against those lower-graded members,
    so an answer learns to beat everything and an on-topic passage (grade 1) to beat off-topic
    ones (grade 0) — the order graded nDCG rewards. With a ``teacher`` (query and document
    lists → scores), ``distill`` × KL(softmax(teacher / temperature) ‖ softmax(scores)) over
    each group is added: the teacher's order of every member, not only the graded pairs.

    ``cross`` answers of *other* queries (drawn from ``others``, (query, answer) pairs) join
    each group below every own candidate. Without them a model can fit real judgments with a
    query-blind prior — on TREC DL each passage is a candidate of one query only, so "looks
    like an answer" separates a group's members — and rank no better than chance on new
    queries (measured: dev nDCG@10 0.20–0.22, see DL_RECIPES).

    For a judge the scores are LD (pointwise prompts), and ``bce`` × a binary cross-entropy of
    LD against yes (grade ≥ 2) / no (the rest), the answer weighted to balance the no's, keeps
    the sign of LD meaningful (a "yes", not only an order).
    """
    queries, documents, grades = [], [], []
    for query, positive, negatives, negative_grades, positive_grade in batch:
        by_grade: dict[int, list[str]] = {}
        for document, grade in zip(negatives, negative_grades):
            by_grade.setdefault(int(grade), []).append(document)
        chosen = []
        for grade in sorted(by_grade, reverse=True)[:group_size - 1]:
            chosen.append((rng.choice(by_grade[grade][:pool]), grade))
        rest = [(d, g) for g, docs in by_grade.items() for d in docs[:pool] if (d, g) not in chosen]
        chosen += rng.sample(rest, k=group_size - 1 - len(chosen))
        for _ in range(cross):
            other_query, other_answer = rng.choice(others)
            while other_query == query:
                other_query, other_answer = rng.choice(others)
            chosen.append((other_answer, -1))  # another query's answer: below everything
        queries += [query] * (group_size + cross)
        documents += [positive] + [d for d, _ in chosen]
        grades += [positive_grade] + [g for _, g in chosen]
    size = group_size + cross
    scores = ranker.forward(ranker.encode(queries, documents)).view(len(batch), size)
    grades = torch.tensor(grades).view(len(batch), size)
    lower = grades.unsqueeze(2) > grades.unsqueeze(1)  # [b, i, j]: member j is graded below i
    contenders = lower | torch.eye(size, dtype=torch.bool)
    expanded = scores.unsqueeze(1).expand(-1, size, -1).masked_fill(~contenders, -torch.inf)
    terms = torch.logsumexp(expanded, dim=-1) - scores  # [b, i]
    valid = lower.any(dim=-1)
    loss = terms[valid].mean() if bool(valid.any()) else scores.sum() * 0.0
    if teacher is not None:
        # listwise distillation (KL of the teacher's softmax over the group to the student's)
        target = torch.tensor(teacher(queries, documents), dtype=torch.float32)
        target = torch.softmax(target.view(len(batch), size) / temperature, dim=-1)
        loss = loss + distill * torch.nn.functional.kl_div(
            torch.log_softmax(scores, dim=-1), target, reduction="batchmean")
    if bce:
        labels = (grades >= 2).float()
        no_count = (grades < 2).sum(dim=-1, keepdim=True).float()
        weights = torch.where(labels.bool(), no_count, 1.0)  # each answer weighs all its no's
        loss = loss + bce * torch.nn.functional.binary_cross_entropy_with_logits(
            scores, labels, weight=weights)
    return loss


def _judge_loss(ranker, batch, pairwise: bool, rng, group_size: int = 2) -> torch.Tensor:
    """BCE of LD against yes/no labels; with ``group_size`` > 2 (pointwise steps), also the
    listwise cross-entropy of LD over one answer and ``group_size − 1`` non-answers."""
    if group_size > 2 and not pairwise:
        queries, documents, labels = [], [], []
        for query, positive, negatives, _, _ in batch:
            queries += [query] * group_size
            documents += [positive, *rng.sample(negatives[:12], k=group_size - 1)]
            labels += [1.0] + [0.0] * (group_size - 1)
        margin = ranker.forward(ranker.encode(queries, documents))
        listwise = torch.nn.functional.cross_entropy(
            margin.view(len(batch), group_size), torch.zeros(len(batch), dtype=torch.long))
        weights = torch.tensor(labels) * (group_size - 2) + 1  # balance yes against the no's
        pointwise = torch.nn.functional.binary_cross_entropy_with_logits(
            margin, torch.tensor(labels), weight=weights)
        return listwise + pointwise
    queries, documents, documents_b, labels = [], [], [], []
    for query, positive, negatives, _, _ in batch:
        negative = rng.choice(negatives[:12])
        queries += [query, query]
        if pairwise:
            documents += [positive, negative]
            documents_b += [negative, positive]
        else:
            documents += [positive, negative]
        labels += [1.0, 0.0]
    enc = ranker.encode(queries, documents, "pairwise" if pairwise else "pointwise",
                        documents_b if pairwise else None)
    margin = ranker.forward(enc)
    return torch.nn.functional.binary_cross_entropy_with_logits(margin, torch.tensor(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None,
                        help="adapter folder (default adapters/<name>; one name only)")
    parser.add_argument("--eval-every", type=int, default=None,
                        help="dev checkpoint interval (TREC DL recipes)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                        help="stop after this many steps (state saved); the same command "
                             "resumes (so does a run stopped by Ctrl-C, from its last "
                             f"saved step: every {SAVE_EVERY})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="change a recipe field for this run, e.g. --set distill=4 "
                             "(a variant to compare on the dev queries)")
    args = parser.parse_args()
    if args.output and len(args.names) > 1:
        parser.error("--output takes one adapter name")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except ValueError:
            parser.error(f"--set {item}: the value must be JSON (a number, true, a list …)")
    for name in args.names:
        try:
            if train(name, args.steps, args.threads, output=args.output,
                     eval_every=args.eval_every, overrides=overrides,
                     stop_after=args.stop_after) is None:
                break
        except TrainingError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None


if __name__ == "__main__":
    main()
