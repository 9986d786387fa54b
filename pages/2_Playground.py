"""Playground: edit a query or a document and watch the ranker's score, its per-layer lens,
and which tokens move the score (integrated-gradient saliency)."""

import pandas as pd
import streamlit as st

import ui
from core.data import check_user_text
from core.errors import RankScopeError
from core.charts import ie_heatmap, layer_lens_chart
from core.patching import edit_effects
from core.sweep import mean_effects
from core.perturbations import axiom_table, query_terms
from core.saliency import completeness_message, negligible_change, saliency

ui.page_setup("Playground", "🎛️")
ranker_name, source = ui.sidebar()
st.title("Playground")
st.caption("Pick a query of the collection to see where the ranker puts each candidate, load one "
           "into the editor, and edit it: the score and its rank update as you type; the "
           "saliency shows which words raise or lower the score, the axiom edits what one "
           "controlled change does.")

ranker = ui.ranker_or_error(ranker_name)
if ranker is None:
    st.stop()
collection = ui.collection_or_error(source)

st.session_state.setdefault("pg_query", "what are the symptoms of influenza")
st.session_state.setdefault(
    "pg_document", "The first signs of influenza are usually a high fever and aching joints. "
                   "Patients often report a dry cough, followed a few days later by severe "
                   "fatigue.")


@st.cache_data(show_spinner=False, max_entries=16)
def _ranked(key: str, name: str, source: str, qid: str, depth: int) -> pd.DataFrame:
    from core.retrieval import candidate_pairs, rank_candidates

    pairs = candidate_pairs(ui.get_collection(source), depth, qids=[qid])
    return rank_candidates(ui.get_ranker(name), pairs)


st.session_state.setdefault("pg_original", st.session_state["pg_document"])


def _load(row) -> None:  # a button callback: runs before the editor's widgets exist
    st.session_state["pg_query"] = row["query"]
    st.session_state["pg_document"] = row["document"]
    st.session_state["pg_original"] = row["document"]  # what "Where did the edit act?" compares
    st.session_state["pg_loaded"] = (row["qid"], row["docno"])


def _keep_as_original() -> None:
    st.session_state["pg_original"] = st.session_state["pg_document"]


choices = [n for n in ui.ranker_names() if n != ranker_name]
compare = st.selectbox("Side by side with", [None, *choices], key="pg_compare",
                       format_func=lambda n: "— one ranker —" if n is None else n,
                       help="A second ranker on the same query, document and candidates: "
                            "scores, where the score forms, saliency, rank correlation.")
other = ui.ranker_or_error(compare) if compare else None

ranked = other_ranked = None
if collection is not None:
    with st.expander("Rank view: a query of the collection and its candidates",
                     expanded=st.session_state.get("pg_qid") is not None):
        c1, c2 = st.columns([4, 1])
        texts = dict(zip(collection.queries.qid, collection.queries.text))
        qid = c1.selectbox("Query", [None, *texts], key="pg_qid",
                           format_func=lambda q: "— type your own below —" if q is None
                           else f"{q}: {texts[q][:90]}")
        depth = c2.number_input(f"{collection.candidates_label} top-k", min_value=2,
                                max_value=100, value=20, key="pg_depth")
        if qid is not None:
            with st.spinner(f"Scoring {depth} candidates …"):
                ranked = _ranked(ranker.spec.key() + ranker_name, ranker_name, source, qid,
                                 int(depth))
            shown = pd.DataFrame({
                "rank": ranked["rank"], f"{collection.candidates_label} rank": ranked.bm25_rank,
                "change": [f"▲ {c}" if c > 0 else f"▼ {-c}" if c < 0 else "=" for c in
                           ranked.rank_change],
                "grade": ranked.relevance, "score": ranked.score.round(3),
                "document": ranked.document.str.slice(0, 110)})
            if other is not None:
                with st.spinner(f"Scoring {depth} candidates with {compare} …"):
                    other_ranked = _ranked(other.spec.key() + compare, compare, source, qid,
                                           int(depth))
                shown.insert(1, f"{compare} rank",
                             ranked.docno.map(dict(zip(other_ranked.docno, other_ranked["rank"]))))
            st.dataframe(shown, hide_index=True, width="stretch", height=260)
            if other_ranked is not None:
                from core.precision import agreement

                aligned = ranked.merge(other_ranked[["docno", "score"]], on="docno",
                                       suffixes=("", "_other"))
                same = agreement(aligned.score.to_numpy(), aligned.score_other.to_numpy(),
                                 aligned.qid.to_numpy())
                st.caption(f"Agreement of {ranker_name} and {compare} on these candidates: "
                           f"Kendall τ {same['kendall']:.3f}, Spearman {same['spearman']:.3f}, "
                           f"{same['flipped']:.0%} of document pairs in the other order.")
            l1, l2 = st.columns([4, 1])
            pick = l1.selectbox("Document", range(len(ranked)), key="pg_pick",
                                format_func=lambda i: f"rank {i + 1} (grade "
                                f"{ranked.relevance.iloc[i]}): {ranked.document.iloc[i][:80]}")
            l2.button("Load into the editor", on_click=_load, args=(ranked.iloc[int(pick)],),
                      type="primary")

