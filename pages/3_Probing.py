"""Probing: which IR features each layer encodes — R² curves, model comparison, ID vs OOD."""

import pandas as pd
import streamlit as st

import ui
from core.charts import (comparison_heatmap, id_ood_chart, neuron_count_chart, r2_curve_chart,
                         r2_heatmap, radar_chart)
from core.cli import reproduce
from core.constants import ABSENT_R2, ENCODED_R2
from core.errors import RankScopeError
from core.features import FEATURE_GROUPS
from core.probing import (ProbeConfig, collection_gaps, neuron_histogram, positives_negatives,
                          probe_grid, stored_probes)
from core.store import DEFAULT_PATH

ui.page_setup("Probing", "📈")
ranker_name, source = ui.sidebar()
st.title("Probing")
st.caption("A linear probe per layer and feature (Lasso α = 0.1 on the mean- or max-pooled "
           "hidden state, balanced probing set, 60/20/20 split, 5-fold CV) answers: *does this "
           "layer encode the feature?* R² above 0.85 counts as encoded, below 0.1 as absent "
           "(Chowdhury, Nijasure & Allan, *Understanding Ranking LLMs*).")

store = ui.store_or_error()
if store is None:
    st.stop()

with st.form("probe"):
    c1, c2 = st.columns(2)
    rankers = c1.multiselect("Rankers", ui.ranker_names(), default=[ranker_name],
                             help="Several rankers give the model comparison.")
    options = ui.collection_options()
    collections = c2.multiselect("Collections", options, default=[source],
                                 help="Two collections give the in- vs out-of-distribution view.")
    groups = st.multiselect("Feature groups", list(FEATURE_GROUPS), default=list(FEATURE_GROUPS),
                            help=" · ".join(f"**{g}**: {', '.join(f)}"
                                            for g, f in FEATURE_GROUPS.items()))
    expressions = st.text_area(
        "Feature combinations (one per line; + − * and ^ over z-scored features)",
        value="(covered_query_term_ratio + sum_tf + variance_tfidf)^2\nbm25 * stream_length",
        height=70)
    c3, c4, c5, c6 = st.columns(4)
    pooling = c3.radio("Pooling", ["mean", "max"], horizontal=True)
    estimators = c4.multiselect("Probe", ["lasso", "ridge"], default=["lasso"])
    alpha = c5.number_input("Lasso α", min_value=0.0001, max_value=10.0, value=0.1, step=0.05,
                            format="%.4f")
    limit = c6.number_input("Queries", min_value=1, value=60, step=20,
                            help="First N queries × BM25 top-20 candidates.")
    submitted = st.form_submit_button("Run probes", type="primary")

features = tuple(f for g in groups for f in FEATURE_GROUPS[g])
combos = tuple(line.strip() for line in expressions.splitlines() if line.strip())
config = ProbeConfig(features=features, groups=combos, poolings=(pooling,),
                     estimators=tuple(estimators), lasso_alpha=float(alpha))

status = ui.RunStatus("probing", submitted, "Run probes", "step")
if submitted:
    try:
        config.validate()
        if not rankers or not collections:
            raise RankScopeError("pick at least one ranker and one collection")
    except RankScopeError as error:
        status.fail(error)
    status.start()
    frame, notes, failures, finished = probe_grid(
        [(r, c) for r in rankers for c in collections], store, config,
        load_ranker=ui.get_ranker, load_collection=ui.get_collection,
        limit_queries=int(limit), progress=status.progress, should_stop=status.should_stop)
    for failure in failures:
        st.error(failure)
    frames = [frame] if len(frame) else []
    commands = [reproduce(
        "probe", ranker=name, collection=source, limit=int(limit), features=list(features),
        groups=list(combos), pooling=[pooling], estimator=list(estimators), alpha=float(alpha),
        store=None if ui.store_path() == DEFAULT_PATH else str(ui.store_path()),
        out=f"probe-{name}-{collection.name}.csv") for name, source, collection in finished]
    status.done()
    if frames:
        st.session_state["probe_frame"] = pd.concat(frames, ignore_index=True)
        st.session_state["probe_notes"] = notes
        st.session_state["probe_groups"] = combos
        st.session_state["probe_commands"] = commands

frame = st.session_state.get("probe_frame")
probe_notes = st.session_state.get("probe_notes", [])
group_names = list(st.session_state.get("probe_groups", ()))
commands = st.session_state.get("probe_commands", [])
if frame is None or frame.empty:  # a new session (after a restart too): the store's runs
    collection = ui.collection_or_error(source)
    stored = stored_probes(store, ranker_name, collection.name) if collection else []
    if not stored:
        st.info("Choose rankers, collections and features, then **Run probes**. The first run "
                "extracts activations (cached in the store); asking again is served from the "
                "store.")
        st.stop()
    shown_run = stored[st.selectbox(
        f"Stored probe runs of {ranker_name} on {collection.name}", range(len(stored)),
        format_func=lambda i: f"{stored[i]['created']:%Y-%m-%d %H:%M} · "
                              f"{len(stored[i]['config'].features)} features · "
                              f"{', '.join(stored[i]['config'].estimators)} · {stored[i]['key']}",
        help="The newest is shown; run the form above for a new one.")]
    frame, probe_notes = shown_run["frame"], shown_run["notes"]
    ran = shown_run["config"]
    group_names = list(ran.groups)
    commands = [reproduce(
        "probe", ranker=ranker_name, collection=source, limit=shown_run["limit"],
        depth=shown_run["depth"], features=list(ran.features), groups=list(ran.groups),
        pooling=list(ran.poolings), estimator=list(ran.estimators), alpha=ran.lasso_alpha,
        store=None if ui.store_path() == DEFAULT_PATH else str(ui.store_path()),
        out=f"probe-{ranker_name}-{collection.name}.csv")]
with st.expander("Reproduce from the command line (same store keys: served from the store)"):
    for command in commands:
        st.code(command, language="bash")
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
        ui.chart_with_exports(r2_curve_chart(part, f"{ranker_} · {collection_}: probe R² per "
                                                   "layer, by feature family (click a legend "
                                                   "entry to isolate a feature)"),
                              part.drop(columns="neurons"), f"r2-{ranker_}-{collection_}")
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
