"""Store transactions, keys and versions; extraction into it, interruption and resume."""

import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pytest
import torch

from core.errors import InputError, StoreError
from core.extract import WINDOW, ExtractionConfig, extract, pool
from core.hooks import count_hooks
from core.models import ModelSpec, load_ranker
from core.store import Store


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return load_ranker(ModelSpec("tiny", "llm-ranker", str(tiny_llama_dir), device="cpu"))


CONFIG = ExtractionConfig(limit_queries=3, batch_size=8, depth=5)


def test_pooling_by_hand():
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    pooled = pool(hidden, mask, torch.tensor([1]), ("mean", "max", "last"))
    assert pooled["mean"].tolist() == [[2.0, 2.0]]
    assert pooled["max"].tolist() == [[3.0, 4.0]]
    assert pooled["last"].tolist() == [[3.0, 4.0]]


def test_extraction_stores_every_layer_and_serves_repeats(tiny, demo, store_path):
    store = Store(store_path)
    seen = []
    result = extract(tiny, demo, CONFIG, store, progress=lambda d, t, _: seen.append((d, t)))
    assert result.complete and result.n_pairs == 15 and result.computed_now == 2
    assert seen[-1] == (2, 2)
    layers = store.layers(result.run_key)
    assert set(layers.layer) == {0, 1} and set(layers.pooling) == {"mean", "max", "last"}
    assert (layers.rows == 15).all()
    last_layer = store.activations(result.run_key, "resid", 1, "last")
    assert last_layer.shape == (15, 64) and last_layer.flags["C_CONTIGUOUS"]
    # the stored scores equal a direct scoring of the same pairs
    pairs = store.pairs(result.run_key)
    assert len(pairs) == 15
    again = extract(tiny, demo, CONFIG, store)
    assert again.computed_now == 0 and again.run_key == result.run_key
    assert count_hooks(tiny.model) == 0


def test_stored_activation_equals_a_hooked_forward(tiny, demo, store_path):
    store = Store(store_path)
    result = extract(tiny, demo, CONFIG, store)
    pairs = store.pairs(result.run_key)
    from core.retrieval import candidate_pairs

    frame = candidate_pairs(demo, CONFIG.depth, limit_queries=3)
    enc = tiny.encode(frame["query"].tolist()[:8], frame["document"].tolist()[:8])
    with torch.no_grad():
        hidden = tiny.model(**enc.model_inputs(), output_hidden_states=True).hidden_states[1]
    expected = pool(hidden, enc.groups != 0, enc.last, ("mean",))["mean"]
    np.testing.assert_allclose(store.activations(result.run_key, "resid", 0, "mean")[:8],
                               expected, atol=1e-5)
    assert pairs.docno.tolist() == frame.docno.tolist()


def test_stop_and_resume_is_identical_to_one_run(tiny, demo, tmp_path):
    config = ExtractionConfig(limit_queries=3, batch_size=1, depth=5)  # 15 batches: 2 windows
    full = Store(tmp_path / "full.duckdb")
    reference = extract(tiny, demo, config, full)
    resumed = Store(tmp_path / "resumed.duckdb")
    calls = iter([False, True])
    first = extract(tiny, demo, config, resumed, should_stop=lambda: next(calls, True))
    # stopped before the second window: the first window's batches are all kept
    assert first.stopped and first.batches_done == WINDOW and not first.complete
    assert resumed.run_info(first.run_key)["status"] == "running"
    second = extract(tiny, demo, config, resumed)
    assert second.complete and second.computed_now == 15 - WINDOW
    for layer in (0, 1):
        a = full.activations(reference.run_key, "resid", layer, "max")
        b = resumed.activations(second.run_key, "resid", layer, "max")
        assert np.array_equal(a, b)
    assert np.array_equal(full.scores(reference.run_key), resumed.scores(second.run_key))


