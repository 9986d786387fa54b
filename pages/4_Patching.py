"""Activation patching: where relevance flows — layer × position heatmaps, heads, RBO, knock-out."""

import json
from dataclasses import asdict

import pandas as pd
import streamlit as st

import ui
from core.charts import head_heatmap, head_scatter, ie_heatmap
from core.constants import POSITION_GROUPS
from core.errors import RankScopeError
from core.patching import (PatchConfig, correlations, head_table, head_top_tokens, mean_effects,
                           rbo_table, run_patching, stored_sweeps, top_heads)
from core.cli.patch import command_line as patch_command
from core.store import DEFAULT_PATH

ui.page_setup("Patching", "🩹")
ranker_name, source = ui.sidebar()
st.title("Activation patching")
st.caption("Each prompt runs twice: **clean** with a relevant document, **corrupted** with a "
           "hard non-relevant one (BM25's best-ranked non-relevant document — the next one "
           "for each further pair of a query — cut to the same token length). A **patched** "
           "run is the corrupted run with one activation taken from the clean run; its "
           "indirect effect IE = (LD_patched − LD_corr) / (LD_clean − LD_corr) is 1 when that "
           "activation carries the whole difference and 0 when it carries none. "
           "LD = logit(yes) − logit(no) for judges, the score for rankers "
           "(*How do LLMs understand relevance?*, 2025).")

store = ui.store_or_error()
if store is None:
    st.stop()
DEFAULTS = PatchConfig()  # the CLI's defaults too: one source

with st.form("patch"):
    c1, c2, c3 = st.columns(3)
    names = ui.ranker_names()
    model = c1.selectbox("Judge or ranker", names, index=names.index(ranker_name))
    options = ui.collection_options()
    collection_source = c2.selectbox("Collection", options,
                                     index=options.index(source) if source in options else 0)
    prompts = c3.multiselect("Prompt", ["pointwise", "pairwise"], default=["pointwise"],
                             help="Pairwise needs a yes/no judge; both give the RBO table.")
    c4, c5, c6, c7 = st.columns(4)
    pairs = c4.number_input("Pairs", min_value=1, max_value=200, value=DEFAULTS.pairs,
                            help="Pairs to patch. On a CPU a SmolLM2 pair takes ≈20–70 s, a "
                                 "MiniLM pair ≈2 s.")
    per_query = c4.number_input("Pairs per query", min_value=1, max_value=100, value=1,
                                help="1 = the study's one pair per held-out query; more pairs "
                                     "each query's i-th relevant document against its i-th "
                                     "hard negative (more usable pairs from few queries).")
    doc_tokens = c5.number_input("Document tokens (max)", min_value=4, max_value=512,
                                 value=DEFAULTS.doc_tokens)
    min_gap = c6.number_input("Min LD_clean − LD_corr", min_value=0.0, value=DEFAULTS.min_gap,
                              step=0.1,
                              help="Pairs below are excluded and replaced by the next candidate "
                                   "(IE divides by this gap).")
    head_groups = c7.multiselect("Patch heads at", list(POSITION_GROUPS),
                                 default=["last", "query"])
    c8 = st.columns(4)[0]
    attention_scores = c8.checkbox("Patch attention scores", value=True,
                                   help="Each head's attention weights between query and "
                                        "document tokens.")
    correct_only = c8.checkbox("Only pairs judged right", value=True,
                               help="Keep pairs where the model prefers the relevant document "
                                    "(as the study); off: any pair with a large enough gap.")
    submitted = st.form_submit_button("Run patching", type="primary")

run = ui.RunStatus("patching", submitted, "Run patching", "pair")

if submitted:
    configs = [PatchConfig(prompt=p, pairs=int(pairs), pairs_per_query=int(per_query),
                           doc_tokens=int(doc_tokens),
                           min_gap=float(min_gap), correct_only=correct_only,
                           head_groups=tuple(head_groups),
                           attention_scores=attention_scores) for p in prompts]
    ranker = ui.ranker_or_error(model)
    collection = ui.collection_or_error(collection_source)
    if ranker is None or collection is None:
        st.stop()
    try:
        if not configs:
            raise RankScopeError("pick at least one prompt type")
        for config in configs:
            config.validate(ranker)
    except RankScopeError as error:
        run.fail(error)
    run.start()
    results = {}
    try:
        for config in configs:
            def show(done, total, what, prompt=config.prompt):
                run.progress(done, total, f"{model} · {prompt}: {what}")

            results[config.prompt] = (config, run_patching(
                ranker, collection, config, store, progress=show, should_stop=run.should_stop))
    except RankScopeError as error:
        run.fail(error)
    run.done()
    st.session_state["patch_view"] = {"model": model, "collection": collection.name,
                                      "results": results, "source": collection_source}

