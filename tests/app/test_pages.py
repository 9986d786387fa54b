"""Every page through Streamlit's AppTest, on the real embedded rankers."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.models import EMBEDDED

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / name), default_timeout=TIMEOUT)


def test_home_page_renders_with_sidebar():
    at = page("app.py").run()
    assert not at.exception
    assert "RankScope" in at.title[0].value
    assert at.sidebar.selectbox[0].value == "minilm-cross-encoder"
    assert "demo" in at.sidebar.selectbox[1].options
    # "start here" cards, one per page, each linking to it
    links = [link.proto.label for link in at.get("page_link")]
    cards = [label for label in links if label.startswith("Open ")]
    assert cards == [f"Open {t} →" for t in ("Lessons", "Playground", "Workspace", "Probing",
                                             "Patching", "Attribution", "Ablation", "Score lens")]
    assert "TREC DL judgments (MS MARCO passages: 2020 + 2021 for MiniLM" in " ".join(m.value for m in at.markdown)


def test_the_first_navigation_entry_is_home():
    """(Every page draws the same sidebar; the browser test checks it on a page opened by its
    URL, where Streamlit's own list would read "app".)"""
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showSidebarNavigation"] is False  # Streamlit's own list ("app") off
    at = page("app.py").run()
    nav = [link.proto.label for link in at.sidebar.get("page_link")]
    assert nav == ["Home", "Lessons", "Playground", "Workspace", "Probing", "Patching",
                   "Attribution", "Ablation", "Score lens"]
    import ui

    assert {script for script, *_ in ui.PAGES} == {f"pages/{p.name}"
                                                    for p in (ROOT / "pages").glob("*.py")}


def test_playground_saliency_follows_the_ranker_not_the_last_switch():
    """On for the cross-encoder (half a second per edit); switching to an LLM judge starts
    it off again, the cost said beside the box."""
    at = page("pages/2_Playground.py").run()
    assert at.toggle(key="pg_saliency-minilm-cross-encoder").value is True
    assert any("lowers it" in m.value for m in at.main.markdown)
    at.session_state["ranker"] = "smollm2-judge"
    at.run()
    assert not at.exception
    assert at.toggle(key="pg_saliency-smollm2-judge").value is False
    assert not any("lowers it" in m.value for m in at.main.markdown)
    assert any("half a minute per edit" in c.value for c in at.caption)


@pytest.mark.parametrize("ranker", EMBEDDED)
def test_playground_scores_each_embedded_ranker_and_reacts_to_edits(ranker):
    at = page("pages/2_Playground.py")
    at.session_state["ranker"] = ranker
    at.run()
    assert not at.exception and not at.error
    first = float(at.metric[0].value)
    tokens = next(m.value for m in at.main.markdown if "<span" in m.value)
    scored = "[CLS]" if ranker == "minilm-cross-encoder" else "last"  # what the position is
    assert 'title="query"' in tokens and 'title="document"' in tokens
    assert f'title="{scored}"' in tokens and f">{scored}</span>" in tokens  # spans and legend
    if ranker != "minilm-cross-encoder":  # the LLMs' saliency is on request (seconds per edit)
        assert not any("lowers it" in m.value for m in at.main.markdown)
        at.toggle(key=f"pg_saliency-{ranker}").set_value(True).run()
    at.text_area[0].set_value("Kyoto has a famous stone bridge and hot and dry summers.").run()
    second = float(at.metric[0].value)
    assert second != first
    assert at.metric[0].delta  # the change is shown
    import json

    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert "Where the score forms" in json.dumps(spec)
    assert first > second  # an answering passage scores above an off-topic one
    # token saliency of the edited pair: shaded tokens, complete up to a small gap
    shaded = next(m.value for m in at.main.markdown if "lowers it" in m.value)
    assert "kyoto" in shaded.lower() and 'title="document: ' in shaded
    caption = next(c.value for c in at.caption if "Completeness gap" in c.value)
    gap = float(caption.split("Completeness gap ")[1].split("%")[0])
    top = at.dataframe[0].value
    assert set(top.group) <= {"query", "document"} and len(top) == 12
    totals = at.dataframe[1].value.set_index("group").total
    change = second - float(caption.split(" → ")[0].split()[-1])
    # (the caption rounds scores to 3 decimals and the gap to 0.01 %)
    assert abs(totals.sum() - change) == pytest.approx(gap / 100 * abs(change), rel=2e-3, abs=0.01)
    if ranker.startswith("minilm"):  # the encoder's path is smooth: IG is complete
        assert gap < 2.0 and not at.warning
    else:  # a decoder's bends: the page says so
        assert gap < 10.0 or "miss" in at.warning[0].value


def test_trec_dl_is_offered_and_the_workspace_says_what_it_re_ranks():
    from core.data import NAMED_FOLDERS

    if not NAMED_FOLDERS["trec-dl-2019"][0].is_dir():
        pytest.skip("../shared/data/trec-dl-2019 is absent")
    at = page("pages/1_Workspace.py")
    at.session_state["collection"] = "trec-dl-2019"
    at.run()
    assert not at.exception and not at.error
    assert "trec-dl-2019" in at.sidebar.selectbox[1].options
    stats = at.table[1].value
    assert stats.value["queries"] == "43" and stats.value["relevant from grade"] == "2"
    assert any("run file run.txt (a BM25 run)" in c.value and "grade ≥ 2" in c.value
               for c in at.caption)
    assert at.number_input[1].label == "run.txt candidates per query"


def test_playground_refuses_empty_text_and_keeps_the_last_good_result():
    at = page("pages/2_Playground.py").run()
    good = float(at.metric[0].value)
    at.text_input[0].set_value("   ").run()
    assert at.error and "need some text" in at.error[0].value
    assert not at.exception
    assert float(at.metric[0].value) == good  # the last usable pair's result stays on screen
    assert any("last usable query and document" in c.value for c in at.caption)
    at.text_input[0].set_value("what are the symptoms of influenza")
    at.text_area[0].set_value("\x00\x01\x02 binary \x03").run()
    assert at.error and "document is unusable" in at.error[0].value


def test_workspace_card_stats_and_extraction_with_progress(app_store):
    at = page("pages/1_Workspace.py").run()
    assert not at.exception and not at.error
    card = at.table[0].value  # every row shown, the adapter path relative to the project
    assert card.value["layers"] == "6"
    assert card.value["adapter"] == "adapters/minilm-cross-encoder"
    stats = at.table[1].value
    assert stats.value["queries"] == "360"
    at.number_input[0].set_value(2)
    at.button[0].click().run()  # the form's submit button
    assert not at.exception and not at.error
    assert at.get("progress") and at.success
    assert "40 pairs in 2 batches: 2 computed now" in at.success[0].value
    runs = at.dataframe[-1].value
    assert runs.batches_done.tolist() == [2] and runs["this config"].tolist() == [True]
    # asking again is served from the store
    at.button[0].click().run()
    assert "0 computed now, 2 served from the store" in at.success[0].value


def test_workspace_shows_what_each_precision_costs(app_store):
    at = page("pages/1_Workspace.py").run()
    queries = next(n for n in at.number_input if n.label == "Queries" and n.value == 5)
    queries.set_value(1)
    next(b for b in at.button if b.label == "Compare precisions").click().run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "spearman" in d.value.columns)
    assert table.precision.tolist() == ["fp32", "bf16", "4bit-nf4"]  # no 8-bit without CUDA
    assert table.spearman.iloc[0] == 1.0 and table.flipped.iloc[0] == 0.0
    assert table.memory_mb.iloc[2] < table.memory_mb.iloc[0]
    caption = next(c.value for c in at.caption if "swap order" in c.value)
    assert "20 pairs." in caption and "nDCG@10 goes" in caption
    # a rerun keeps the figures without scoring again
    at.run()
    assert any("spearman" in d.value.columns for d in at.dataframe)