def test_a_window_is_forwarded_by_length_and_returns_in_pair_order(tiny, demo, store_path):
    """Re-batching a window by length changes no pair's score or activation (beyond float
    rounding) and keeps them at their own pair index."""
    from core.retrieval import candidate_pairs

    store = Store(store_path)
    config = ExtractionConfig(limit_queries=3, batch_size=4, depth=5, poolings=("mean",))
    result = extract(tiny, demo, config, store)
    frame = candidate_pairs(demo, config.depth, limit_queries=3)
    alone = [tiny.score([q], [d])[0] for q, d in zip(frame["query"], frame["document"])]
    np.testing.assert_allclose(store.scores(result.run_key), alone, atol=1e-4)
    enc = tiny.encode(frame["query"].tolist()[5:6], frame["document"].tolist()[5:6])
    with torch.no_grad():
        hidden = tiny.model(**enc.model_inputs(), output_hidden_states=True).hidden_states[1]
    expected = pool(hidden, enc.groups != 0, enc.last, ("mean",))["mean"]
    np.testing.assert_allclose(store.activations(result.run_key, "resid", 0, "mean")[5:6],
                               expected, atol=1e-4)


def test_a_failing_batch_leaves_nothing_partial(tiny, demo, store_path, monkeypatch):
    store = Store(store_path)
    original = store.write_batch
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            with store.transaction() as cur:  # simulate dying half-way through a batch
                cur.execute("INSERT INTO activations VALUES ('x', 'resid', 0, 'mean', 1, 0, 'h', 1, '')")
                raise RuntimeError("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "write_batch", flaky)
    with pytest.raises(RuntimeError):
        extract(tiny, demo, CONFIG, store)
    with store.cursor() as cur:
        assert cur.execute("SELECT count(*) FROM activations WHERE run_key = 'x'").fetchone()[0] == 0
    monkeypatch.setattr(store, "write_batch", original)
    result = extract(tiny, demo, CONFIG, store)
    assert result.complete and result.computed_now == 1


def test_keys_change_with_config_and_model(tiny, demo, store_path):
    from core.extract import extraction_key

    base = extraction_key(tiny, demo, CONFIG)
    assert extraction_key(tiny, demo, ExtractionConfig(limit_queries=4)) != base
    other = ModelSpec("tiny", "llm-ranker", tiny.spec.source, quantization="bf16")
    assert other.key() != tiny.spec.key()


def test_bad_configs_are_refused(tiny, demo, store_path):
    for config, message in ((ExtractionConfig(batch_size=0), "Batch size"),
                            (ExtractionConfig(limit_queries=0), r"Queries \(--limit\) must be at least 1"),
                            (ExtractionConfig(poolings=("median",)), "unknown or missing")):
        with pytest.raises(InputError, match=message):
            extract(tiny, demo, config, Store(store_path))


def test_store_refuses_foreign_and_old_files(tmp_path):
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is not a DuckDB file"):
        Store(junk)
    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute("CREATE TABLE meta (name VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '0')")
    con.close()
    with pytest.raises(StoreError, match="schema version 0"):
        Store(old)


def test_locked_store_falls_back_to_a_side_file_that_imports(tiny, demo, tmp_path):
    main_path = tmp_path / "main.duckdb"
    app_store = Store(main_path)  # this process plays the app and holds the file
    script = textwrap.dedent(f"""
        from core.store import open_store
        store, note = open_store({str(main_path)!r}, fallback=True)
        print(store.path); print(note)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=str(tmp_path), env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[2])})
    side_path, note = out.stdout.strip().splitlines()
    assert side_path != str(main_path) and "is open in the RankScope app" in note
    side = Store(side_path)
    result = extract(tiny, demo, CONFIG, side)
    side.close()
    assert app_store.import_file(side_path) == {"runs": 1, "feature sets": 0,
                                                "analyses": 0}
    assert app_store.import_file(side_path)["runs"] == 0  # nothing duplicated
    assert np.array_equal(app_store.scores(result.run_key),
                          Store(side_path, read_only=True).scores(result.run_key))


def test_sql_is_parameterised_against_hostile_names(store_path):
    store = Store(store_path)
    hostile = "x'); DROP TABLE runs; --"
    assert store.run_info(hostile) is None
    with pytest.raises(StoreError):
        store.activations(hostile, hostile, 0, hostile)
    assert "runs" in {r[0] for r in store._con.execute("SHOW TABLES").fetchall()}


def test_every_analysis_key_changes_with_the_store_schema(tiny, demo, monkeypatch):
    """One key function for every analysis, and the schema version is always in it: a result
    written under another schema is never found (so never misread) under this one."""

    import core.store as store_module
    from core.extract import ExtractionConfig, extraction_key
    from core.features import FeatureConfig, features_key
    from core.analysis import registered
    from core.probing import ProbeConfig, probe_key

    keys = {
        "activations": lambda: extraction_key(tiny, demo, ExtractionConfig()),
        **{name: (lambda a=analysis: a.key(tiny, demo, a.Config()))
           for name, analysis in registered().items()},
        "features": lambda: features_key("pairs", FeatureConfig(second_embedding_model=None)),
        "probing": lambda: probe_key("run", "features", ProbeConfig()),
    }
    before = {name: make() for name, make in keys.items()}
    assert len(set(before.values())) == len(before)  # distinct analyses, distinct keys
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", store_module.SCHEMA_VERSION + 1)
    after = {name: make() for name, make in keys.items()}
    assert [name for name in keys if before[name] == after[name]] == []


def test_a_store_with_the_old_result_frames_table_migrates_on_open(tmp_path):
    """Stores written before the knock-out moved to the contract held result_frames (keys that
    did not cover their inputs): opening one for writing drops that table and keeps the rest."""
    import duckdb

    from core.store import SCHEMA

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    con.execute("CREATE TABLE result_frames (frame_key VARCHAR PRIMARY KEY, analysis VARCHAR, "
                "ranker VARCHAR, collection VARCHAR, config VARCHAR, frame VARCHAR, "
                "created DOUBLE)")
    con.execute("INSERT INTO result_frames VALUES ('knockout-x', 'knockout', 'r', 'c', '{}', "
                "'{}', 0)")
    con.execute("INSERT INTO analysis_runs VALUES ('lens-x', 'lens', 'r', 'c', '{}', 1, 'done', "
                "0, 1)")
    con.close()
    store = Store(path)
    with store.cursor() as cur:
        tables = {r[0] for r in cur.execute("SHOW TABLES").fetchall()}
    assert "result_frames" not in tables
    assert store.analysis_run("lens-x")["status"] == "done"  # everything else is kept
    store.close()


OLD_ATTRIBUTION_TABLES = """
CREATE TABLE attribution_runs (
    attr_key VARCHAR PRIMARY KEY, ranker VARCHAR, collection VARCHAR, config VARCHAR,
    n_pairs INTEGER, n_neurons INTEGER, counts VARCHAR, status VARCHAR, created DOUBLE,
    finished DOUBLE);
CREATE TABLE attribution_pairs (
    attr_key VARCHAR, pair INTEGER, qid VARCHAR, docno VARCHAR, label VARCHAR, score DOUBLE,
    baseline_score DOUBLE, delta DOUBLE, cut_total DOUBLE, completeness_gap DOUBLE,
    seconds DOUBLE, data BLOB, PRIMARY KEY (attr_key, pair));
"""


def test_attribution_runs_of_an_older_store_migrate_under_their_keys(tiny_ce, demo, tmp_path):
    """Attribution kept tables of its own before it moved to the analysis contract: a store
    holding such a run opens with the run found under the same key, the same schemes and
    completeness rows, and served without scoring (the old tables are gone)."""
    import json
    from dataclasses import asdict

    import duckdb

    from core.attribution import (AttributionConfig, attribute_collection, linear_layout,
                                  load_attribution)
    from core.store import SCHEMA

    config = AttributionConfig(steps=6)
    fresh = attribute_collection(tiny_ce, demo, config, pairs_per_label=1)
    values = fresh.counts  # the fresh run's counts, as the old tables held them
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute(OLD_ATTRIBUTION_TABLES)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    stored = {**asdict(config), "pairs_per_label": 1, "split": "test",
              "layout": linear_layout(tiny_ce)}
    counts = {k: values[k] for k in ("candidates", "threshold", "correct", "relevant",
                                     "non_relevant")}
    con.execute("INSERT INTO attribution_runs VALUES (?, 'tiny-ce', 'demo', ?, ?, 0, ?, 'done', "
                "0, 1)", [fresh.key, json.dumps(stored), len(fresh.reports), json.dumps(counts)])
    import numpy as np
    import pandas as pd

    from core.analysis import registered, run
    from core.attribution import AttributeConfig

    raw = run(registered()["attribute"], tiny_ce, demo,
              AttributeConfig(pairs=1, steps=6)).rows  # per-pair conductances
    for row in raw.itertuples(index=False):
        con.execute("INSERT INTO attribution_pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [fresh.key, row.pair, row.qid, row.docno, row.label, row.score,
                     row.baseline_score, row.delta, row.cut_total, row.completeness_gap,
                     row.seconds, row.conductances])
    con.close()

    store = Store(path)
    with store.cursor() as cur:
        tables = {r[0] for r in cur.execute("SHOW TABLES").fetchall()}
    assert not tables & {"attribution_runs", "attribution_pairs"}
    migrated = load_attribution(store, fresh.key)
    pd.testing.assert_frame_equal(migrated.frame, fresh.frame)
    pd.testing.assert_frame_equal(migrated.reports.drop(columns="seconds"),
                                  fresh.reports.drop(columns="seconds"), check_dtype=False)
    original, tiny_ce.score = tiny_ce.score, None  # reading back must not score anything
    try:
        again = attribute_collection(tiny_ce, demo, config, 1, store=store)
    finally:
        tiny_ce.score = original
    assert again.key == fresh.key and not again.stopped
    assert np.isfinite(migrated.frame.fused).all()
    store.close()


OLD_PATCHING_TABLES = """
CREATE TABLE patch_runs (
    patch_key VARCHAR PRIMARY KEY, ranker VARCHAR, collection VARCHAR, config VARCHAR,
    n_pairs INTEGER, status VARCHAR, created DOUBLE, finished DOUBLE);
CREATE TABLE patch_pairs (
    patch_key VARCHAR, pair INTEGER, qid VARCHAR, positive_docno VARCHAR,
    negative_docno VARCHAR, doc_tokens INTEGER, n_tokens INTEGER, ld_clean DOUBLE,
    ld_corr DOUBLE, status VARCHAR, tokens VARCHAR, PRIMARY KEY (patch_key, pair));
CREATE TABLE patch_results (
    patch_key VARCHAR, pair INTEGER, target VARCHAR, layer INTEGER, "group" VARCHAR,
    head INTEGER, value DOUBLE, ie DOUBLE);
"""


def test_patching_sweeps_of_an_older_store_migrate_under_their_keys(tiny_ce, demo, tmp_path):
    """Patching kept tables of its own before it moved to the analysis contract: a store
    holding a sweep opens with it under the same key,
    the same pairs and patched runs, served without patching anything again."""
    import json

    import duckdb

    import pandas as pd

    import core.sweep as sweep
    from core.patching import PatchConfig
    from core.store import SCHEMA

    config = PatchConfig(pairs=2, min_gap=0.0, doc_tokens=10, attention_scores=False)
    fresh = sweep.run_patching(tiny_ce, demo, config)
    assert fresh.key == sweep.patch_key(tiny_ce, demo, config)
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    con.execute(OLD_PATCHING_TABLES)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    con.execute("INSERT INTO patch_runs VALUES (?, 'tiny-ce', 'demo', ?, 2, 'done', 0, 1)",
                [fresh.key, json.dumps(config.key_fields())])  # as the old tables held it
    con.register("pairs", fresh.pairs.assign(patch_key=fresh.key))
    con.execute("INSERT INTO patch_pairs SELECT patch_key, pair, qid, positive_docno, "
                "negative_docno, doc_tokens, n_tokens, ld_clean, ld_corr, status, tokens "
                "FROM pairs")
    con.register("results", fresh.results.assign(patch_key=fresh.key))
    con.execute('INSERT INTO patch_results SELECT patch_key, pair, target, layer, "group", '
                "head, value, ie FROM results")
    con.close()

    store = Store(path)
    with store.cursor() as cur:
        tables = {r[0] for r in cur.execute("SHOW TABLES").fetchall()}
    assert not tables & {"patch_runs", "patch_pairs", "patch_results"}
    migrated = sweep.load_patching(store, fresh.key)
    assert migrated.config == config and not migrated.stopped
    pd.testing.assert_frame_equal(migrated.pairs, fresh.pairs, check_dtype=False)
    pd.testing.assert_frame_equal(migrated.results, fresh.results, check_dtype=False)
    original, sweep.sweep_pair = sweep.sweep_pair, None  # reading back must not patch
    try:
        again = sweep.run_patching(tiny_ce, demo, config, store)
    finally:
        sweep.sweep_pair = original
    assert again.key == fresh.key
    pd.testing.assert_frame_equal(again.used, fresh.used, check_dtype=False)
    store.close()


OLD_PROBE_TABLES = """
CREATE TABLE probe_runs (
    probe_key VARCHAR PRIMARY KEY, ranker VARCHAR, collection VARCHAR, run_key VARCHAR,
    features_key VARCHAR, config VARCHAR, n_units INTEGER, status VARCHAR, notes VARCHAR,
    created DOUBLE, finished DOUBLE);
CREATE TABLE probe_results (
    probe_key VARCHAR, layer INTEGER, pooling VARCHAR, feature VARCHAR, estimator VARCHAR,
    r2_mean DOUBLE, r2_sd DOUBLE, r2_val DOUBLE, mse DOUBLE, n_nonzero INTEGER,
    set_size INTEGER, neurons VARCHAR,
    PRIMARY KEY (probe_key, layer, pooling, feature, estimator));
"""


def test_probe_sweeps_of_an_older_store_migrate_under_their_keys(tiny_ce, demo, tmp_path):
    """Probing kept tables of its own before it moved to the analysis contract: a store
    holding a sweep opens with it under the same key — the same rows and notes, its limit
    and depth read from the extraction — served without probing again."""
    import json

    import pandas as pd

    from dataclasses import replace

    import core.probing as probing
    from core.probing import PROBE_COLUMNS, ProbeConfig, probe_ranker, stored_settings

    config = ProbeConfig(features=("stream_length", "sum_tf"), poolings=("mean", "max"),
                         folds=3)
    path = tmp_path / "old.duckdb"
    store = Store(path)
    fresh = probe_ranker(tiny_ce, demo, store, config, limit_queries=30)
    rows = store.analysis_frame(fresh.key)
    run = store.analysis_run(fresh.key)
    store.close()
    con = duckdb.connect(str(path))  # rewrite the sweep as the old tables held it
    con.execute(OLD_PROBE_TABLES)
    run_key = con.execute("SELECT run_key FROM runs").fetchone()[0]
    con.execute("INSERT INTO probe_runs VALUES (?, 'tiny-ce', 'demo', ?, 'f', ?, ?, 'done', ?, "
                "0, 1)", [fresh.key, run_key, json.dumps(stored_settings(config)),
                          run["n_units"], json.dumps(fresh.notes)])
    con.register("old_rows", rows[PROBE_COLUMNS].assign(probe_key=fresh.key))
    con.execute("INSERT INTO probe_results SELECT probe_key, " + ", ".join(PROBE_COLUMNS)
                + " FROM old_rows")
    con.execute("DELETE FROM analysis_units")
    con.execute("DELETE FROM analysis_runs")
    con.close()

    store = Store(path)
    with store.cursor() as cur:
        tables = {r[0] for r in cur.execute("SHOW TABLES").fetchall()}
    assert not tables & {"probe_runs", "probe_results"}
    migrated = probing.load_probe(store, fresh.key)
    assert migrated["config"] == replace(config, limit=30) and migrated["notes"] == fresh.notes
    pd.testing.assert_frame_equal(migrated["frame"], fresh.frame, check_dtype=False)
    original, probing.probe_layer = probing.probe_layer, None  # reading back must not probe
    try:
        again = probe_ranker(tiny_ce, demo, store, config, limit_queries=30)
    finally:
        probing.probe_layer = original
    assert again.key == fresh.key and again.computed_now == 0
    pd.testing.assert_frame_equal(again.frame, fresh.frame, check_dtype=False)
    store.close()
