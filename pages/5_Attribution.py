"""Neuron attribution: which neurons of which linear layers carry the relevance score (NIG)."""

import pandas as pd
import streamlit as st

import ui
from core.attribution import (BASELINES, GAP_WARNING, OPERATIONS, TOP_PERCENTS,
                              AttributionConfig, attribute_collection, combine, finished_runs,
                              intersection_curves, load_attribution, scheme_columns,
                              scheme_sources, set_counts)
from core.knockout import ablation_preset
from core.charts import intersection_chart, layer_component_chart
from core.cli import reproduce
from core.errors import RankScopeError
from core.store import DEFAULT_PATH

ui.page_setup("Attribution", "🧬")
ranker_name, source = ui.sidebar()
st.title("Neuron attribution")
st.caption("Neuron Integrated Gradients as conductance (*Which Neurons Matter in IR?*, 2024): "
           "for every output unit of every linear layer (Q, K, V, attention output, FFN; "
           "gate/up/down in LLMs), how much of F(input) − F(baseline) flows through it along "
           "the straight path from the baseline to the input (N Riemann steps, summed over "
           "tokens). Relevant pairs attribute the score F, non-relevant pairs −F (what pushes "
           "the score down); only pairs the model judges right count; fused ⊕ is their mean.")

store = ui.store_or_error()
if store is None:
    st.stop()

options = ui.collection_options()
with st.form("attribute"):
    c1, c2 = st.columns([1, 2])
    names = ui.ranker_names()
    model = c1.selectbox("Ranker", names, index=names.index(ranker_name))
    collections = c2.multiselect("Collections", options, default=[source] if source in options
                                 else options[:1],
                                 help="Each collection gives its own relevant / non-relevant "
                                      "schemes; add a second one (e.g. cranfield) to compare "
                                      "in- and out-of-distribution neurons.")
    c3, c4, c5, c6, c7 = st.columns(5)
    pairs = c3.number_input("Pairs per label", min_value=1, max_value=500, value=5,
                            help="Pairs judged right per label. On this CPU a MiniLM pair "
                                 "takes ≈3 s at N = 100, a SmolLM2 pair ≈1 min.")
    steps = c4.number_input("Riemann steps N", min_value=2, max_value=10_000, value=100,
                            help="The study's N = 100; the completeness gap shrinks with N.")
    baseline = c5.selectbox("Baseline", BASELINES,
                            help="pad: every text token → [PAD] (the study's choice); "
                                 "pad-query: only the query's tokens; zero: zero vectors.")
    rule = c6.selectbox("Riemann rule", ["left", "trapezoid"],
                        help="left: the study's (and captum's) sum, gradient at the start of "
                             "each step; trapezoid: the same points with gradients averaged "
                             "over both ends — SmolLM2's median completeness gap at N = 100 "
                             "falls from 40% to 1% (bench/completeness.py).")
    split = c7.text_input("Query split", value="test",
                          help="Only queries of this split (demo: test); empty for all.")
    submitted = st.form_submit_button("Run attribution", type="primary")

run = ui.RunStatus("attributing", submitted, "Run attribution", "pair")

if submitted:
    config = AttributionConfig(steps=int(steps), baseline=baseline, rule=rule)
    with run.area:
        ranker = ui.ranker_or_error(model)
    if ranker is None:
        st.stop()
    try:
        config.validate(ranker)
        if not collections:
            raise RankScopeError("pick at least one collection")
        loaded = [ui.get_collection(c) for c in collections]
    except RankScopeError as error:
        run.fail(error)
    keys = []
    with run.running():
        for collection in loaded:
            def show(done, total, _what, name=collection.name):
                run.progress(done, total, f"{model} · {name}: pairs")

            result = attribute_collection(ranker, collection, config, int(pairs),
                                          split.strip() or None, store, progress=show,
                                          should_stop=run.should_stop)
            keys.append(result.key)
    st.session_state["attribution_keys"] = keys
    st.session_state["attribution_commands"] = [reproduce(
        "attribute", ranker=model, collection=source_, pairs=int(pairs), steps=int(steps),
        baseline=baseline, rule=rule, split=split.strip(),
        store=None if ui.store_path() == DEFAULT_PATH else str(ui.store_path()),
        out=f"nig-{model}-{collection.name}.csv")
        for source_, collection in zip(collections, loaded)]

if st.session_state.get("attribution_commands"):
    with st.expander("Reproduce the last run from the command line (same store keys)"):
        for command in st.session_state["attribution_commands"]:
            st.code(command, language="bash", wrap_lines=True)
runs = finished_runs(store)
if runs.empty:
    st.info("Pick a ranker and collections, then **Run attribution**. Runs are kept in the "
            "store: asking again is instant.")
    st.stop()
wanted = [k for k in st.session_state.get("attribution_keys", []) if k in set(runs.attr_key)]
default = wanted or runs[runs.ranker == model].attr_key.tail(2).tolist() or [runs.attr_key.iloc[-1]]
labels = dict(zip(runs.attr_key, runs.label))
chosen = st.multiselect("Attribution runs shown", list(labels), default=default,
                        format_func=labels.get,
                        help="Runs of one ranker can be compared; each adds relevant, "
                             "non-relevant and fused schemes.")
results = [load_attribution(store, key) for key in chosen]
if not results:
    st.stop()
try:
    frame, columns = scheme_columns(results)
