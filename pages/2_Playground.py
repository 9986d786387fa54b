"""Playground: edit a query or a document and watch the ranker's score, its per-layer lens,
and which tokens move the score (integrated-gradient saliency)."""

import pandas as pd
import streamlit as st

import ui
from core.charts import layer_lens_chart
from core.data import check_user_text
from core.errors import RankScopeError
from core.saliency import saliency

ui.page_setup("Playground", "🎛️")
ranker_name, _ = ui.sidebar()
st.title("Playground")
st.caption("Type a query and a document. The score updates as you edit; the saliency shows "
           "which words raise or lower it, and the coloured tokens what the ranker reads as "
           "query, document, instruction and output position.")

ranker = ui.ranker_or_error(ranker_name)
if ranker is None:
    st.stop()

query = st.text_input("Query", value="what are the symptoms of influenza", max_chars=2000)
document = st.text_area(
    "Document", height=140, max_chars=20000,
    value="The first signs of influenza are usually a high fever and aching joints. Patients "
          "often report a dry cough, followed a few days later by severe fatigue.")
if not query.strip() or not document.strip():
    st.error("Both the query and the document need some text.")
    st.stop()
try:
    check_user_text("query", query)
    check_user_text("document", document)
except RankScopeError as error:
    st.error(str(error))
    st.stop()

try:
    lens = ranker.layer_scores(query, document)
    score = float(lens[-1])
    tokens = ranker.token_groups(query, document)
except RankScopeError as error:
    st.error(str(error))
    st.stop()

previous = st.session_state.get("playground_previous")
label = "LD = logit(yes) − logit(no)" if ranker.kind == "llm-judge" else "relevance score"
st.metric(f"Score ({label})", f"{score:.3f}",
          delta=None if previous is None or previous == score else f"{score - previous:+.3f}")
st.session_state["playground_previous"] = score
frames = [pd.DataFrame({"layer": range(1, len(lens) + 1), "score": lens, "input": "now"})]
before = st.session_state.get("playground_lens")
if before is not None and before[0] == ranker_name and not (before[1] == lens).all():
    frames.append(pd.DataFrame({"layer": range(1, len(lens) + 1), "score": before[1],
                                "input": "before the last edit"}))
st.session_state["playground_lens"] = (ranker_name, lens)
st.altair_chart(layer_lens_chart(pd.concat(frames)), width="stretch")
st.markdown(f"**{len(tokens)} tokens** as the ranker sees them "
            f"({'truncated to ' + str(ranker.spec.max_length) + ' tokens; ' if len(tokens) >= ranker.spec.max_length else ''}"
            "hover for the group):")
st.markdown(ui.coloured_tokens(tokens), unsafe_allow_html=True)

st.subheader("Which words move the score")


@st.cache_data(show_spinner=False, max_entries=64)
def _saliency(key: str, name: str, query: str, document: str, steps: int):
    result = saliency(ui.get_ranker(name), query, document, steps=steps)
    return result.tokens, result.score, result.baseline_score, result.completeness_gap


steps = st.select_slider("Integration steps", [10, 20, 50, 100, 200], value=50,
                         help="Riemann steps of the integrated gradients (trapezoid rule); more "
                              "steps, smaller completeness gap, slower.")
try:
    with st.spinner("Integrated gradients …"):
        frame, at_input, at_base, gap = _saliency(ranker.spec.key() + ranker_name, ranker_name,
                                                  query, document, int(steps))
except RankScopeError as error:
    st.info(f"Token saliency is not available for this ranker: {error}")
    st.stop()
st.markdown(ui.saliency_tokens(frame), unsafe_allow_html=True)
if gap > 0.10:
    st.warning(f"These attributions miss {gap:.0%} of the score change: the path from the [PAD] "
               "baseline bends sharply in this model (decoders with RMS normalisation do), so "
               "the sum converges slowly. Raise the integration steps for a closer account, and "
               "read the signs of the largest tokens rather than exact shares.")
st.caption(f"Integrated gradients on the input embeddings from the [PAD] baseline (every "
           f"text token's embedding replaced by [PAD]'s; the attribution study's): each "
           f"token's share of the score change {at_base:.3f} → {at_input:.3f}. Completeness "
           f"gap {gap:.2%} (the attributions sum to the change up to it). Headless: "
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
