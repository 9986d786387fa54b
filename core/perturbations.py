"""IR axioms as document edits: what a ranker that follows the axiom should do with each.

Each edit changes one thing about a (query, document) pair, after the retrieval axioms of Fang,
Tao & Zhai (SIGIR 2004) and Fang & Zhai (SIGIR 2006) as MechIR and ir_axioms turn them into
diagnostic pairs:

=========  ===============================================  ===========================
axiom      edit                                             a ranker that follows it
=========  ===============================================  ===========================
TFC1       one more occurrence of a query term               scores higher
TFC1−      every occurrence of a query term removed          scores lower (the control)
LNC1       off-topic text appended                           does not score higher
LNC2       the whole document repeated                       does not score lower
STMC1      a query term replaced by a synonym you type       keeps more than TFC1− keeps
PROX       two query terms moved apart                       scores lower
=========  ===============================================  ===========================

:func:`perturb` applies one edit (or says why it does not apply to this pair);
:data:`AXIOMS` lists them in that order. The Playground shows each edit's Δscore and Δrank;
the axiom lab reuses the same edits over a collection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from core.errors import InputError, RankScopeError

OFF_TOPIC = ("The committee meets on the second Tuesday of every month in the town hall, and "
             "minutes are published a week later.")
FILLER = "which, as the records from that period show in some detail,"
STOP_WORDS = frozenset("""a an and are as at be by can do does for from has have how in is it
its of on or that the their there this to was what when where which who why will with you your
""".split())


@dataclass(frozen=True)
class Axiom:
    code: str
    edit: str
    expects: str  # "higher" | "lower" | "not higher" | "not lower" | "keeps more than TFC1−"


AXIOMS = (
    Axiom("TFC1", "one more occurrence of a query term", "higher"),
    Axiom("TFC1−", "every occurrence of a query term removed", "lower"),
    Axiom("LNC1", "off-topic text appended", "not higher"),
    Axiom("LNC2", "the whole document repeated", "not lower"),
    Axiom("STMC1", "a query term replaced by a synonym", "keeps more than TFC1−"),
    Axiom("PROX", "two query terms moved apart", "lower"),
)


@dataclass(frozen=True)
class Edit:
    """One edited document: which axiom, what changed, and the new text."""

    axiom: Axiom
    document: str
    detail: str


def query_terms(query: str) -> list[str]:
    """The query's content words, lower-cased, in query order, without repeats."""
    words = [w.lower() for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'-]*", query)]
    return list(dict.fromkeys(w for w in words if w not in STOP_WORDS))


def _occurrences(term: str, document: str) -> list[re.Match]:
    return list(re.finditer(rf"\b{re.escape(term)}\b", document, flags=re.IGNORECASE))


def _matched_terms(query: str, document: str) -> list[str]:
    """Query terms the document contains, most frequent first (ties: query order)."""
    counts = {t: len(_occurrences(t, document)) for t in query_terms(query)}
    return sorted((t for t in counts if counts[t]), key=lambda t: -counts[t])


def perturb(code: str, query: str, document: str, synonym: str = "",
            term: str | None = None) -> Edit:
    """The document edited as axiom ``code`` asks.

    Args:
        synonym: STMC1's replacement word (typed by the user).
        term: the query term TFC1, TFC1− and STMC1 edit (default: the document's most
            frequent query term); the other edits ignore it.

    Raises:
        InputError: the edit does not apply to this pair, with the reason.
    """
    axiom = next((a for a in AXIOMS if a.code == code), None)
    if axiom is None:
        raise InputError(f"unknown axiom {code!r}; choose from "
                         f"{', '.join(a.code for a in AXIOMS)}")
    matched = _matched_terms(query, document)
    if term is not None and term.lower() not in matched and code in ("TFC1−", "STMC1"):
        raise InputError(f"the document does not contain the query term {term!r}")
    chosen = (term or (matched[0] if matched else "")).lower()
    if code == "TFC1":
        terms = query_terms(query)
        if not terms:
            raise InputError("the query has no content word to repeat")
        chosen = chosen or terms[0]
        found = _occurrences(chosen, document)
        if found:  # right after its first occurrence: nothing else moves
            at = found[0].end()
            return Edit(axiom, f"{document[:at]} {found[0].group(0)}{document[at:]}",
                        f"“{chosen}” once more, after its first occurrence")
        return Edit(axiom, f"{document.rstrip()} {chosen}", f"“{chosen}” appended")
    if code == "LNC1":
        return Edit(axiom, f"{document.rstrip()} {OFF_TOPIC}", "an off-topic sentence appended")
    if code == "LNC2":
        return Edit(axiom, f"{document.strip()} {document.strip()}", "the document twice")
    if not matched:
        raise InputError("the document contains no query term, so there is none to "
                         f"{'remove' if code == 'TFC1−' else 'replace' if code == 'STMC1' else 'move'}")
    if code == "TFC1−":
        edited = re.sub(rf"\s*\b{re.escape(chosen)}\b", "", document, flags=re.IGNORECASE)
        return Edit(axiom, edited.strip(), f"“{chosen}” removed ({len(_occurrences(chosen, document))}×)")
    if code == "STMC1":
        synonym = synonym.strip()
        if not synonym:
            raise InputError(f"type a synonym for “{chosen}” to try STMC1")
        if synonym.lower() == chosen:
            raise InputError(f"the synonym is “{chosen}” itself: type another word with its "
                             "meaning")
        edited = re.sub(rf"\b{re.escape(chosen)}\b", synonym, document, flags=re.IGNORECASE)
        return Edit(axiom, edited, f"“{chosen}” → “{synonym}”")
    # PROX: the first two matched terms, nearest pair of occurrences, pushed apart by filler
    if len(matched) < 2:
        raise InputError("PROX needs two different query terms in the document; it has "
                         f"{'one' if matched else 'none'}")
    first, second = matched[0], matched[1]
    pairs = [(a, b) for a in _occurrences(first, document) for b in _occurrences(second, document)]
    a, b = min(pairs, key=lambda p: abs(p[0].start() - p[1].start()))
    cut = min(a, b, key=lambda m: m.start()).end()
    return Edit(axiom, f"{document[:cut]} {FILLER}{document[cut:]}",
                f"{len(FILLER.split())} filler words between “{first}” and “{second}”")


def verdict(axiom: Axiom, delta: float, control_delta: float | None = None,
            tolerance: float = 1e-6) -> bool | None:
    """Whether a score change ``delta`` is what the axiom expects (None: cannot tell)."""
    if axiom.expects == "higher":
        return delta > tolerance
    if axiom.expects == "lower":
        return delta < -tolerance
    if axiom.expects == "not higher":
        return delta <= tolerance
    if axiom.expects == "not lower":
        return delta >= -tolerance
    if control_delta is None:
        return None
    return delta > control_delta + tolerance  # STMC1: a synonym keeps more than removal


def axiom_table(ranker, query: str, document: str, score: float, *, synonym: str = "",
                term: str | None = None, others=None) -> pd.DataFrame:
    """Every axiom's edit of ``document`` scored in one batched call: the edit, what the
    axiom expects, Δscore against ``score``, the new rank among ``others`` (the other
    candidates' scores, when given) and whether the ranker moved as expected; an edit that
    does not apply says why in place of its numbers. ``term`` is the query term TFC1, TFC1−
    and STMC1 edit (None: the document's most frequent one)."""
    from core.retrieval import rank_among

    edits = {}
    for axiom in AXIOMS:
        try:
            edits[axiom.code] = perturb(axiom.code, query, document, synonym=synonym,
                                        term=None if axiom.code == "PROX" else term)
        except RankScopeError as error:
            edits[axiom.code] = error
    applied = [code for code, edit in edits.items() if not isinstance(edit, RankScopeError)]
    new_scores = dict(zip(applied, ranker.score([query] * len(applied),
                                                [edits[c].document for c in applied]).tolist()))
    rows, control = [], None
    for axiom in AXIOMS:
        edit = edits[axiom.code]
        if isinstance(edit, RankScopeError):
            rows.append({"axiom": axiom.code, "edit": axiom.edit, "expects": axiom.expects,
                         "Δscore": None, "rank": None, "as expected": f"n/a: {edit}"})
            continue
        new = new_scores[axiom.code]
        delta = new - score
        if axiom.code == "TFC1−":
            control = delta
        ok = verdict(axiom, delta, control)
        rows.append({"axiom": axiom.code, "edit": edit.detail, "expects": axiom.expects,
                     "Δscore": round(delta, 4),
                     "rank": None if others is None else rank_among(new, others),
                     "as expected": "—" if ok is None else "yes" if ok else "no"})
    return pd.DataFrame(rows)