except RankScopeError as error:
    st.error(str(error))
    st.stop()
st.session_state["attribution_schemes"] = {"keys": chosen, "ranker": results[0].counts["ranker"]}

tabs = st.tabs(["Intersections", "Layers & components", "Set algebra", "Baselines",
                "Completeness"])
with tabs[0]:
    picked = st.multiselect("Schemes", list(columns), default=list(columns)[:min(4, len(columns))],
                            key="curve_schemes")
    if len(picked) < 2:
        st.caption("Pick two or more schemes for their intersection curves.")
    else:
        curves = intersection_curves({p: columns[p] for p in picked})
        ui.chart_with_exports(intersection_chart(curves), curves, "nig-intersections")
        st.caption("|top-X%(A) ∩ top-X%(B)| / |top-X%|; “all n” is the intersection over every "
                   "picked scheme (the study's global intersection).")

with tabs[1]:
    c1, c2 = st.columns(2)
    scheme = c1.selectbox("Scheme", list(columns), key="bars_scheme")
    percent = c2.select_slider("Top X %", options=[0.01, 0.1, 1.0, 5.0, 10.0], value=1.0,
                               key="bars_percent")
    counts = set_counts(frame.assign(value=columns[scheme]), "value", [percent])
    ui.chart_with_exports(layer_component_chart(counts, f"Top {percent}% of {scheme}",
                                                sorted(frame.layer.unique())), counts,
                          "nig-layers")
    totals = counts.groupby("component").neurons.sum().sort_values(ascending=False)
    st.caption("By linear layer: " + ", ".join(f"{c} {n}" for c, n in totals.items()))

with tabs[2]:
    c1, c2, c3 = st.columns([3, 1, 1])
    picked = c1.multiselect("Schemes", list(columns), default=list(columns)[:2],
                            key="algebra_schemes")
    operation = c2.radio("Operation", OPERATIONS, horizontal=True,
                         help="∩: neurons in every scheme's top X %; ⊕: top X % of the mean "
                              "conductance (fusion).")
    percent = c3.number_input("Top X %", min_value=0.001, max_value=100.0, value=1.0,
                              key="algebra_percent")
    try:
        chosen_set = combine({p: columns[p] for p in picked}, operation, float(percent))
    except RankScopeError as error:
        st.error(str(error))
    else:
        neurons = frame.iloc[chosen_set]
        name = f" {operation} ".join(picked) + f" · top {percent}%"
        st.metric("Neurons in the set", f"{len(neurons):,}",
                  help=f"of {len(frame):,} neurons in {frame.path.nunique()} linear layers")
        if len(neurons):
            per_layer = neurons.groupby(["layer", "component"]).size().reset_index(name="neurons")
            ui.chart_with_exports(layer_component_chart(per_layer, name,
                                                        sorted(frame.layer.unique())),
                                  per_layer, "nig-set")
            st.download_button("Download the set (CSV)", neurons.to_csv(index=False),
                               "neuron-set.csv", "text/csv", on_click="ignore")
            preset = ablation_preset(scheme_sources(results), picked, operation, float(percent))
            if preset is None:
                st.caption("The Ablation page knocks out one scheme's top X %, or two schemes "
                           "combined: pick one or two to hand the set over.")
            elif st.button("Use this set on the Ablation page"):
                st.session_state["ablate-preset"] = preset
                for key in [k for k in st.session_state if str(k).startswith("ablate-field-")]:
                    del st.session_state[key]  # the form takes the preset, not old entries
                st.success("Set: open **Ablation** → Neuron sets; its form holds this set.")

with tabs[3]:
    st.caption("How much relevance signal each baseline removes (the study's Table 1): the "
               "score on the input and on the baseline, how often the baseline itself is still "
               "judged relevant (above the median candidate score), and F(x) − F(baseline) — "
               "what a layer's conductances add up to. A good baseline carries no relevance.")
    settings = results[0].counts["config"]
    ui.analysis_section("baselines", results[0].counts["ranker"], source, store,
                        ui.collection_or_error(source) or st.stop(),
                        preset={"pairs": settings["pairs_per_label"],
                                "split": settings["split"] or ""})

with tabs[4]:
    reports = pd.concat([r.reports.assign(collection=r.counts["collection"]) for r in results],
                        ignore_index=True)
    gaps = reports.completeness_gap
    st.markdown(f"Completeness: the last block's conductances sum to F(x) − F(baseline) within "
                f"a median relative gap of **{gaps.median():.4f}** (max {gaps.max():.4f}) over "
                f"{len(reports)} pairs.")
    if gaps.median() > GAP_WARNING:
        st.warning(f"The conductances miss {100 * gaps.median():.0f}% of F(x) − F(baseline) "
                   "(median): use the trapezoid rule or more steps before trusting them.")
    st.dataframe(reports, hide_index=True, width="stretch")
    totals = [f"{r.counts['collection']}: {r.counts['relevant']} relevant + "
              f"{r.counts['non_relevant']} non-relevant pairs judged right of "
              f"{r.counts['candidates']} candidates" for r in results]
    st.caption("; ".join(totals) + f". Top sets by default: {', '.join(map(str, TOP_PERCENTS))} %.")
    table = frame.assign(**{k: v for k, v in columns.items()})
    st.download_button("Download every neuron's conductance (CSV)",
                       table.to_csv(index=False), "attribution.csv", "text/csv",
                       on_click="ignore")