view = st.session_state.get("patch_view")
if not view:  # a new session (after a restart too): the store's sweeps of the sidebar's choice
    collection = ui.collection_or_error(source)
    sweeps = stored_sweeps(store, ranker_name, collection.name) if collection else []
    if not sweeps:
        st.info("Pick a judge or ranker, a collection and a prompt, then **Run patching**. "
                "Results are kept in the store: asking again is instant.")
        st.stop()
    labels = [" + ".join(f"{p} ({r.key})" for p, r in sweep.items()) for sweep in sweeps]
    shown = st.selectbox(f"Stored sweeps of {ranker_name} on {collection.name}",
                         range(len(sweeps)), format_func=labels.__getitem__,
                         help="The newest is shown; run the form above for a new one.")
    view = {"model": ranker_name, "collection": collection.name, "source": source,
            "results": {p: (r.config, r) for p, r in sweeps[shown].items()}}
view["commands"] = [patch_command(view["model"], view["source"], config,
                                   None if ui.store_path() == DEFAULT_PATH
                                   else str(ui.store_path()))
                     for config, _ in view["results"].values()]

results = view["results"]
label = f"{view['model']} · {view['collection']}"
with st.expander("Reproduce from the command line (same store keys: served from the store)"):
    for command in view.get("commands", []):
        st.code(command, language="bash")
    for prompt, (config, result) in results.items():
        ui.download_run(
            f"patching-{view['model']}-{view['collection']}-{prompt}",
            {"analysis": "patching", "ranker": view["model"], "collection": view["collection"],
             "key": result.key, **asdict(config)},
            {"pairs": result.pairs.drop(columns=["tokens"], errors="ignore"),
             "effects": mean_effects(result.used), "results": result.results},
            {f"ie-{target}": ie_heatmap(mean_effects(result.used), target)
             for target in ("attn", "mlp", "resid")
             if (mean_effects(result.used).target == target).any()},
            next((c for c in view.get("commands", []) if f"--prompt {prompt}" in c), ""))
notes = [f"{prompt}: {note}" for prompt, (_, result) in results.items() for note in result.notes]
if notes:
    with st.expander(f"Notes ({len(notes)}): pairs left out and why"):
        for note in notes:
            st.caption(note)
effects = {prompt: mean_effects(result.used) for prompt, (_, result) in results.items()}
if all(frame.empty for frame in effects.values()):
    st.warning("No pair was kept (see the notes above): lower the minimum LD gap or use more "
               "pairs.")
    st.stop()

tabs = st.tabs(["Layers × positions", "Heads", "Attention", "RBO", "Knock-out", "Pairs",
                "Table"])
with tabs[0]:
    for target in ("attn", "mlp", "resid"):
        columns = st.columns(len(effects))
        for column, (prompt, frame) in zip(columns, effects.items()):
            if frame[frame.target == target].empty:
                continue
            with column:
                part = frame[frame.target == target]
                title = {"attn": "Attention output", "mlp": "MLP output",
                         "resid": "Residual stream"}[target]
                ui.chart_with_exports(ie_heatmap(part, target, f"{title} · {prompt}"), part,
                                      f"ie-{target}-{prompt}")

with tabs[1]:
    prompt = st.radio("Prompt", list(effects), horizontal=True, key="heads_prompt")
    frame = effects[prompt]
    groups_done = [g for g in POSITION_GROUPS if g in set(frame[frame.target == "head"].group)]
    if not groups_done:
        st.caption("Heads were not patched in this run (choose position groups under "
                   "*Patch heads at*).")
    for group in groups_done:
        part = frame[(frame.target == "head") & (frame.group == group)]
        ui.chart_with_exports(head_heatmap(part, group), part, f"heads-{group}-{prompt}")
    if groups_done:
        top = top_heads(frame, None, 5)
        if st.button("Top tokens of the top-5 heads (unembedding projection)"):
            ranker = ui.ranker_or_error(view["model"])
            collection = ui.collection_or_error(source)
            if ranker is not None and collection is not None:
                config = results[prompt][0]
                tokens = head_top_tokens(ranker, collection, config,
                                         [(layer, head) for layer, head, _ in top])
                table = (tokens.groupby(["layer", "head"]).token
                         .apply(lambda t: " · ".join(repr(x) for x in t)).reset_index())
                st.dataframe(table, hide_index=True, width="stretch")

