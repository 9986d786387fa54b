"""Ablation: knock neuron sets out during re-ranking, Shapley checks of probe neurons, and how
probing, attribution and patching agree — three registered analyses (core/knockout.py,
core/shapley.py, core/agreement.py), each drawn by ui.analysis_section."""

import streamlit as st

import ui

ui.page_setup("Ablation", "✂️")
ranker_name, source = ui.sidebar()
st.title("Ablation")
st.caption("Knock neurons out while the ranker re-ranks each query's BM25 top-20 and measure "
           "nDCG@10 (ir_measures) against the full model and against random sets of the same "
           "size in the same linear layers (*Which Neurons Matter in IR?*, Table 4); check "
           "probe-identified neurons with Shapley values (*Understanding Ranking LLMs*); and "
           "compare what probing, attribution and patching single out, layer by layer. Each "
           "builds on a stored run of the sidebar's ranker (Attribution, Probing, Patching "
           "pages).")

store = ui.store_or_error()
collection = ui.collection_or_error(source)
if store is None or collection is None:
    st.stop()

tabs = st.tabs(["Neuron sets", "Shapley check", "Agreement"])
with tabs[0]:
    ui.analysis_section("ablate", ranker_name, source, store, collection,
                        preset=st.session_state.get("ablate-preset"))
with tabs[1]:
    st.caption("Neurons a probe relies on (non-zero Lasso weights of a feature with test R² "
               "above the threshold) form one player; random groups of the same size from the "
               "other dimensions are the others. The value of a coalition is nDCG@10 with every "
               "absent group knocked out in the block's output; Shapley values come from "
               "sampled player orders. Is the probe group above the random groups' 95th "
               "percentile, and in how many queries?")
    ui.analysis_section("shapley", ranker_name, source, store, collection)
with tabs[2]:
    st.caption("Per layer: residual dimensions a probe relies on, the top-X % NIG neurons "
               "(those of the attention and FFN output projections are residual dimensions), "
               "how many dimensions both pick against the overlap expected by chance "
               "(hypergeometric p), and the largest |IE| patching found at the block's "
               "attention and MLP outputs.")
    ui.analysis_section("agreement", ranker_name, source, store, collection)
