"""Interruption: SIGKILL an extraction at random batches, ten times; after each kill the store
opens, holds only whole batches, and the resumed run ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KILLS = 10
CHILD = """
from core.data import demo_collection
from core.extract import ExtractionConfig, extract
from core.models import ModelSpec, load_ranker
from core.store import Store
ranker = load_ranker(ModelSpec("tiny-ce", "cross-encoder", {model!r}, device="cpu"))
store = Store({store!r})
extract(ranker, demo_collection(), ExtractionConfig(limit_queries=40, batch_size=8), store,
        progress=lambda done, total, _: print("batch", done, total, flush=True))
store.close()
print("finished", flush=True)
"""


def _child(model: Path, store: Path) -> subprocess.Popen:
    code = CHILD.format(root=str(ROOT), model=str(model), store=str(store))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)


def _kill_after(child: subprocess.Popen, prefix: str, wanted: int) -> None:
    """SIGKILL ``child`` once it has printed ``wanted`` lines starting with ``prefix``."""
    seen = 0
    for line in child.stdout:
        seen += line.startswith(prefix)
        if seen >= wanted or line.startswith("finished"):
            break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)


def _whole_batches_only(store_path: Path) -> tuple[int, int]:
    """(batches stored, batches total); asserts every stored batch is complete."""
    from core.store import Store

    store = Store(store_path, read_only=True)
    try:
        runs = store.runs()
        if runs.empty:
            return 0, 0
        key = runs.run_key.iloc[0]
        done = store.done_batches(key)
        with store.cursor() as cur:
            per_batch = dict(cur.execute(
                "SELECT batch_index, count(*) FROM activations WHERE run_key = ? GROUP BY 1",
                [key]).fetchall())
        assert set(per_batch) == done  # no activation rows of an unfinished batch
        full = max(per_batch.values(), default=0)
        last = int(runs.n_batches.iloc[0]) - 1
        assert all(n == full for b, n in per_batch.items() if b != last)
        return len(done), int(runs.n_batches.iloc[0])
    finally:
        store.close()


def test_sigkill_at_random_batches_never_leaves_partial_rows_and_resumes_identically(
        tmp_path, tiny_bert_dir, demo):
    from core.extract import ExtractionConfig, extract
    from core.models import ModelSpec, load_ranker
    from core.store import Store

    rng = random.Random(0)
    killed_path = tmp_path / "killed.duckdb"
    history = []
    for _ in range(KILLS):
        _kill_after(_child(tiny_bert_dir, killed_path), "batch", rng.randint(1, 3))
        history.append(_whole_batches_only(killed_path))
    done, total = history[-1]
    assert 0 < done < total and [d for d, _ in history] == sorted(d for d, _ in history)
    finisher = _child(tiny_bert_dir, killed_path)
    assert "finished" in finisher.communicate(timeout=300)[0]
    assert _whole_batches_only(killed_path)[0] == total

    ranker = load_ranker(ModelSpec("tiny-ce", "cross-encoder", str(tiny_bert_dir), device="cpu"))
    clean = Store(tmp_path / "clean.duckdb")
    result = extract(ranker, demo, ExtractionConfig(limit_queries=40, batch_size=8), clean)
    killed = Store(killed_path, read_only=True)
    assert killed.runs().status.tolist() == ["done"]
    assert np.array_equal(killed.scores(result.run_key), clean.scores(result.run_key))
    for layer in range(ranker.n_layers):
        for pooling in ("mean", "max", "last"):
            resumed = killed.activations(result.run_key, "resid", layer, pooling)
            assert resumed.shape == (result.n_pairs, ranker.d_model)
            assert np.array_equal(resumed,
                                  clean.activations(result.run_key, "resid", layer, pooling))
    killed.close()
    clean.close()


PROBE_CHILD = """
from core.data import demo_collection
from core.models import load_ranker
from core.probing import ProbeConfig, probe_ranker
from core.store import Store
config = ProbeConfig(features=("bm25", "stream_length", "sum_tf"), poolings=("mean", "max"),
                     folds=3)
