"""Probing: which IR features each layer encodes — R² curves, model comparison, ID vs OOD."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

import ui
from core.charts import (comparison_heatmap, id_ood_chart, neuron_count_chart, r2_curve_chart,
                         r2_curve_panels, r2_heatmap, radar_chart)
from core.analysis import config_from, registered
from core.constants import ABSENT_R2, ENCODED_R2
from core.errors import RankScopeError
from core.probing import (ProbeConfig, collection_gaps, load_probe, neuron_histogram,
                          positives_negatives, probe_grid, stored_probes)

ui.page_setup("Probing", "📈")
ranker_name, source = ui.sidebar()
st.title("Probing")
st.caption("A linear probe per layer and feature (Lasso α = 0.1 on the mean- or max-pooled "
           "hidden state, balanced probing set, 60/20/20 split, 5-fold CV) answers: *does this "
           "layer encode the feature?* R² above 0.85 counts as encoded, below 0.1 as absent "
           "(Chowdhury, Nijasure & Allan, *Understanding Ranking LLMs*).")

# the page starts smaller than the CLI: the first 60 queries, and two feature combinations
PAGE_DEFAULTS = {"limit": 60, "groups": ("(covered_query_term_ratio + sum_tf + variance_tfidf)^2",
                                         "bm25 * stream_length")}
store = ui.store_or_error()
if store is None:
    st.stop()
analysis = registered()["probe"]

with st.form("probe"):
    c1, c2 = st.columns(2)
    rankers = c1.multiselect("Rankers", ui.ranker_names(), default=[ranker_name],
                             help="Several rankers give the model comparison.")
    options = ui.collection_options()
    collections = c2.multiselect("Collections", options, default=[source],
                                 help="Two collections give the in- vs out-of-distribution view.")
    values, error = ui.config_fields(analysis, PAGE_DEFAULTS)
    submitted = st.form_submit_button("Run probes", type="primary")

status = ui.RunStatus("probing", submitted, "Run probes", "layer")
if submitted:
    try:
        if error is not None:
            raise error
        config = config_from(ProbeConfig, values)
        analysis.validate(config)
        if not rankers or not collections:
            raise RankScopeError("pick at least one ranker and one collection")
    except RankScopeError as bad:
        status.fail(bad)
    with status.running():
        frame, notes, failures, finished = probe_grid(
            [(r, c) for r in rankers for c in collections], store, config,
            load_ranker=ui.get_ranker, load_collection=ui.get_collection,
            progress=status.progress, should_stop=status.should_stop)
    for failure in failures:
        st.error(failure)
    if finished:  # the runs' keys: what is drawn below is read from the store
        st.session_state["probe_runs"] = [(name, where, key) for name, where, _, key in finished]

chosen = st.session_state.get("probe_runs")
if not chosen:  # a new session (after a restart too): the store's runs of the sidebar's choice
    collection = ui.collection_or_error(source)
    stored = stored_probes(store, ranker_name, collection.name) if collection else []
    if not stored:
        st.info("Choose rankers, collections and features, then **Run probes**. The first run "
                "extracts activations (cached in the store); asking again is served from the "
                "store.")
        st.stop()
    index = st.selectbox(
        f"Stored probe runs of {ranker_name} on {collection.name}", range(len(stored)),
        format_func=lambda i: f"{len(stored[i]['config'].features)} features · "
                              f"{', '.join(stored[i]['config'].estimators)} · "
                              f"{stored[i]['key']}",
        help="The newest is shown; run the form above for a new one.")
    chosen = [(ranker_name, source, stored[index]["key"])]
runs = [(name, where, load_probe(store, key)) for name, where, key in chosen]
frame = pd.concat([run["frame"] for _, _, run in runs], ignore_index=True)
probe_notes = [f"{run['frame'].ranker.iloc[0]} × {run['frame'].collection.iloc[0]}: {note}"
               for _, _, run in runs if len(run["frame"]) for note in run["notes"]]
group_names = list(dict.fromkeys(g for _, _, run in runs for g in run["config"].groups))
commands = [ui.command_line("probe", name, where, asdict(run["config"]))
            for name, where, run in runs]
with st.expander("Reproduce from the command line (same store keys: served from the store)"):
    for command in commands:
        st.code(command, language="bash", wrap_lines=True)
    for (ranker_, collection_), part in frame.groupby(["ranker", "collection"]):
        ui.download_run(
            f"probing-{ranker_}-{collection_}",
            {"analysis": "probing", "ranker": ranker_, "collection": collection_,
             "groups": group_names},
            {"probes": part.drop(columns="neurons"), "neurons": part[["feature", "layer",
                                                                      "neurons"]]},
            {"r2-heatmap": r2_heatmap(part)},
            next((c for c in commands if f"--ranker {ranker_} " in c), ""))
notes = list(dict.fromkeys(probe_notes))
if notes:
    with st.expander(f"Notes ({len(notes)}): features left out and why"):
        for note in notes:
            st.caption(note)

summary = positives_negatives(frame)
estimator = st.radio("Show probe", sorted(frame.estimator.unique()), horizontal=True)
shown = frame[frame.estimator == estimator]
summary = summary[summary.estimator == estimator]
tabs = st.tabs(["R² per layer", "Model comparison", "ID vs OOD", "Feature groups",
                "Neurons", "Table"])

with tabs[0]:
    pairs = shown[["ranker", "collection"]].drop_duplicates().itertuples(index=False)
    for ranker_, collection_ in pairs:
        part = shown[(shown.ranker == ranker_) & (shown.collection == collection_)
                     & ~shown.feature.isin(group_names)]
        st.markdown(f"**{ranker_}** on **{collection_}**")
        ui.chart_with_exports(r2_heatmap(part, f"{ranker_} · {collection_}: probe R² per layer "
                                               "and feature"), part.drop(columns="neurons"),
                              f"r2-heatmap-{ranker_}-{collection_}")
        st.markdown(f"**Probe R² per layer, by feature family** (dashed: {ENCODED_R2} "
                    f"encoded, {ABSENT_R2} absent; click a legend entry to isolate a feature)")
        ui.chart_with_exports(r2_curve_chart(part, f"{ranker_} · {collection_}: probe R² per "
                                                   "layer, by feature family (click a legend "
                                                   "entry to isolate a feature)"),
                              part.drop(columns="neurons"), f"r2-{ranker_}-{collection_}",
                              panels=r2_curve_panels(part))
        verdicts = summary[(summary.ranker == ranker_) & (summary.collection == collection_)]
        positive = verdicts[verdicts.max_r2 > ENCODED_R2].feature.tolist()
        negative = verdicts[verdicts.max_r2 < ABSENT_R2].feature.tolist()
        st.markdown(f"**Encoded** (max R² > {ENCODED_R2}): {', '.join(positive) or '—'}  \n"
                    f"**Absent** (max R² < {ABSENT_R2}): {', '.join(negative) or '—'}")

with tabs[1]:
    chosen = st.selectbox("Collection", sorted(summary.collection.unique()), key="cmp_coll")
    part = summary[(summary.collection == chosen) & ~summary.feature.isin(group_names)]
    if part.ranker.nunique() < 2:
        st.caption("Probe two or more rankers to compare them; one ranker is shown.")
    ui.chart_with_exports(radar_chart(part), part, f"radar-{chosen}", stretch=False)
    sort_by = st.selectbox("Sort features by", ["mean", "name", *sorted(part.ranker.unique())],
                           format_func=lambda o: {"mean": "mean R² over models",
                                                  "name": "name"}.get(o, f"R² of {o}"))
    ui.chart_with_exports(comparison_heatmap(part, sort_by), part, f"heatmap-{chosen}")

with tabs[2]:
    if shown.collection.nunique() < 2:
        st.caption("Probe the same ranker on two collections (e.g. demo and cranfield) to "
                   "compare in- and out-of-distribution R² at the last layer.")
    else:
        chosen = st.selectbox("Ranker", sorted(shown.ranker.unique()), key="ood_ranker")
        part = shown[(shown.ranker == chosen) & ~shown.feature.isin(group_names)]
        last = part[part.layer == part.layer.max()]
        ui.chart_with_exports(id_ood_chart(last), last.drop(columns="neurons"), f"ood-{chosen}")
        st.markdown("**Every layer**: R² per collection and the gap to the first one")
        st.dataframe(collection_gaps(part), hide_index=True, width="stretch")

with tabs[3]:
    if not group_names:
        st.caption("Add feature combinations above to probe them next to BM25.")
    for (ranker_, collection_), part in shown[shown.feature.isin(group_names + ["bm25"])].groupby(
            ["ranker", "collection"]):
        ui.chart_with_exports(r2_curve_chart(part, f"{ranker_} · {collection_}: feature groups "
                                                   "vs BM25", by_family=False),
                              part.drop(columns="neurons"),
                              f"groups-{ranker_}-{collection_}")

with tabs[4]:
    runs = [f"{r} · {c}" for r, c in shown[["ranker", "collection"]].drop_duplicates()
            .itertuples(index=False)]
    chosen = st.selectbox("Ranker · collection", runs, key="neuron_run")
    ranker_, collection_ = chosen.split(" · ", 1)
    histogram = neuron_histogram(shown[(shown.ranker == ranker_)
                                       & (shown.collection == collection_)
                                       & ~shown.feature.isin(group_names)])
    if histogram.probes.sum() == 0:
        st.caption("Neuron counts are read from Lasso probes.")
    else:
        ui.chart_with_exports(neuron_count_chart(histogram), histogram, "neuron-counts")

with tabs[5]:
    st.dataframe(shown.drop(columns="neurons"), hide_index=True, width="stretch")
    st.download_button("Download the table (CSV)", shown.to_csv(index=False), "probes.csv",
                       "text/csv", on_click="ignore")
