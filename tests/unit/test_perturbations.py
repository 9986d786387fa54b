"""The IR-axiom edits: each changes exactly what its axiom names, or says why it cannot."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.perturbations import AXIOMS, FILLER, OFF_TOPIC, perturb, query_terms, verdict

QUERY = "how long does honey keep"
DOC = "Honey keeps for years. Sealed honey in a jar keeps its taste."


def test_query_terms_drop_stop_words_and_repeats():
    assert query_terms("How long does HONEY keep, honey?") == ["long", "honey", "keep"]


def test_each_axiom_edit_changes_what_it_names():
    tfc1 = perturb("TFC1", QUERY, DOC)
    assert tfc1.document == "Honey Honey keeps for years. Sealed honey in a jar keeps its taste."
    removed = perturb("TFC1−", QUERY, DOC)
    assert "honey" not in removed.document.lower() and "keeps for years" in removed.document
    assert perturb("LNC1", QUERY, DOC).document == f"{DOC} {OFF_TOPIC}"
    assert perturb("LNC2", QUERY, DOC).document == f"{DOC} {DOC}"
    stmc = perturb("STMC1", QUERY, DOC, synonym="nectar")
    assert stmc.document == "nectar keeps for years. Sealed nectar in a jar keeps its taste."
    prox = perturb("PROX", "honey jar", DOC)
    assert prox.document == f"Honey keeps for years. Sealed honey {FILLER} in a jar keeps its taste."
    assert [a.code for a in AXIOMS] == ["TFC1", "TFC1−", "LNC1", "LNC2", "STMC1", "PROX"]


@pytest.mark.parametrize("code, query, document, synonym, reason", [
    ("TFC1−", "trams harbour", DOC, "", "contains no query term"),
    ("STMC1", QUERY, DOC, " ", "type a synonym"),
    ("STMC1", QUERY, DOC, "Honey", "the synonym is “honey” itself"),
    ("PROX", "honey tram", DOC, "", "needs two different query terms"),
    ("XYZ", QUERY, DOC, "", "unknown axiom"),
])
def test_edits_that_do_not_apply_say_why(code, query, document, synonym, reason):
    with pytest.raises(InputError, match=reason):
        perturb(code, query, document, synonym=synonym)


def test_verdicts():
    tfc1, removal, lnc1, lnc2, stmc1, prox = AXIOMS
    assert verdict(tfc1, 0.2) and not verdict(tfc1, -0.1)
    assert verdict(removal, -1.0) and verdict(prox, -0.01) and not verdict(prox, 0.0)
    assert verdict(lnc1, 0.0) and not verdict(lnc1, 0.3)
    assert verdict(lnc2, 0.0) and not verdict(lnc2, -0.3)
    assert verdict(stmc1, -0.5, control_delta=-2.0) and not verdict(stmc1, -2.5, -2.0)
    assert verdict(stmc1, -0.5) is None


def test_a_chosen_term_steers_the_term_edits_only():
    assert perturb("TFC1", "honey jar", DOC, term="jar").document == \
        "Honey keeps for years. Sealed honey in a jar jar keeps its taste."
    assert perturb("TFC1", "honey long", DOC, term="long").document == f"{DOC} long"
    assert perturb("TFC1−", "honey jar", DOC, term="jar").document == \
        "Honey keeps for years. Sealed honey in a keeps its taste."
    assert perturb("LNC1", QUERY, DOC, term="absent").document == f"{DOC} {OFF_TOPIC}"
    with pytest.raises(InputError, match="does not contain the query term 'absent'"):
        perturb("STMC1", QUERY, DOC, synonym="x", term="absent")


def test_the_axiom_table_scores_every_edit_and_says_why_one_does_not_apply():
    class Counting:
        """A ranker scoring a document by how often 'fox' occurs (one batched call)."""
        calls = 0

        def score(self, queries, documents):
            Counting.calls += 1
            return np.array([d.lower().count("fox") for d in documents], dtype=float)

    from core.perturbations import axiom_table

    document = "The red fox eats mice. A fox hunts at night."
    table = axiom_table(Counting(), "red fox diet", document, score=2.0, term="fox",
                        others=np.array([5.0, 1.0]))
    assert Counting.calls == 1
    rows = table.set_index("axiom")
    assert rows.loc["TFC1", "Δscore"] == 1.0 and rows.loc["TFC1", "as expected"] == "yes"
    assert rows.loc["TFC1−", "Δscore"] == -2.0 and rows.loc["TFC1−", "rank"] == 3
    assert rows.loc["STMC1", "as expected"].startswith("n/a:")  # no synonym typed
    assert list(rows.index) == [a.code for a in AXIOMS]