def test_workspace_reports_a_bad_collection_folder(tmp_path):
    at = page("app.py").run()
    at.text_input(key="folder_input").set_value(str(tmp_path / "missing"))
    at.button(key="add_folder").click().run()
    assert at.sidebar.error and "not a folder" in at.sidebar.error[0].value
    assert not at.exception


def _stop_pressed_at(poll: int, monkeypatch) -> list:
    """Simulate a press of Stop: Streamlit delivers it by raising StopException in the next
    call that touches the page, which RunStatus.should_stop makes between units."""
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    import ui

    polls, original = [], ui.RunStatus.should_stop

    def should_stop(self):
        if "released" not in polls:
            polls.append(1)
            if len(polls) == poll:
                raise StopException()
        return original(self)

    monkeypatch.setattr(ui.RunStatus, "should_stop", should_stop)
    return polls


def test_workspace_stop_keeps_finished_batches(app_store, monkeypatch):
    from core.store import Store

    polls = _stop_pressed_at(2, monkeypatch)  # after the first window of 8 batches
    at = page("pages/1_Workspace.py").run()
    at.number_input[0].set_value(1)  # one query: 20 candidates
    next(n for n in at.number_input if n.label == "Batch size").set_value(2)  # 10 batches
    at.button[0].click().run()
    assert not at.exception and len(polls) == 2
    at.run()  # the rerun that follows a Stop
    assert at.warning and "Stopped. Finished batches are saved" in at.warning[0].value
    assert not at.get("progress") and not any(b.label == "Stop" for b in at.button)
    assert len(polls) == 2  # the rerun did not extract
    polls.append("released")  # Stop is not pressed again
    at.button[0].click().run()  # resume
    assert not at.exception and not at.error
    assert any("10 batches: 2 computed now, 8 served from the store" in s.value
               for s in at.success), [s.value for s in at.success]
    __import__("ui").get_store(str(app_store))[0].close()
    __import__("ui").get_store.clear()
    store = Store(app_store)
    assert store.runs().status.tolist() == ["done"]
    store.close()


