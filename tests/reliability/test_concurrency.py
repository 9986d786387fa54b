"""Concurrency: the app's store serves two sessions writing at once (threads on its one
connection) while a CLI job works on the same file; no lock error reaches anyone, and after the
import every result is there exactly once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import torch

from core.models import ModelSpec, load_ranker

ROOT = Path(__file__).resolve().parents[2]


def test_two_sessions_and_a_cli_job_on_one_store_lose_and_duplicate_nothing(
        tmp_path, tiny_ce, demo):
    from core.extract import ExtractionConfig, extract
    from core.store import open_store, side_files

    path = tmp_path / "shared.duckdb"
    app, note = open_store(path, fallback=True)  # the app process owns the file
    assert note is None
    cli = subprocess.Popen(
        [sys.executable, "-m", "core", "extract", "--ranker", "minilm-cross-encoder",
         "--limit", "3", "--store", str(path)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    errors, results = [], {}

    def session(limit):
        try:
            with torch.inference_mode():
                results[limit] = extract(tiny_ce, demo, ExtractionConfig(limit_queries=limit,
                                                                         batch_size=4), app)
        except Exception as error:  # noqa: BLE001 - any failure fails the test below
            errors.append(repr(error))

    threads = [threading.Thread(target=session, args=(limit,)) for limit in (4, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    out, err = cli.communicate(timeout=600)
    assert not errors, errors
    assert cli.returncode == 0, err
    assert "lock" not in (out + err).lower().replace("is open in the ranker", "")
    assert "is open in the RankScope app" in err  # the CLI took its own file
    pending = side_files(path)
    assert len(pending) == 1
    counts = app.import_file(pending[0])
    assert counts["runs"] == 1 and app.import_file(pending[0])["runs"] == 0
    runs = app.runs()
    assert len(runs) == 3 and set(runs.status) == {"done"}
    for result in results.values():
        assert result.complete and result.computed_now == result.n_batches
        assert len(app.scores(result.run_key)) == result.n_pairs
    with app.cursor() as cur:
        duplicated = cur.execute("SELECT count(*) FROM (SELECT run_key, batch_index FROM batches "
                                 "GROUP BY 1, 2 HAVING count(*) > 1)").fetchall()[0][0]
    assert duplicated == 0
    app.close()


def test_two_app_sessions_and_a_cli_job_through_the_real_pages(tmp_path, monkeypatch):
    """Two AppTest sessions of the Workspace page extract at the same moment in one process
    (sharing its cached store connection and ranker, as two browser tabs do) while a CLI job
    extracts into the same file; the first session then imports the CLI's results."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import ui

    path = tmp_path / "app.duckdb"
    monkeypatch.setenv("RANKSCOPE_STORE", str(path))
    st.cache_data.clear()
    ui.get_store.clear()
    sessions = [AppTest.from_file(str(ROOT / "pages/1_Workspace.py"), default_timeout=600)
                for _ in range(2)]
    for at, limit in zip(sessions, (2, 3)):
        at.run()  # the app opens the store first (the CLI then finds it open)
        assert not at.exception and not at.error
        at.number_input[0].set_value(limit)
    cli = subprocess.Popen(
        [sys.executable, "-m", "core", "extract", "--ranker", "minilm-cross-encoder",
         "--limit", "1", "--store", str(path)], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures = []

    def press(at):
        try:
            at.button[0].click().run()  # the form's submit button
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(repr(error))

    threads = [threading.Thread(target=press, args=(at,)) for at in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=900)
    out, err = cli.communicate(timeout=600)
    try:
        assert not failures, failures
        for at, pairs in zip(sessions, (40, 60)):
            assert not at.exception and not at.error, (at.exception, at.error)
            assert f"{pairs} pairs in" in at.success[0].value
        assert cli.returncode == 0 and "is open in the RankScope app" in err, err
        assert "lock" not in (out + err).lower().replace("is open in the ranker", "")
        first = sessions[0]
        first.run()
        importer = next(b for b in first.button if b.label == "Import CLI results")
        importer.click().run()
        assert not first.exception and not first.error
        assert "runs: 1" in first.success[0].value
        store, _ = ui.get_store(str(path))
        runs = store.runs()
        assert len(runs) == 3 and set(runs.status) == {"done"}
        assert sorted(runs.n_pairs) == [20, 40, 60]
        with store.cursor() as cur:
            duplicated = cur.execute(
                "SELECT count(*) FROM (SELECT run_key, batch_index FROM batches "
                "GROUP BY 1, 2 HAVING count(*) > 1)").fetchall()[0][0]
        assert duplicated == 0
    finally:
        ui.get_store.clear()


def test_two_models_patched_at_once_each_see_only_their_own_attention_state(tiny_llama_dir):
    """The suspected race (issue 21), proved then fixed: RankScope's attention function read a
    process-wide stack of states while the lock is per model, so when another session entered
    model B's attention block after this one entered model A's, A's forward passes read B's
    state (A's weights were recorded into B's, A's edits and key prefixes were ignored)."""
    from core.models import AttentionState

    a = load_ranker(ModelSpec("tiny-a", "llm-ranker", str(tiny_llama_dir), device="cpu"))
    b = load_ranker(ModelSpec("tiny-b", "llm-ranker", str(tiny_llama_dir), device="cpu"))
    enc_a = a.encode(["honey"], ["honey keeps for years"])
    enc_b = b.encode(["trams"], ["trams run along the harbour"])
    with torch.inference_mode():
        plain = a.forward(enc_a)
    state_a = AttentionState(record_weights=True, edit={0: torch.zeros_like})
    state_b = AttentionState(record_weights=True)
    b_inside, a_done, errors = threading.Event(), threading.Event(), []

    def other_session():  # enters B's block while A's is open (B's lock, not A's)
        try:
            with b.attention_access(state_b):
                b_inside.set()
                a_done.wait(timeout=60)
                with torch.inference_mode():
                    b.forward(enc_b)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
            b_inside.set()

    thread = threading.Thread(target=other_session)
    try:
        with torch.inference_mode(), a.attention_access(state_a):
            thread.start()
            assert b_inside.wait(timeout=60)
            edited = a.forward(enc_a)
    finally:
        a_done.set()
        thread.join(timeout=60)
    assert not errors
    assert sorted(state_a.weights) == list(range(a.n_layers))  # A's weights in A's state
    assert not torch.allclose(plain, edited)  # A's edit (layer 0 attention zeroed) applied
    assert sorted(state_b.weights) == list(range(b.n_layers))  # B's only B's
