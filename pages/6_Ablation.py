"""Ablation: knock neuron sets out during re-ranking, Shapley checks of probe neurons, and how
probing, attribution and patching agree."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

import ui
from core.agreement import agreement_correlation, stored_agreement
from core.attribution import LABELS, TOP_PERCENTS, load_attribution, neuron_sets
from core.charts import (ablation_chart, agreement_chart, random_distribution_chart, shapley_chart)
from core.cli import reproduce
from core.errors import RankScopeError
from core.knockout import NEURON_MODES, NeuronAblationConfig, ablate_neuron_sets
from core.shapley import ShapleyConfig, shapley_validation
from core.store import DEFAULT_PATH

ui.page_setup("Ablation", "✂️")
ranker_name, source = ui.sidebar()
st.title("Ablation")
st.caption("Knock neurons out while the ranker re-ranks each query's BM25 top-20 and measure "
           "nDCG@10 (ir_measures) against the full model and against random sets of the same "
           "size in the same linear layers (*Which Neurons Matter in IR?*, Table 4); check "
           "probe-identified neurons with Shapley values (*Understanding Ranking LLMs*); and "
           "compare what probing, attribution and patching single out, layer by layer.")

store = ui.store_or_error()
if store is None:
    st.stop()

runs = store.attribution_runs()
runs = runs[runs.status == "done"]
tabs = st.tabs(["Neuron sets", "Shapley check", "Agreement"])

with tabs[0]:
    saved = st.session_state.get("neuron_set")
    labels = {r.attr_key: f"{r.ranker} · {r.collection} · {r.attr_key}"
              for r in runs.itertuples()}
    if saved:
        labels = {"saved": "the set built on the Attribution page", **labels}
    sources = list(labels)  # store keys (or "saved"); the select box shows their labels
    if not sources:
        st.info("Run an attribution first (Attribution page or `python -m core attribute`).")
    else:
        with st.form("ablate"):
            c1, c2 = st.columns([2, 1])
            origin = c1.selectbox("Neuron sets from", sources, format_func=labels.get)
            scheme = c2.selectbox("Scheme", [*LABELS, "fused"], index=2,
                                  help="For a stored run: whose top X % to knock out.")
            c3, c4, c5, c6, c7 = st.columns(5)
            percents = c3.multiselect("Top X %", [0.01, 0.1, 1.0, 5.0], default=list(TOP_PERCENTS))
            mode = c4.selectbox("Knock-out", NEURON_MODES,
                                help="zero (the study) or each unit's mean output.")
            draws = c5.number_input("Random sets", min_value=1, max_value=500, value=10,
                                    help="The study draws 50; each costs one re-ranking.")
            queries = c6.number_input("Queries", min_value=1, max_value=1000, value=10)
            collection_source = c7.text_input("Collection", value=source,
                                              help="Where to re-rank (demo, cranfield, a folder).")
            run = st.form_submit_button("Run knock-out", type="primary")
        if run:
            try:
                if origin == "saved":
                    ranker_used = saved["ranker"]
                    sets = {saved["name"]: saved["frame"]}
                else:
                    result = load_attribution(store, origin)
                    ranker_used = result.counts["ranker"]
                    sets = neuron_sets(result.frame, scheme, percents)
                config = NeuronAblationConfig(mode=mode, draws=int(draws), queries=int(queries))
                config.validate()
            except RankScopeError as error:
                st.error(str(error))
                st.stop()
            ranker = ui.ranker_or_error(ranker_used)
            collection = ui.collection_or_error(collection_source)
            if ranker is None or collection is None:
                st.stop()
            bar = st.progress(0.0, text="Re-ranking …")
            try:
                table = ablate_neuron_sets(
                    ranker, collection, sets, config, store=store,
                    progress=lambda done, total, what: bar.progress(
                        done / total, text=f"{what} {done}/{total}"))
            except RankScopeError as error:
                st.error(str(error))
                st.stop()
            bar.progress(1.0, text="Done")
            store_option = None if ui.store_path() == DEFAULT_PATH else str(ui.store_path())
            if origin == "saved":
                command = ("# a set built with the Attribution page's set algebra has no "
                           "command line; knock-outs of top-X % sets of a stored run do")
            else:
                ran = result.counts["config"]
                command = "\n".join([reproduce(
                    "attribute", ranker=ranker_used, collection=result.counts["collection"],
                    pairs=ran["pairs_per_label"], steps=ran["steps"], baseline=ran["baseline"],
                    rule=ran.get("rule", "left"), split=ran.get("split") or "",
                    store=store_option, out="nig.csv"), reproduce(
                    "ablate", ranker=ranker_used, collection=collection_source,
                    attribution="nig.csv", scheme=scheme, percents=list(percents), mode=mode,
                    draws=int(draws), queries=int(queries), store=store_option,
                    out="ablate.csv")])
            st.session_state["ablation_view"] = (f"{ranker_used} · {collection.name} · {mode}",
                                                 table, command, asdict(config))
        view = st.session_state.get("ablation_view")
        if view:
            label, table, command, ran_config = view
            shown = pd.DataFrame({
                "set": table.set, "neurons": table.neurons,
                "nDCG@10 full": table.ndcg_full.round(4),
                "knocked out": [f"{v:.4f} ({c:+.2f}%)" for v, c in
                                zip(table.ndcg_ablated, table.change_pct)],
                "random": [f"{v:.4f} ({c:+.2f}% ± {s:.4f})" for v, c, s in
                           zip(table.ndcg_random, table.random_change_pct, table.random_sd)],
                "p": table.p_value.map(lambda p: f"{p:.3g}"),
                "sig.": table.significant.map({True: "*", False: ""}),
                "queries": table.queries})
            st.markdown(f"**{label}**")
            st.dataframe(shown, hide_index=True, width="stretch")
            st.caption("Random: the mean over the random sets (± sd of their means); p: paired "
                       "two-tailed t-test over queries of the set vs the random sets' mean; "
                       "* p < 0.05.")
            ui.chart_with_exports(ablation_chart(table), table.drop(columns="random_changes"),
                                  "ablation")
            ui.chart_with_exports(random_distribution_chart(table), table, "ablation-random")
            with st.expander("Reproduce this run from the command line (same store keys)"):
                st.code(command, language="bash")
            ui.download_run("ablation", {"run": label, "config": ran_config},
                            {"knockout": table.drop(columns="random_changes")},
                            {"knockout": ablation_chart(table),
                             "random_sets": random_distribution_chart(table)}, command)

with tabs[1]:
    st.caption("Neurons a probe relies on (non-zero Lasso weights of a feature with test R² "
               "above the threshold) form one player; random groups of the same size from the "
               "other dimensions are the others. The value of a coalition is nDCG@10 with every "
               "absent group knocked out in the block's output; Shapley values come from "
               "sampled player orders. Is the probe group above the random groups' 95th "
               "percentile, and in how many queries?")
    probes = store.probe_runs()
    probes = probes[probes.status == "done"] if not probes.empty else probes
    if probes.empty:
        st.info("Run a probe first (Probing page or `python -m core probe`).")
    else:
        with st.form("shapley"):
            labels = {r.probe_key: f"{r.ranker} · {r.collection} · {r.probe_key}"
                      for r in probes.itertuples()}
            c1, c2, c3 = st.columns([2, 1, 1])
            probe_key = c1.selectbox("Probe run", list(labels)[::-1], format_func=labels.get)
            threshold = c2.number_input("R² threshold", 0.0, 0.99, 0.85, 0.05)
            layer = c3.number_input("Layer (0 = last)", min_value=0, value=0,
                                    help="Layers before the last re-run the blocks above for "
                                         "every coalition: minutes per query on a CPU.")
            c4, c5, c6, c7 = st.columns(4)
            random_groups = c4.number_input("Random groups", 1, 99, 19)
            permutations = c5.number_input("Orders sampled", 1, 1000, 40)
            queries = c6.number_input("Queries", 1, 500, 10, key="shapley_queries")
            mode = c7.selectbox("Knock-out", ["mean", "zero"], key="shapley_mode")
            run = st.form_submit_button("Run Shapley check", type="primary")
        if run:
            info = probes[probes.probe_key == probe_key].iloc[0]
            config = ShapleyConfig(threshold=float(threshold), layer=int(layer) or None,
                                   random_groups=int(random_groups),
                                   permutations=int(permutations), queries=int(queries),
                                   mode=mode)
            ranker = ui.ranker_or_error(info.ranker)
            collection = ui.collection_or_error(source)
            if ranker is None or collection is None:
                st.stop()
            bar = st.progress(0.0, text="Sampling coalitions …")
            try:
                per_query, summary = shapley_validation(
                    ranker, collection, store.probe_results(probe_key), config, store=store,
                    progress=lambda done, total, what: bar.progress(done / total, text=what))
            except RankScopeError as error:
                st.error(str(error))
                st.stop()
            bar.progress(1.0, text="Done")
            command = reproduce(
                "shapley", ranker=info.ranker, collection=source,
                probe_collection=info.collection, threshold=float(threshold),
                layer=int(layer) or None, random_groups=int(random_groups),
                permutations=int(permutations), queries=int(queries), mode=mode,
                store=None if ui.store_path() == DEFAULT_PATH else str(ui.store_path()),
                out="shapley.csv")
            st.session_state["shapley_view"] = (f"{info.ranker} · {collection.name}", per_query,
                                                summary, command, asdict(config))
        view = st.session_state.get("shapley_view")
        if view:
            label, per_query, summary, command, ran_config = view
            st.markdown(f"**{label}**")
            st.dataframe(summary, hide_index=True, width="stretch")
            ui.chart_with_exports(shapley_chart(per_query), per_query, "shapley", stretch=False)
            with st.expander("Reproduce this run from the command line (the store's newest "
                             "probe run of this ranker on that collection)"):
                st.code(command, language="bash")
            ui.download_run("shapley", {"run": label, "config": ran_config},
                            {"summary": summary, "per_query": per_query},
                            {"shapley": shapley_chart(per_query)}, command)

with tabs[2]:
    st.caption("Per layer: residual dimensions a probe relies on, the top-X % NIG neurons "
               "(those of the attention and FFN output projections are residual dimensions), "
               "how many dimensions both pick against the overlap expected by chance "
               "(hypergeometric p), and the largest |IE| patching found at the block's "
               "attention and MLP outputs.")
    if runs.empty:
        st.info("Run an attribution first.")
    else:
        c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
        labels = {r.attr_key: f"{r.ranker} · {r.collection} · {r.attr_key}"
                  for r in runs.itertuples()}
        key = c1.selectbox("Attribution run", list(labels)[::-1], format_func=labels.get,
                           key="agree_run")
        scheme = c2.selectbox("Scheme", [*LABELS, "fused"], index=2, key="agree_scheme")
        percent = c3.number_input("Top X %", 0.001, 100.0, 1.0, key="agree_percent")
        threshold = c4.number_input("Probe R² >", 0.0, 0.99, 0.5, 0.05, key="agree_threshold")
        result = load_attribution(store, key)
        ranker = result.counts["ranker"]
        table, probe_key, patch_key = stored_agreement(store, result, scheme, float(percent),
                                                       float(threshold))
        for name, found in (("probe", probe_key), ("patching", patch_key)):
            if found is None:
                st.caption(f"No finished {name} run of {ranker} in the store: its columns are "
                           "left out.")
        ui.chart_with_exports(agreement_chart(table), table, "agreement")
        st.dataframe(table, hide_index=True, width="stretch")
        correlation = agreement_correlation(table)
        if correlation:
            st.caption(f"NIG top-{percent}% neurons per (layer, attention/MLP) vs patching |IE|: "
                       f"Spearman {correlation['spearman']:.3f} (p = "
                       f"{correlation['p_value']:.3g}, n = {correlation['n']}).")
