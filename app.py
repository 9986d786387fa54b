"""RankScope — look inside neural rankers. Start with ``streamlit run app.py``.

The entry point lists the pages (``st.navigation``, so the first entry reads "Home"); each page
is its own script under ``pages/`` and is tested on its own.
"""

import streamlit as st

import ui

PAGES = [  # (script, title, favicon, what it answers): the cards below and the navigation
    ("pages/2_Playground.py", "Playground", "🎛️",
     "Type a query and a document: the score, where in the layers it forms, and which words "
     "raise or lower it."),
    ("pages/1_Workspace.py", "Workspace", "🧰",
     "The ranker's card, the collection, activation extraction (stop and resume), and what "
     "4-bit or bf16 costs this ranker."),
    ("pages/3_Probing.py", "Probing", "📈",
     "Which IR features (BM25, TF·IDF, coverage …) each layer encodes: R² curves per layer."),
    ("pages/4_Patching.py", "Patching", "🩹",
     "Where relevance flows: indirect effect per layer × token position, heads, knock-outs."),
    ("pages/5_Attribution.py", "Attribution", "🧬",
     "Which neurons carry the score: conductance of every linear layer, top-X % sets."),
    ("pages/6_Ablation.py", "Ablation", "✂️",
     "Knock neuron sets out while re-ranking: nDCG@10 against random sets, Shapley checks."),
]


def home() -> None:
    ranker, collection = ui.sidebar()
    st.title("RankScope")
    st.markdown("Look inside neural rankers: **which IR signals does a ranker encode, where, "
                "and which parts of it decide relevance — and what happens if you change "
                "this?**")
    st.subheader("Start here")
    for row in range(0, len(PAGES), 3):
        for column, (script, title, icon, text) in zip(st.columns(3), PAGES[row:row + 3]):
            with column.container(border=True):
                st.markdown(f"#### {title}")
                st.caption(text)
                st.page_link(script, label=f"Open {title} →")
    st.info(f"Every page uses the sidebar's choice: ranker **{ranker}**, collection "
            f"**{collection}**.")
    st.markdown(
        "The embedded rankers run offline on a CPU: a MiniLM cross-encoder and SmolLM2-135M "
        "as a RankLlama-style ranker and as a yes/no judge, each with a LoRA adapter trained on "
        "TREC DL 2020 judgments (MS MARCO passages; the `-demo` variants were trained on the "
        "demo collection's templates). The sidebar also adds any hub or local model, uploads a "
        "collection, or adds a collection folder; `python -m core …` runs every analysis "
        "headless on the same store.")


ui.page_setup("Home", "🏠")
# no icons in the navigation: a machine without an emoji font draws them as empty boxes
navigation = st.navigation([st.Page(home, title="Home", default=True)]
                           + [st.Page(script, title=title) for script, title, _, _ in PAGES])
navigation.run()