query = st.text_input("Query", max_chars=2000, key="pg_query")
document = st.text_area("Document", height=140, max_chars=20000, key="pg_document")
problem = None
if not query.strip() or not document.strip():
    problem = "Both the query and the document need some text."
else:
    try:
        check_user_text("query", query)
        check_user_text("document", document)
    except RankScopeError as error:
        problem = str(error)
if problem:  # one sentence in place of the result; the last good result stays below it
    st.error(problem)
    last = st.session_state.get("pg_last_good")
    if last is None:
        st.stop()
    query, document = last
    st.caption("Below: the results of the last usable query and document.")
else:
    st.session_state["pg_last_good"] = (query, document)

try:
    lens = ranker.layer_scores([query], [document])[0]
    score = float(lens[-1])
    tokens = ranker.token_groups(query, document)
except RankScopeError as error:
    st.error(str(error))
    st.stop()

previous = st.session_state.get("playground_previous")
label = "LD = logit(yes) − logit(no)" if ranker.kind == "llm-judge" else "relevance score"
m1, m2, m3 = st.columns(3)
m1.metric(f"Score ({label})", f"{score:.3f}",
          delta=None if previous is None or previous == score else f"{score - previous:+.3f}")
st.session_state["playground_previous"] = score
others = None
if ranked is not None and query == ranked["query"].iloc[0]:
    from core.retrieval import rank_among

    loaded = st.session_state.get("pg_loaded")
    loaded_docno = loaded[1] if loaded and loaded[0] == ranked.qid.iloc[0] else None
    others = ranked[ranked.docno != loaded_docno].score.to_numpy()
    rank = rank_among(score, others)
    was = ranked[ranked.docno == loaded_docno]["rank"]
    m2.metric(f"Rank among the {len(others) + 1} candidates", rank,
              delta=None if was.empty or int(was.iloc[0]) == rank
              else f"{int(was.iloc[0]) - rank:+d} places", delta_color="normal")
other_lens = None
if other is not None:
    try:
        other_lens = other.layer_scores([query], [document])[0]
    except RankScopeError as error:
        st.error(f"{compare}: {error}")
    else:  # beside the first ranker's score, so both lens charts below start level
        m3.metric(f"{compare} score", f"{float(other_lens[-1]):.3f}")
frames = [pd.DataFrame({"layer": range(1, len(lens) + 1), "score": lens, "input": "now"})]
before = st.session_state.get("playground_lens")
if before is not None and before[0] == ranker_name and not (before[1] == lens).all():
    frames.append(pd.DataFrame({"layer": range(1, len(lens) + 1), "score": before[1],
                                "input": "before the last edit"}))
