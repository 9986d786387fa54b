"""Playground: edit a query or a document and watch the ranker's score and inputs change."""

import pandas as pd
import streamlit as st

import ui
from core.charts import layer_lens_chart
from core.data import check_user_text
from core.errors import RankScopeError

ui.page_setup("Playground", "🎛️")
ranker_name, _ = ui.sidebar()
st.title("Playground")
st.caption("Type a query and a document. The score updates as you edit; the coloured tokens "
           "show what the ranker reads as query, document, instruction and output position.")

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
