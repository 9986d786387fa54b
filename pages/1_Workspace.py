"""Workspace: model card, collection stats, extraction with progress / stop / resume, and what
each precision (fp32 / bf16 / 4-bit / 8-bit) costs the chosen ranker."""

import pandas as pd
import streamlit as st

import ui
from core.errors import RankScopeError
from core.extract import COMPONENTS, POOLINGS, ExtractionConfig, extract, extraction_key
from core.models.specs import REPO_ROOT
from core.precision import compare_precisions, supported_precisions
from core.retrieval import candidate_pairs
from core.cli import reproduce
from core.store import DEFAULT_PATH, import_side_files

ui.page_setup("Workspace", "🧰")
ranker_name, source = ui.sidebar()
st.title("Workspace")

ranker = ui.ranker_or_error(ranker_name)
collection = ui.collection_or_error(source)
store_option = None if ui.store_path() == DEFAULT_PATH else str(ui.store_path())
store = ui.store_or_error()

left, right = st.columns(2)
with left:
    st.subheader("Model card")
    if ranker is not None:
        card = ranker.card()
        root = str(REPO_ROOT) + "/"
        values = [str(v).replace(root, "") for v in card.values()]  # project paths shortened
        # a static table: every row shown, long values wrapped (a data grid cut both)
        st.table(pd.DataFrame({"property": list(card), "value": values}).set_index("property"))
with right:
    st.subheader("Collection")
    if collection is not None:
        stats = collection.stats()
        st.table(pd.DataFrame({"statistic": list(stats),
                               "value": [str(v) for v in stats.values()]}).set_index("statistic"))
        st.caption(f"Candidates: {ui.candidates_caption(collection)}. Binary measures (MRR, "
                   f"F1) count grade ≥ {collection.min_relevant} as relevant.")
        if collection.skipped:
            st.warning("Skipped while loading: " + ", ".join(
                f"{n} × {problem}" for problem, n in collection.skipped.items()))

if ranker is None or collection is None or store is None:
    st.stop()

st.subheader("Extract activations")
with st.form("extract"):
    c1, c2, c3 = st.columns(3)
    limit = c1.number_input("Queries (0 = all)", min_value=0, value=10, step=5,
                            help="The first N queries of the collection; each brings its "
                                 "top-k candidates (the collection's run, else BM25).")
    depth = c2.number_input(f"{collection.candidates_label} candidates per query", min_value=1,
                            max_value=1000, value=20)
    batch_size = c3.number_input("Batch size", min_value=1, max_value=256, value=20)
    components = st.multiselect("Components", COMPONENTS, default=["resid"],
                                help="resid: hidden state after each block; attn / mlp: the "
                                     "block's attention and MLP outputs.")
    poolings = st.multiselect("Poolings", POOLINGS, default=list(POOLINGS))
    submitted = st.form_submit_button("Run / resume extraction", type="primary")

config = ExtractionConfig(depth=int(depth), limit_queries=int(limit) or None,
                          batch_size=int(batch_size), components=tuple(components),
                          poolings=tuple(poolings))
status = ui.RunStatus("extracting", submitted, "Run / resume extraction", "batch")
if submitted:
    with status.running():
        result = extract(ranker, collection, config, store, progress=status.progress,
                         should_stop=status.should_stop)
    st.success(f"{result.n_pairs} pairs in {result.n_batches} batches: "
               f"{result.computed_now} computed now, "
               f"{result.n_batches - result.computed_now} served from the store "
               f"({result.seconds:.1f} s). Run key `{result.run_key}`.")
    st.code(reproduce("extract", ranker=ranker_name, collection=source,
                      limit=int(limit) or None, depth=int(depth),
                      batch_size=int(batch_size), components=list(components),
                      poolings=list(poolings), store=store_option), language="bash",
            wrap_lines=True)

st.subheader("What a precision costs")
st.caption("Scores the same candidates in each precision and compares them with fp32: rank "
           "correlation of the scores, the share of same-query document pairs whose order "
           "flips, the largest change of one score, nDCG@10 / MRR@10, weights memory and "
           "pairs/s. Pick 4-bit to fit a bigger model only after looking here. "
           "Headless: `python -m core precisions --ranker NAME --collection SRC --limit N`.")
