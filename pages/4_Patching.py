"""Activation patching: where relevance flows — layer × position heatmaps, heads, RBO, knock-out."""

import json
from dataclasses import asdict

import pandas as pd
import streamlit as st

import ui
from core.charts import head_heatmap, head_scatter, ie_heatmap
from core.constants import POSITION_GROUPS
from core.errors import RankScopeError
from core.analysis import registered
from core.patching import head_top_tokens
from core.sweep import (correlations, head_table, load_patching, mean_effects, rbo_table,
                        top_heads, with_twin)

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
collection = ui.collection_or_error(source)
if store is None or collection is None:
    st.stop()
analysis = registered()["patch"]
st.caption("The form runs one prompt; run the same settings with the other prompt (judges "
           "only) for the RBO of their layer rankings. Headless: `python -m core patch --help`.")
ui.analysis_form(analysis, ranker_name, store, collection, None)
chosen = ui.stored_run_choice(analysis, ranker_name, store, collection)
if chosen is None:
    st.stop()
info, stored = chosen
shown = load_patching(store, info.key)
results = {prompt: (result.config, result) for prompt, result in
           with_twin(store, shown, ranker_name, collection.name).items()}
view = {"model": ranker_name, "collection": collection.name, "source": source,
        "commands": [ui.command_line("patch", ranker_name, source, asdict(config))
                     for config, _ in results.values()]}

label = f"{view['model']} · {view['collection']}"
with st.expander("Reproduce from the command line (same store keys: served from the store)"):
    for command in view["commands"]:
        st.code(command, language="bash", wrap_lines=True)
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
            next((c for c in view["commands"] if f"--prompt {prompt}" in c), ""))
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
            if ranker is not None:
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
    ui.analysis_section("knockout", view["model"], view["source"], store, collection)

with tabs[5]:
    prompt = st.radio("Prompt", list(results), horizontal=True, key="pairs_prompt")
    pair_frame = results[prompt][1].pairs.reset_index(drop=True)
    try:
        kind = ui.spec_for(view["model"]).kind
    except RankScopeError:
        kind = None  # a model added in another session: plain group names
    shown_pairs = pair_frame.drop(columns="tokens").assign(pair=pair_frame.pair + 1)
    event = st.dataframe(shown_pairs, hide_index=True, width="stretch",
                         on_select="rerun", selection_mode="single-row", key=f"pairs-{prompt}")
    selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
    used = pair_frame.index[pair_frame.status == "used"]
    index = selected[0] if selected else int(used[0]) if len(used) else 0
    row = pair_frame.iloc[index]
    tokens = json.loads(row.tokens)
    st.markdown(f"**Pair {int(row.pair) + 1}** (query {row.qid}; "
                f"{'the first pair used; ' if not selected else ''}click a row to switch): "
                f"clean input with the relevant document {row.positive_docno} — LD_clean "
                f"{row.ld_clean:.3f}, LD_corr {row.ld_corr:.3f}, status: {row.status}")
    if tokens:
        st.markdown(ui.coloured_tokens([(t[0], t[1]) for t in tokens], kind),
                    unsafe_allow_html=True)
        st.markdown(f"Corrupted input (document {row.negative_docno}):")
        st.markdown(ui.coloured_tokens([(t[2], t[1]) for t in tokens], kind),
                    unsafe_allow_html=True)

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