with tabs[2]:
    prompt = st.radio("Prompt", list(effects), horizontal=True, key="attention_prompt")
    table = head_table(results[prompt][1].used)
    head_columns = [c for c in table.columns if c.startswith("head IE")]
    if "attention-score IE" not in table or not head_columns:
        st.caption("Patch heads and attention scores to compare them.")
    else:
        x = st.selectbox("Head output IE at", head_columns)
        left, right = st.columns(2)
        with left:
            ui.chart_with_exports(head_scatter(table, "attention-score IE", x), table,
                                  f"scatter-scores-{prompt}")
        with right:
            ui.chart_with_exports(head_scatter(table, "interaction S", x), table,
                                  f"scatter-interaction-{prompt}")
        st.dataframe(correlations(table, x, ["attention-score IE", "interaction S"]),
                     hide_index=True)
        direction = results[prompt][1].results
        direction = direction[direction.target == "interaction"].group.unique()
        st.caption(f"Interaction S = s(clean) − s(corrupted), s = Σ over attending tokens of "
                   f"the max attention to an attended token; direction here: "
                   f"{', '.join(direction)} (a decoder that reads the query first cannot attend "
                   "from query to document).")

with tabs[3]:
    if len(effects) < 2:
        st.caption("Run both prompts (pointwise and pairwise, judges only) for the RBO of "
                   "their layer rankings.")
    else:
        st.dataframe(rbo_table(effects["pointwise"], effects["pairwise"]), hide_index=True,
                     width="stretch")
        st.caption("Rank-biased overlap (p = 0.7) between the layers ordered by mean IE under "
                   "each prompt, per component and position group; empty where IE is the same "
                   "at every layer (e.g. query tokens a decoder reads before the document).")

with tabs[4]:
    st.caption("Mean-ablate the top-k heads by this ranker's mean IE (a stored sweep) against "
               "random heads at the same positions: F1 of yes/no judgments on held-out pairs "
               "and nDCG@10 re-ranking their queries (the study's Table 1).")
    knockout_collection = ui.collection_or_error(view["source"])
    if knockout_collection is not None:
        ui.analysis_section("knockout", view["model"], view["source"], store,
                            knockout_collection)

with tabs[5]:
    prompt = st.radio("Prompt", list(results), horizontal=True, key="pairs_prompt")
    pair_frame = results[prompt][1].pairs
    event = st.dataframe(pair_frame.drop(columns="tokens"), hide_index=True, width="stretch",
                         on_select="rerun", selection_mode="single-row", key=f"pairs-{prompt}")
    selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
    index = selected[0] if selected else 0
    row = pair_frame.iloc[index]
    tokens = json.loads(row.tokens)
    st.markdown(f"**Pair {int(row.pair) + 1}** (query {row.qid}; click a row to switch): clean "
                f"input with the relevant document {row.positive_docno} — LD_clean "
                f"{row.ld_clean:.3f}, LD_corr {row.ld_corr:.3f}, status: {row.status}")
    if tokens:
        st.markdown(ui.coloured_tokens([(t[0], t[1]) for t in tokens]), unsafe_allow_html=True)
        st.markdown(f"Corrupted input (document {row.negative_docno}):")
        st.markdown(ui.coloured_tokens([(t[2], t[1]) for t in tokens]), unsafe_allow_html=True)

with tabs[6]:
    frames = []
    for prompt, frame in effects.items():
        frames.append(frame.assign(prompt=prompt, model=view["model"],
                                   collection=view["collection"]))
    table = pd.concat(frames, ignore_index=True)
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Download mean IE (CSV)", table.to_csv(index=False), "patching.csv",
                       "text/csv", on_click="ignore")
    per_pair = pd.concat([r.results.assign(prompt=p) for p, (_, r) in results.items()])
    st.download_button("Download every patched run (CSV)", per_pair.to_csv(index=False),
                       "patching-per-pair.csv", "text/csv", on_click="ignore")
st.caption(f"{label}: " + "; ".join(
    f"{p}: {len(r.pairs[r.pairs.status == 'used'])} pairs used ({len(r.pairs)} tried), "
    f"{len(r.results)} rows, key {r.key}" for p, (_, r) in results.items()))