store = Store({store!r})
probe_ranker(load_ranker("minilm-cross-encoder"), demo_collection(), store, config,
             limit_queries=30,
             progress=lambda done, total, what: print("extract" if what else "probe", done, total,
                                                     flush=True))
store.close()
print("finished", flush=True)
"""


def test_sigkill_during_a_probe_sweep_keeps_whole_units_and_resumes_identically(tmp_path, demo):
    from core.models import load_ranker
    from core.probing import ProbeConfig, probe_ranker
    from core.store import Store

    path = tmp_path / "probe.duckdb"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    code = PROBE_CHILD.format(root=str(ROOT), store=str(path))
    rng = random.Random(1)
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True, env=env)
        _kill_after(child, "probe", rng.randint(1, 3))
        store = Store(path, read_only=True)
        runs = store.analysis_runs("probe")
        assert runs.status.tolist() == ["running"]
        rows = store.analysis_frame(runs.key.iloc[0])
        if len(rows):  # killed after a unit was written: whole units only
            assert (rows.groupby(["layer", "pooling"]).size() == 3).all()
        store.close()
    finisher = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=600)
    assert "finished" in finisher.stdout
    resumed = Store(path, read_only=True)
    key = resumed.analysis_runs("probe").key.iloc[0]
    assert resumed.analysis_runs("probe").status.tolist() == ["done"]
    clean = Store(tmp_path / "clean.duckdb")
    config = ProbeConfig(features=("bm25", "stream_length", "sum_tf"), poolings=("mean", "max"),
                         folds=3)
    fresh = probe_ranker(load_ranker("minilm-cross-encoder"), demo, clean, config,
                         limit_queries=30)
    assert fresh.key == key and len(fresh.frame) == 6 * 2 * 3
    import pandas as pd

    pd.testing.assert_frame_equal(resumed.analysis_frame(key), clean.analysis_frame(key),
                                  check_exact=True)
    resumed.close()
    clean.close()


def test_ctrl_c_while_duckdb_runs_a_query_is_the_same_clean_stop(monkeypatch, capsys, tmp_path):
    """DuckDB turns a Ctrl-C that arrives mid-query into its own error; the CLI must still say
    what was kept and exit 130 (it printed a traceback: a real Ctrl-C landed in write_batch)."""
    import threading

    import duckdb

    import core.cli
    import core.cli.extract

    seen = []

    def slow_run(args):
        connection = duckdb.connect()
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
        threading.Timer(30, connection.interrupt).start()  # never hang if the signal is lost
        try:
            connection.execute("SELECT count(*) FROM range(100000000000) t(i) "
                               "WHERE i % 7 = 3").fetchall()
        except BaseException as error:
            seen.append(error)
            raise

    monkeypatch.setattr(core.cli.extract, "run", slow_run)
    # a test run started in the background inherits SIGINT ignored; a user's terminal does not
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = core.cli.main(["extract", "--ranker", "minilm-cross-encoder", "--store",
                              str(tmp_path / "s.duckdb")])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen and not isinstance(seen[0], KeyboardInterrupt)  # DuckDB's own error
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "stopped: finished batches are saved; run the same command again to resume")


def test_ctrl_c_in_the_cli_says_what_was_kept_and_the_same_command_resumes(tmp_path, tiny_bert_dir):
    import signal

    store = tmp_path / "cli.duckdb"
    command = [sys.executable, "-m", "core", "extract", "--ranker", str(tiny_bert_dir),
               "--kind", "cross-encoder", "--limit", "60", "--batch-size", "4",
               "--store", str(store)]
    # a test run started in the background inherits SIGINT ignored; a user's terminal does not
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    while "extract:" not in seen and child.poll() is None:  # the progress bar has started
        seen += child.stderr.read(1)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "stopped: finished batches are saved; run the same command again to resume")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "from the store" in again.stdout
