"""RankScope — look inside neural rankers. Start with ``streamlit run app.py``.

The Home page: "start here" cards for every page. The sidebar's navigation (``ui.sidebar``) is
RankScope's own, so that its first entry reads "Home" on every page, whichever URL was opened.
"""

import streamlit as st

import ui

ui.page_setup("Home", "🏠")
ranker, collection = ui.sidebar()
st.title("RankScope")
st.markdown("Look inside neural rankers: **which IR signals does a ranker encode, where, "
            "and which parts of it decide relevance — and what happens if you change "
            "this?**")
st.subheader("Start here")
for row in range(0, len(ui.PAGES), 3):
    for column, (script, title, icon, text) in zip(st.columns(3), ui.PAGES[row:row + 3]):
        with column.container(border=True):
            st.markdown(f"#### {title}")
            st.caption(text)
            st.page_link(script, label=f"Open {title} →")
st.info(f"Every page uses the sidebar's choice: ranker **{ranker}**, collection "
        f"**{collection}** (a lesson says when it needs its own).")
st.markdown(
    "The embedded rankers run offline on a CPU: a MiniLM cross-encoder and SmolLM2-135M "
    "as a RankLlama-style ranker and as a yes/no judge, each with a LoRA adapter trained on "
    "TREC DL judgments (MS MARCO passages: 2020 + 2021 for MiniLM, 2020 for SmolLM2 while "
    "its retraining runs; the `-dl20` variants keep the 2020-only adapters, the `-demo` "
    "variants were trained on the demo collection's templates). The sidebar also adds any hub or local model, uploads a "
    "collection, or adds a collection folder; `python -m core …` runs every analysis "
    "headless on the same store.")