def test_workspace_imports_results_of_a_cli_job(app_store, embedded_rankers, demo):
    from core.extract import ExtractionConfig, extract
    from core.store import Store

    side_path = app_store.with_name(f"{app_store.stem}.cli-4242.duckdb")
    side = Store(side_path)
    result = extract(embedded_rankers("minilm-cross-encoder"), demo,
                     ExtractionConfig(limit_queries=1), side)
    side.close()
    at = page("pages/1_Workspace.py").run()
    assert any("waiting to be imported" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Import CLI results").click().run()
    assert any("— runs: 1" in s.value for s in at.success)
    assert at.dataframe[-1].value.run_key.tolist() == [result.run_key]
    assert not side_path.exists()


def test_probing_page_runs_probes_and_draws_r2_curves(app_store):
    import json

    at = page("pages/3_Probing.py").run()
    assert not at.exception and not at.error
    from core.features import FEATURE_GROUPS

    queries = next(n for n in at.number_input if n.label == "Queries (0 = all)")
    queries.set_value(8)
    next(m for m in at.multiselect if m.label == "Features").set_value(
        [*FEATURE_GROUPS["coverage"], *FEATURE_GROUPS["TF·IDF"]])
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.get("progress")
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("probe R² per layer" in s for s in specs)
    assert any("feature groups vs BM25" in s for s in specs)
    assert "Encoded" in " ".join(m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert set(table.layer) == set(range(1, 7)) and "bm25" in set(table.feature)
    assert any(c.value.startswith("python -m core probe --ranker minilm-cross-encoder "
                                  "--collection demo") and "--limit 8 " in c.value
               for c in at.code)
    assert any(b.label == "Download this run (zip)" for b in at.get("download_button"))


def test_a_probe_run_from_the_cli_is_drawn_after_a_restart(app_store, monkeypatch, capsys):
    import json
    import shlex

    from core.cli import main

    monkeypatch.chdir(app_store.parent)
    assert main(["probe", "--ranker", "minilm-cross-encoder", "--limit", "8", "--features",
                 "bm25", "stream_length", "--store", str(app_store), "--out", "probe.csv"]) == 0
    at = page("pages/3_Probing.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("probe R² per layer" in s for s in specs)
    assert set(at.dataframe[0].value.feature) == {"bm25", "stream_length"}
    made = capsys.readouterr().out.split("key ")[1].split(";")[0]
    line = next(c.value for c in at.code if c.value.startswith("python -m core probe"))
    assert main(shlex.split(line)[3:]) == 0  # the page's line: everything from the store
    assert f"key {made};" in capsys.readouterr().out


def test_probing_page_refuses_a_bad_feature_group(app_store):
    at = page("pages/3_Probing.py").run()
    at.text_area[0].set_value("bm25 ^ 0.5")
    at.button[0].click().run()
    assert at.error and "powers must be whole numbers" in at.error[0].value
    assert not at.exception


def test_probing_page_stop_keeps_finished_work(app_store, monkeypatch):
    """Stop in the middle of the layer sweep: the layers probed before it are kept, and the
    next run probes only the rest."""
    import core.probing as probing

    probe_layer, calls = probing.probe_layer, []
    monkeypatch.setattr(probing, "probe_layer",
                        lambda *a, **k: calls.append(1) or probe_layer(*a, **k))
    polls = _stop_pressed_at(2 + 2, monkeypatch)  # the extraction's 2 windows, then 2 layers
    at = page("pages/3_Probing.py").run()
    from core.features import FEATURE_GROUPS

    next(n for n in at.number_input if n.label == "Queries (0 = all)").set_value(8)
    next(m for m in at.multiselect if m.label == "Features").set_value(
        list(FEATURE_GROUPS["coverage"]))
    at.button[0].click().run()
    assert not at.exception and len(calls) == 2, (len(polls), len(calls))
    at.run()  # the rerun after a stop says how to resume
    assert at.warning and "Run probes" in at.warning[0].value
    calls.clear()
    polls.append("released")  # Stop is not pressed again
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert len(calls) == 6 - 2  # MiniLM's 6 layers, 2 kept from the stopped run
    table = at.dataframe[0].value
    assert set(table.layer) == set(range(1, 7))
    assert not any(b.label == "Stop" for b in at.button)  # gone once the sweep has finished


def test_patching_page_heatmaps_heads_knockout_and_token_view(app_store, monkeypatch):
    import json

    at = page("pages/4_Patching.py").run()
    assert not at.exception and not at.error
    next(n for n in at.number_input if n.label == "Pairs").set_value(2)
    next(n for n in at.number_input if n.label == "Pairs per query").set_value(2)
    at.button[0].click().run()  # minilm-cross-encoder, pointwise
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.get("progress")
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("Attention output · pointwise" in s for s in specs)
    assert any("MLP output · pointwise" in s for s in specs)
    assert any("Head outputs patched at last positions" in s for s in specs)
    assert any("attention-score IE" in s for s in specs)
    # the run's own command line, which reruns it on the same store keys
    line = next(c.value for c in at.code if c.value.startswith(
        "python -m core patch --ranker minilm-cross-encoder --collection demo"))
    assert "--prompt pointwise --pairs 2" in line and "--pairs-per-query 2" in line
    assert any(b.label == "Download this run (zip)" for b in at.get("download_button"))
    tokens = [m.value for m in at.markdown if "<span" in m.value]
    assert tokens and 'title="query"' in tokens[0] and 'title="document"' in tokens[0]
    assert 'title="[CLS]"' in tokens[0] and 'title="last"' not in tokens[0]  # a cross-encoder
    # the Pairs tab opens on the first pair used, numbered from 1 like its table
    pairs = next(d.value for d in at.dataframe if "ld_clean" in d.value.columns)
    first_used = pairs[pairs.status == "used"].iloc[0]
    assert pairs.pair.min() == 1
    header = next(m.value for m in at.markdown if m.value.startswith("**Pair "))
    assert header.startswith(f"**Pair {int(first_used.pair)}** (query {first_used.qid};")
    assert "status: used" in header
    # the knock-out tab: a registered analysis on the newest sweep (the one above)
    at.number_input(key="knockout-field-repeats").set_value(1)
    at.number_input(key="knockout-field-queries").set_value(2)
    next(b for b in at.button if b.label == "Run head knock-out").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("Knock-out: nDCG@10" in s for s in specs)
    knockout = next(d.value for d in at.dataframe if "nDCG@10" in d.value.columns)
    assert knockout.selection.iloc[0] == "full model" and len(knockout) == 7
    assert any(c.value.startswith("python -m core knockout --ranker minilm-cross-encoder "
                                  "--collection demo") and "--patch patch-" in c.value
               for c in at.code)
    # asking again is served from the store: no pair is patched again
    import core.knockout as ablation
    import core.sweep as sweep

    def recomputed(*_, **__):
        raise AssertionError("stored work was computed again")

    monkeypatch.setattr(sweep, "sweep_pair", recomputed)  # one patched pair
    monkeypatch.setattr(ablation, "head_means", recomputed)  # the knock-out's first step
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label == "Run head knock-out").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.dataframe and any("nDCG@10" in d.value.columns for d in at.dataframe)


def test_a_patching_run_from_the_cli_is_drawn_after_a_restart(app_store, monkeypatch, capsys):
    """The issue's "done means": a sweep made with `python -m core patch` is on the Patching
    page of a new session — heatmaps and its command line — without pressing Run."""
    import json

    from core.cli import main

    assert main(["patch", "--ranker", "minilm-cross-encoder", "--pairs", "2", "--head-groups",
                 "--no-attention-scores", "--store", str(app_store),
                 "--out", str(app_store.parent / "patch.csv")]) == 0
    made = capsys.readouterr().out.split("key ")[1].split(";")[0]
    assert made.startswith("patch-")
    at = page("pages/4_Patching.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("Attention output · pointwise" in s for s in specs)
    line = next(c.value for c in at.code if c.value.startswith("python -m core patch"))
    assert "--pairs 2" in line and "--head-groups" in line and "--no-attention-scores" in line
    monkeypatch.chdir(app_store.parent)  # the line writes its CSV where it is run
    import core.sweep as sweep

    def recomputed(*_, **__):
        raise AssertionError("stored work was computed again")

    monkeypatch.setattr(sweep, "sweep_pair", recomputed)
    assert main(__import__("shlex").split(line)[3:]) == 0
    assert f"key {made};" in capsys.readouterr().out  # the same key, read back


def test_patching_page_refuses_pairwise_for_a_cross_encoder(app_store):
    at = page("pages/4_Patching.py").run()
    next(m for m in at.selectbox if m.label == "Prompt").set_value("pairwise")
    at.button[0].click().run()
    assert at.error and "pairwise prompts need" in at.error[0].value
    assert not at.exception


def _specs(at):
    import json

    return [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
            for c in at.get("vega_lite_chart")]


def test_attribution_and_ablation_pages_from_a_run_to_a_knockout_table(app_store):
    import shlex

    from core.cli import main

    at = page("pages/5_Attribution.py").run()
    assert not at.exception and not at.error
    next(n for n in at.number_input if n.label == "Pairs per label").set_value(1)
    next(n for n in at.number_input if n.label == "Riemann steps N").set_value(10)
    at.button[0].click().run()  # minilm-cross-encoder on demo
    assert not at.exception and not at.error, [e.value for e in at.error]
    specs = _specs(at)
    assert any("How much two schemes' top-X% neurons share" in s for s in specs)
    assert any("Top 1.0% of demo · relevant" in s for s in specs)
    assert [c.value for c in at.code] == [  # the run's command line, on the page's own store
        "python -m core attribute --ranker minilm-cross-encoder --collection demo --pairs 1 "
        f"--steps 10 --baseline pad --rule left --split test --store {app_store} "
        "--out nig-minilm-cross-encoder-demo.csv"]
    algebra = next(m for m in at.metric if m.label == "Neurons in the set")
    assert 0 < int(algebra.value.replace(",", "")) <= 207  # ∩ of two top-1 % sets
    next(b for b in at.button if b.label == "Use this set on the Ablation page").click().run()
    preset = at.session_state["ablate-preset"]
    key = at.session_state["attribution_keys"][0]
    assert preset == {"attribution": key, "scheme": "relevant", "percents": (1.0,),
                      "other": key, "other_scheme": "non_relevant", "operation": "intersection"}
    next(b for b in at.button if b.label == "Run baseline comparison").click().run()
    assert not at.exception and not at.error
    table = next(d.value for d in at.dataframe if "baseline" in d.value.columns)
    assert table.baseline.tolist() == ["pad", "pad-query", "zero"]

    ablation = page("pages/6_Ablation.py")
    ablation.session_state["ablate-preset"] = preset
    ablation.run()
    assert not ablation.exception and not ablation.error
    ablation.number_input(key="ablate-field-draws").set_value(2)
    ablation.number_input(key="ablate-field-queries").set_value(2)
    next(b for b in ablation.button if b.label == "Run neuron knock-out").click().run()
    assert not ablation.exception and not ablation.error, [e.value for e in ablation.error]
    table = next(d.value for d in ablation.dataframe if "knocked out" in d.value.columns)
    assert table.set.tolist() == ["top 1.0% demo · relevant ∩ demo · non_relevant"]
    assert table["queries"].iloc[0] == 2 and int(table.neurons.iloc[0]) == int(
        algebra.value.replace(",", ""))  # the set the algebra showed
    specs = _specs(ablation)
    assert any("Knock-out of neuron sets vs random sets" in s for s in specs)
    assert any("Random sets of the same size" in s for s in specs)
    # the set-algebra set has a command line now, and it lands on the same store key
    command = next(c.value for c in ablation.code if c.value.startswith("python -m core ablate"))
    assert f"--other {key}" in command and "--operation intersection" in command
    shown = next(s for s in ablation.selectbox if s.label == "Run shown").value
    ui_store = __import__("ui").get_store(str(app_store))[0]
    ui_store.close()  # the CLI opens the file itself, as a user's terminal would
    __import__("ui").get_store.clear()
    assert main(shlex.split(command)[3:]) == 0  # read back: the run is finished
    from core.store import Store

    store = Store(app_store)
    assert len(store.analysis_runs("ablate")) == 1 and store.analysis_runs("ablate").key[0] == shown
    store.close()


def test_a_cli_run_is_drawn_by_its_page_after_a_restart(app_store, capsys):
    """Results live in the store: a knock-out made from the command line is on the Ablation
    page's first visit, chart and table, without pressing Run."""
    from core.cli import main

    store = ["--store", str(app_store)]
    assert main(["attribute", "--ranker", "minilm-cross-encoder", "--pairs", "1", "--steps",
                 "6", "--out", str(app_store.parent / "nig.csv"), *store]) == 0
    assert main(["ablate", "--ranker", "minilm-cross-encoder", "--percents", "1", "--draws",
                 "2", "--queries", "2", *store]) == 0
    assert main(["agreement", "--ranker", "minilm-cross-encoder", *store]) == 0
    at = page("pages/6_Ablation.py").run()  # a fresh session: nothing in session_state
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = next(d.value for d in at.dataframe if "knocked out" in d.value.columns)
    assert table.set.tolist() == ["top 1.0% fused"]
    specs = _specs(at)
    assert any("Knock-out of neuron sets vs random sets" in s for s in specs)
    assert any("probe vs NIG" in s for s in specs)  # the agreement tab, from the CLI's run


def test_ablation_page_without_results_says_what_to_run_first(app_store):
    at = page("pages/6_Ablation.py").run()
    assert not at.exception and not at.error
    next(b for b in at.button if b.label == "Run neuron knock-out").click().run()
    assert not at.exception
    assert "holds none: run `python -m core attribute --ranker minilm-cross-encoder " \
           "--collection demo`" in at.error[0].value
    assert not any(b.label == "Stop" for b in at.button)  # the failed run shows no live Stop


def test_playground_rank_view_load_edit_and_axiom_edits(demo):
    at = page("pages/2_Playground.py").run()
    qid = demo.qids("test")[0]
    at.selectbox(key="pg_qid").set_value(qid).run()
    assert not at.exception and not at.error
    ranked = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert len(ranked) == 20 and ranked["rank"].tolist() == list(range(1, 21))
    assert sorted(ranked["BM25 rank"]) == list(range(1, 21))
    # load the ranker's top document into the editor: it keeps rank 1
    at.selectbox(key="pg_pick").set_value(0).run()
    next(b for b in at.button if b.label == "Load into the editor").click().run()
    assert at.text_input(key="pg_query").value == demo.queries.set_index("qid").text[qid]
    rank = next(m for m in at.metric if m.label.startswith("Rank among the 20"))
    assert rank.value == "1"
    # an off-topic rewrite falls down the list, and the metric says by how much
    at.text_area(key="pg_document").set_value(
        "The committee meets on the second Tuesday of every month in the town hall.").run()
    rank = next(m for m in at.metric if m.label.startswith("Rank among the 20"))
    assert int(rank.value) > 1 and rank.delta.startswith("-")
    # the axiom edits: one row per axiom, Δscore and the new rank among the same candidates
    at.text_area(key="pg_document").set_value(ranked.document.iloc[0]).run()
    next(b for b in at.button if b.label == "Try the axiom edits").click().run()
    assert not at.exception
    table = next(t.value for t in at.table if "as expected" in t.value.columns).reset_index()
    assert table.axiom.tolist() == ["TFC1", "TFC1−", "LNC1", "LNC2", "STMC1", "PROX"]
    stmc1 = table.set_index("axiom").loc["STMC1"]
    assert stmc1["as expected"].startswith("n/a: type a synonym")
    scored = table.dropna(subset=["Δscore"])
    assert len(scored) >= 3 and scored["rank"].between(1, 20).all()


def test_playground_locates_an_edit_and_refuses_one_that_shifts_positions():
    at = page("pages/2_Playground.py").run()
    original = at.text_area(key="pg_document").value
    at.text_area(key="pg_document").set_value(original.replace("influenza", "measles")).run()
    next(b for b in at.button if b.label == "Locate the edit").click().run()
    assert not at.exception
    if at.error:  # the tokenizer split the new word differently: the page says why
        assert "changes the document's length" in at.error[0].value
        at.text_area(key="pg_document").set_value(original.replace("fever", "cough")).run()
        next(b for b in at.button if b.label == "Locate the edit").click().run()
    assert not at.error, [e.value for e in at.error]
    import json

    specs = [json.dumps(json.loads(c.proto.spec), ensure_ascii=False)
             for c in at.get("vega_lite_chart")]
    assert any("Residual stream · edited→original" in s for s in specs)
    assert any("MLP output · original→edited" in s for s in specs)
    at.text_area(key="pg_document").set_value(original + " It lasts a week.").run()
    next(b for b in at.button if b.label == "Locate the edit").click().run()
    assert at.error and "changes the document's length from" in at.error[0].value


def test_playground_side_by_side_rankers_on_a_pair_and_on_the_candidates(demo):
    at = page("pages/2_Playground.py").run()
    at.selectbox(key="pg_compare").set_value("minilm-cross-encoder-demo").run()
    assert not at.exception and not at.error
    assert any(m.label == "minilm-cross-encoder-demo score" for m in at.metric)
    shaded = [m.value for m in at.main.markdown if "lowers it" in m.value]
    assert len(shaded) == 2  # both rankers' saliency
    at.selectbox(key="pg_qid").set_value(demo.qids("test")[0]).run()
    ranked = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert sorted(ranked["minilm-cross-encoder-demo rank"]) == list(range(1, 21))
    agreement = next(c.value for c in at.caption if "Kendall τ" in c.value)
    tau = float(agreement.split("Kendall τ ")[1].split(",")[0])
    from scipy.stats import kendalltau  # the two rankers' orders, as the table shows them

    expected = kendalltau(ranked["rank"], ranked["minilm-cross-encoder-demo rank"]).statistic
    assert tau == pytest.approx(expected, abs=5e-4)  # shown with 3 decimals


def test_an_analysis_page_is_generated_from_its_config_and_reads_back_its_run(app_store):
    """The Score lens page is ``ui.analysis_page("lens")``: its form has one widget per config
    field; a run draws the chart and table, says the command line, and the stored run is
    shown again (from the store, not recomputed) on the next visit."""
    from core import lens

    at = page("pages/7_Lens.py").run()
    assert not at.exception and not at.error
    labels = [w.label for w in at.number_input] + [w.label for w in at.text_input]
    assert {"Candidates per query", "Queries", "Batch size", "Query split"} <= set(labels)
    at.number_input(key="lens-field-queries").set_value(2)
    at.button[0].click().run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table.layer) == list(range(1, 7))  # MiniLM: six blocks
    assert table["nDCG@10"].between(0, 1).all()
    assert table.spearman_with_final.iloc[-1] == pytest.approx(1.0)  # the last layer is the score
    assert "python -m core lens --ranker minilm-cross-encoder" in at.code[0].value

    calls = []
    original = lens.ScoreLens.compute
    lens.ScoreLens.compute = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = page("pages/7_Lens.py").run()
    finally:
        lens.ScoreLens.compute = original
    assert calls == [] and not again.exception
    pd.testing.assert_frame_equal(again.dataframe[0].value, table)


def test_a_lesson_keeps_each_prediction_and_compares_it_with_the_data(app_store):
    """Lesson 2 (attribution): no reveal before a prediction; the reveal runs the study and
    compares; the summary lists every prediction beside the data's answer."""
    at = page("pages/8_Lessons.py").run()
    at.radio[0].set_value("attribution").run()
    reveal = next(b for b in at.button if b.label == "Reveal")
    assert reveal.disabled  # predict first
    at.radio[1].set_value("feed-forward (intermediate, output)").run()
    next(b for b in at.button if b.label == "Reveal").click().run()
    assert not at.exception and not at.error
    first = at.info[0].value
    assert first.startswith("You predicted **feed-forward (intermediate, output)**")
    assert "sit in attention layers" in first
    next(b for b in at.button if b.label == "Next step").click().run()
    at.radio[2].set_value("random neurons").run()
    next(b for b in at.button if b.label == "Reveal").click().run()
    assert "nDCG@10" in at.info[1].value and "random sets" in at.info[1].value
    next(b for b in at.button if b.label == "Next step").click().run()
    next(b for b in at.button if b.label == "Reveal").click().run()
    summary = at.dataframe[-1].value
    assert list(summary["your prediction"]) == ["feed-forward (intermediate, output)",
                                                "random neurons"]
    assert not at.exception


def test_a_lesson_says_which_ranker_and_data_it_uses_and_offers_the_sidebars(app_store):
    """The lesson names its ranker and data; the sidebar's ranker is offered when it is the
    same model with another adapter, never when the steps would describe another model."""
    at = page("pages/8_Lessons.py")
    at.session_state["ranker"] = "smollm2-judge"
    at.run()
    assert not at.exception
    said = next(m.value for m in at.markdown if m.value.startswith("**This lesson uses**"))
    assert "`minilm-cross-encoder`" in said and "not the sidebar's choice (`smollm2-judge`" in said
    assert not any(t.label.startswith("Use the sidebar's ranker") for t in at.toggle)
    at = page("pages/8_Lessons.py")
    at.session_state["ranker"] = "minilm-cross-encoder-dl20"
    at.run()
    toggle = next(t for t in at.toggle if t.label.startswith("Use the sidebar's ranker"))
    toggle.set_value(True).run()
    said = next(m.value for m in at.markdown if m.value.startswith("**This lesson uses**"))
    assert "the ranker `minilm-cross-encoder-dl20`" in said
    if "TREC DL 2019" in said:  # the lessons' own data is there: the demo is offered too
        assert "not the sidebar's choice" in said
        next(t for t in at.toggle if t.label.startswith("Use the sidebar's collection")
             ).set_value(True).run()
        said = next(m.value for m in at.markdown if m.value.startswith("**This lesson uses**"))
        assert "demo (the sidebar's collection, its test queries)" in said
    assert "not the sidebar's" not in said
