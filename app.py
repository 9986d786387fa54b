"""RankScope — look inside neural rankers. Start with ``streamlit run app.py``."""

import streamlit as st

import ui

ui.page_setup("Home")
ranker, collection = ui.sidebar()

st.title("RankScope")
st.markdown(
    "A workbench for looking inside neural rankers: **which IR signals does a ranker encode, "
    "where, and which parts of it decide relevance?**\n\n"
    "- **Workspace** — the chosen ranker's model card, the collection, and activation "
    "extraction into the store (with progress, stop and resume).\n"
    "- **Probing** — layer-wise Lasso/ridge probes for 26 IR features (coverage, TF, TF/L, "
    "TF·IDF, BM25, similarities): R² curves per layer, model comparison, in- vs "
    "out-of-distribution, feature groups.\n"
    "- **Playground** — type a query and a document, see the score and which tokens the "
    "ranker reads as query, document, instruction and output position.\n"
    "- **Patching** — clean / corrupted / patched runs: indirect effect per layer × token "
    "position for attention and MLP outputs, per head, attention scores, pointwise vs "
    "pairwise (RBO), head knock-out.\n"
    "- **Attribution** — neuron conductance (integrated gradients) for every linear layer, "
    "top-X% neuron sets, their intersections and set algebra across collections.\n"
    "- **Ablation** — knock neuron sets out while re-ranking (nDCG@10 vs random sets, with "
    "significance), Shapley check of probe neurons, agreement of the three methods.\n\n"
    "The sidebar also adds any hub or local model (remote code only when you tick it), "
    "uploads a collection, or adds a collection folder.\n\n"
    "The embedded rankers run offline on a CPU: a MiniLM cross-encoder and SmolLM2-135M as a "
    "RankLlama-style ranker and as a yes/no judge, each with a LoRA adapter trained on the "
    "demo collection by `scripts/train_adapters.py`.")
st.info(f"Workspace: ranker **{ranker}**, collection **{collection}**. "
        "Change them in the sidebar; every page uses the same choice.")