st.session_state["playground_lens"] = (ranker_name, lens)
if other_lens is None:
    ui.show_chart(layer_lens_chart(pd.concat(frames)))
else:
    mine, theirs = st.columns(2)
    ui.show_chart(layer_lens_chart(pd.concat(frames)).properties(
        title=f"{ranker_name}: the score head after every block"), mine)
    ui.show_chart(layer_lens_chart(pd.DataFrame({
        "layer": range(1, len(other_lens) + 1), "score": other_lens, "input": "now"}))
        .properties(title=f"{compare}: the score head after every block"), theirs)
st.markdown(f"**{len(tokens)} tokens** as the ranker sees them "
            f"({'truncated to ' + str(ranker.spec.max_length) + ' tokens; ' if len(tokens) >= ranker.spec.max_length else ''}"
            "hover for the group):")
st.markdown(ui.coloured_tokens(tokens, ranker.kind), unsafe_allow_html=True)

st.subheader("Which words move the score")


@st.cache_data(show_spinner=False, max_entries=64)
def _saliency(key: str, name: str, query: str, document: str, steps: int):
    result = saliency(ui.get_ranker(name), query, document, steps=steps)
    return result.tokens, result.score, result.baseline_score, result.completeness_gap


t1, t2 = st.columns([1, 3])
# on every edit for the cross-encoder (0.4 s); on request for the LLMs, whose 51 gradient
# passes take 4–9 s on a 2-core CPU (bench/playground_latency.py) while a score takes 0.1 s.
# The toggle is kept per ranker, so switching to an LLM does not carry a cross-encoder's "on".
fast = ranker.kind == "cross-encoder"
show = t1.toggle("Token saliency", value=fast, key=f"pg_saliency-{ranker_name}",
                 help="Integrated gradients: one forward and backward pass per step.")
t1.caption("about half a second per edit" if fast else
           "an LLM: seconds to half a minute per edit on a CPU")
steps = t2.select_slider("Integration steps", [10, 20, 50, 100, 200], value=50,
                         help="Riemann steps of the integrated gradients (trapezoid rule); more "
                              "steps, smaller completeness gap, slower.")
frame = None
if not show:
    st.caption("Switch *Token saliency* on to see which words raise or lower the score "
               "(for this ranker a few seconds per edit on a CPU).")
else:
    try:
        with st.spinner("Integrated gradients …"):
            frame, at_input, at_base, gap = _saliency(ranker.spec.key() + ranker_name,
                                                      ranker_name, query, document, int(steps))
    except RankScopeError as error:
        st.info(f"Token saliency is not available for this ranker: {error}")
if frame is not None and other is not None:
    st.markdown(f"**{ranker_name}**")
if frame is not None:
    st.markdown(ui.saliency_tokens(frame), unsafe_allow_html=True)
if frame is not None:
    message = completeness_message(float(frame.attribution.sum()), at_input, at_base)
    if message:
        st.warning(message)
    st.caption(f"Integrated gradients on the input embeddings from the [PAD] baseline (every "
               f"text token's embedding replaced by [PAD]'s; the attribution study's): each "
               f"token's share of the score change {at_base:.3f} → {at_input:.3f}"
               + ("" if negligible_change(at_input, at_base) else
                  f". Completeness gap {gap:.2%} (the attributions sum to the change up to "
                  "it)") + ". Headless: "
               "`python -m core saliency --ranker NAME --query … --document … --out FILE.csv`.")
    left, right = st.columns(2)
    text = frame[frame.group.isin(["query", "document"])]
    left.markdown("**Largest contributions**")
    left.dataframe(text.reindex(text.attribution.abs().sort_values(ascending=False).index)
                   .head(12)[["token", "group", "attribution"]], hide_index=True, width="stretch",
                   column_config={"attribution": st.column_config.NumberColumn(format="%+.4f")})
    right.markdown("**By position group**")
    right.dataframe(frame.groupby("group", sort=False)["attribution"].sum().reset_index()
                    .rename(columns={"attribution": "total"}), hide_index=True, width="stretch",
                    column_config={"total": st.column_config.NumberColumn(format="%+.4f")})