with st.form("precisions"):
    p1, p2 = st.columns([1, 2])
    precision_queries = p1.number_input("Queries", min_value=1, max_value=200, value=5,
                                        help="The first N queries, each with the top-k "
                                             "candidates chosen above.")
    available = supported_precisions(ranker.device)
    chosen = p2.multiselect("Precisions", available, default=available,
                            help="8-bit needs a CUDA GPU (bitsandbytes' int8 kernels).")
    compare = st.form_submit_button("Compare precisions")
precision_key = (ranker.spec.key(), collection.name, int(precision_queries), int(depth),
                 tuple(chosen))
if compare:
    pairs = candidate_pairs(collection, int(depth), limit_queries=int(precision_queries))
    try:
        with st.status(f"Scoring {len(pairs)} pairs in {len(set(chosen) | {'fp32'})} "
                       "precisions …", expanded=True) as status:
            table = compare_precisions(ranker.spec, pairs, collection, chosen,
                                       batch_size=int(batch_size), log=st.write)
            status.update(label="Precisions compared", state="complete", expanded=False)
    except RankScopeError as error:
        st.error(str(error))
    else:
        command = reproduce("precisions", ranker=ranker_name, collection=source,
                            limit=int(precision_queries), depth=int(depth),
                            batch_size=int(batch_size), precisions=list(chosen),
                            out="precisions.csv")
        st.session_state["precision_table"] = (precision_key, len(pairs), table, command)
saved = st.session_state.get("precision_table")
if saved and saved[0] == precision_key:
    _, n_pairs, table, command = saved
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "spearman": st.column_config.NumberColumn("Spearman vs fp32", format="%.4f"),
        "kendall": st.column_config.NumberColumn("Kendall τ vs fp32", format="%.4f"),
        "flipped": st.column_config.NumberColumn("order flips", format="percent"),
        "max_abs_diff": st.column_config.NumberColumn("max |Δscore|", format="%.3f"),
        "nDCG@10": st.column_config.NumberColumn(format="%.4f"),
        "MRR@10": st.column_config.NumberColumn(format="%.4f"),
        "memory_mb": st.column_config.NumberColumn("memory (MB)", format="%.1f"),
        "pairs_per_s": st.column_config.NumberColumn("pairs/s", format="%.1f"),
        "load_s": st.column_config.NumberColumn("load (s)", format="%.1f")})
    worst = table.iloc[table.flipped.fillna(0).argmax()]
    base = table.iloc[0]
    if len(table) > 1 and "nDCG@10" in table:
        st.caption(f"{n_pairs} pairs. {worst.precision}: scores move by up to "
                   f"{worst.max_abs_diff:.2f} and {worst.flipped:.1%} of document pairs swap "
                   f"order, while nDCG@10 goes {base['nDCG@10']:.4f} → "
                   f"{worst['nDCG@10']:.4f} and MRR@10 {base['MRR@10']:.4f} → "
                   f"{worst['MRR@10']:.4f}.")
    with st.expander("Reproduce from the command line"):
        st.code(command, language="bash", wrap_lines=True)
    ui.download_run("precisions", {"ranker": ranker_name, "collection": source,
                                   "queries": int(precision_queries), "depth": int(depth),
                                   "precisions": list(chosen)}, {"precisions": table}, None,
                    command)

st.subheader("In the store")
pending = ui.pending_side_files()
if pending:
    st.info(f"{len(pending)} result file(s) written by CLI jobs are waiting to be imported.")
    if st.button("Import CLI results"):
        for path, outcome in import_side_files(store, pending):
            if isinstance(outcome, str):
                st.error(outcome)
            else:
                found = ", ".join(f"{what}: {n}" for what, n in outcome.items() if n)
                st.success(f"Imported from {path.name} — {found or 'nothing new'}")
runs = store.runs()
if runs.empty:
    st.caption("Nothing yet: run an extraction above or `python -m core extract …`.")
else:
    current = extraction_key(ranker, collection, config)
    runs["this config"] = runs.run_key == current
    st.dataframe(runs.drop(columns=["config"]), hide_index=True, width="stretch")
analyses = store.analysis_runs()
if not analyses.empty:
    st.markdown("**Analyses** (probes, patching sweeps, neuron attribution, knock-outs, "
                "Shapley checks, score lens …)")
    st.dataframe(analyses.drop(columns=["config"]), hide_index=True, width="stretch")