if frame is not None and other is not None:
    try:
        with st.spinner(f"Integrated gradients of {compare} …"):
            other_frame = _saliency(other.spec.key() + compare, compare, query, document,
                                    int(steps))[0]
    except RankScopeError as error:
        st.info(f"{compare}: token saliency is not available: {error}")
    else:
        st.markdown(f"**{compare}** (the same pair, its own integrated gradients)")
        st.markdown(ui.saliency_tokens(other_frame), unsafe_allow_html=True)

st.subheader("What one controlled edit does (IR axioms)")
st.caption("Each edit changes one thing the retrieval axioms (Fang, Tao & Zhai 2004, 2006) "
           "make a claim about; the table says whether this ranker moved the way the axiom "
           "expects." + (" Δrank is among the rank view's candidates." if others is not None
                         else " Pick a query in the rank view to see Δrank too."))
s1, s2 = st.columns([1, 3])
terms = query_terms(query)
AUTO = "the document's most frequent"
term = s1.selectbox("Query term", [AUTO, *terms], key="pg_term",
                    help="The term TFC1, TFC1− and STMC1 edit.")
synonym = s2.text_input("Synonym for STMC1", key="pg_synonym",
                        placeholder="a word with the same meaning as the chosen term")
if st.button("Try the axiom edits"):
    table = axiom_table(ranker, query, document, score, synonym=synonym,
                        term=None if term == AUTO else term, others=others)
    st.session_state["pg_axioms"] = (query, document, ranker_name, table)
saved = st.session_state.get("pg_axioms")
if saved and saved[:3] == (query, document, ranker_name):
    # a static table: the "expects" sentences wrap instead of being cut
    st.table(saved[3].set_index("axiom"))

st.subheader("Where did the edit act?")
original = st.session_state["pg_original"]
st.caption("Activation patching between the original document (the one loaded from the rank "
           "view, or kept with the button) and your edited text: each activation of the edited "
           "run patched into the original's run, one layer × position group at a time, and "
           "back. IE 1 = that activation alone carries the edit's whole effect on the score.")
o1, o2 = st.columns([3, 1])
o1.markdown(f"**Original:** {original[:300]}{'…' if len(original) > 300 else ''}")
o2.button("Keep the current text as the original", on_click=_keep_as_original)
if document.strip() == original.strip():
    st.info("Edit the document above to locate the edit — keep its length in tokens (swap a "
            "word for a synonym, a name for a name) so that the two runs' positions align.")
elif st.button("Locate the edit", type="primary"):
    try:
        with st.spinner("Patching every layer × position group, both ways …"):
            effects, info = edit_effects(ranker, query, original, document)
    except RankScopeError as error:
        st.error(str(error))
    else:
        st.session_state["pg_edit_effects"] = ((query, original, document, ranker_name),
                                               effects, info)
located = st.session_state.get("pg_edit_effects")
if located and located[0] == (query, original, document, ranker_name):
    _, effects, info = located
    st.caption(f"Score {info['score_original']:.3f} (original) → {info['score_edited']:.3f} "
               f"(edited), {info['tokens']} document tokens aligned.")
    names = {"attn": "Attention output", "mlp": "MLP output", "resid": "Residual stream"}
    for target in ("resid", "attn", "mlp"):
        columns = st.columns(2)
        for column, direction in zip(columns, ("edited→original", "original→edited")):
            part = mean_effects(effects[effects.direction == direction])
            part = part[part.target == target]
            if not part.empty:
                with column:
                    ui.chart_with_exports(ie_heatmap(part, target,
                                                     f"{names[target]} · {direction}"),
                                          part, f"edit-{target}-{direction}")
