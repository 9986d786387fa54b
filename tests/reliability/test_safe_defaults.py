"""Safe defaults: no network at run time unless a hub model is asked for, localhost only,
remote code off, and hub loading that fails fast offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_network(monkeypatch):
    """Every connection outside loopback raises (and is recorded)."""
    attempts = []
    original = socket.socket.connect

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network disabled by the test: {address}")
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: (
        attempts.append(address), (_ for _ in ()).throw(OSError("network disabled")))[1])
    return attempts


def test_the_app_scores_and_analyses_with_the_network_disabled(no_network, tmp_path,
                                                               monkeypatch):
    from streamlit.testing.v1 import AppTest

    with pytest.raises(OSError):  # the fence works
        socket.socket().connect(("192.0.2.1", 80))
    no_network.clear()
    monkeypatch.setenv("RANKSCOPE_STORE", str(tmp_path / "s.duckdb"))
    at = AppTest.from_file(str(ROOT / "pages/2_Playground.py"), default_timeout=180).run()
    assert not at.exception and not at.error
    assert float(at.metric[0].value) != 0.0
    assert no_network == []  # nothing even tried to reach the network


def test_server_config_binds_localhost_and_sends_no_usage_stats():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit/config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["browser"]["gatherUsageStats"] is False


def test_remote_code_is_off_for_every_preset():
    from core.models import PRESETS, ModelSpec

    assert ModelSpec("x", "cross-encoder", "some/id").trust_remote_code is False
    assert not any(spec.trust_remote_code for spec in PRESETS.values())


def test_an_unknown_hub_id_offline_fails_fast_with_the_id(no_network, monkeypatch):
    from core.errors import RankScopeError
    from core.models import ModelSpec, load_ranker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RankScopeError, match="someone/not-cached-ranker.*offline mode is on"):
        load_ranker(ModelSpec("x", "cross-encoder", "someone/not-cached-ranker"))
    assert no_network == []  # fails before any connection is tried: nothing to wait for
    # online mode without a route to the hub: one short reachability check, then the reason
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    with pytest.raises(RankScopeError, match="hub cannot be reached"):
        load_ranker(ModelSpec("x", "cross-encoder", "someone/not-cached-ranker"))
    assert no_network == [("huggingface.co", 443)]


# --------------------------------------------------------------------------- remote code
def _model_with_code(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the embedded MiniLM folder whose config needs the repository's own Python
    code (an unknown model type with ``auto_map``); that code, if ever run, writes a marker."""
    import json
    import shutil

    from core.models import PRESETS, resolve_source

    folder = tmp_path / "needs-code"
    shutil.copytree(resolve_source(PRESETS["minilm-cross-encoder"]), folder)
    marker = tmp_path / "EXECUTED"
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="rankscope-test-bert",
                  auto_map={"AutoConfig": "configuration_custom.CustomConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n")
    return folder, marker


def test_code_shipped_with_a_model_never_runs_unless_trusted(tmp_path):
    from core.errors import ModelLoadError
    from core.models import custom_spec, load_ranker

    folder, marker = _model_with_code(tmp_path)
    with pytest.raises(ModelLoadError, match="Trust remote code") as refused:
        load_ranker(custom_spec(str(folder), "cross-encoder"))
    assert "configuration_custom.py" in str(refused.value)
    assert not marker.exists()
    # ticked: the user's choice reaches transformers (the code runs), and its failure is still
    # one message, not a traceback
    with pytest.raises(ModelLoadError, match="its own trusted code failed"):
        load_ranker(custom_spec(str(folder), "cross-encoder", trust_remote_code=True))
    assert marker.read_text() == "ran"


def test_hub_downloads_fetch_python_files_only_when_trusted(monkeypatch):
    import huggingface_hub

    from core.models.loading import _resolve_hub

    asked = []

    def fake_download(repo_id, **kwargs):
        asked.append(kwargs["allow_patterns"])
        return "/nonexistent"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    _resolve_hub("someone/model", None, "model")
    _resolve_hub("someone/model", None, "model", code=True)
    assert "*.py" not in asked[0] and "*.py" in asked[1]
    assert not any(p.endswith((".bin", ".pt", ".pkl", ".pth")) for p in asked[0] + asked[1])


def test_cli_refuses_remote_code_for_presets_and_needs_it_for_custom_code(tmp_path):
    import subprocess
    import sys

    folder, marker = _model_with_code(tmp_path)
    cases = [(["--ranker", "minilm-cross-encoder", "--trust-remote-code"], "not to a preset"),
             (["--ranker", str(folder), "--kind", "cross-encoder"], "Trust remote code")]
    for args, fragment in cases:
        done = subprocess.run([sys.executable, "-m", "core", "score", *args, "--query", "q",
                               "--document", "d"], cwd=ROOT, capture_output=True, text=True,
                              env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2 and fragment in done.stderr
        assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_sidebar_loads_a_folder_model_and_explains_remote_code(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from core.models import PRESETS, REMOTE_CODE_WARNING, resolve_source

    monkeypatch.setenv("RANKSCOPE_STORE", str(tmp_path / "s.duckdb"))
    folder, marker = _model_with_code(tmp_path)
    at = AppTest.from_file(str(ROOT / "pages/1_Workspace.py"), default_timeout=180).run()
    assert at.checkbox(key="model_trust").value is False  # off unless the user ticks it
    assert not any(REMOTE_CODE_WARNING in w.value for w in at.sidebar.warning)
    at.text_input(key="model_source").set_value(str(folder))
    at.button(key="add_model").click().run()  # (elements are fetched again after each run)
    assert not at.exception
    assert any("Trust remote code" in e.value for e in at.sidebar.error)
    assert not marker.exists()
    at.checkbox(key="model_trust").check().run()
    assert any(REMOTE_CODE_WARNING in w.value for w in at.sidebar.warning)  # what it means
    assert not marker.exists()  # ticking alone loads nothing
    # a plain folder model (no code) becomes a ranker of this session, on every page
    at.checkbox(key="model_trust").uncheck().run()
    plain = resolve_source(PRESETS["minilm-cross-encoder"])
    at.text_input(key="model_source").set_value(str(plain))
    at.button(key="add_model").click().run()
    assert not at.exception and not at.sidebar.error
    label = f"{plain.parent.name}/{plain.name}"
    assert at.session_state["ranker"] == label
    assert label in at.sidebar.selectbox[0].options
    card = at.table[0].value  # the Workspace's model card
    assert card.value["kind"] == "cross-encoder" and not marker.exists()


# --------------------------------------------------------------------------- SQL
HOSTILE = "x'); DROP TABLE runs; --"


def test_hostile_names_in_every_user_field_reach_the_store_as_plain_text(tmp_path,
                                                                         tiny_bert_dir, demo):
    """A ranker label, a collection name, a store file name and result names made of SQL are
    stored and read back verbatim and touch no table (DuckDB cannot bind ATTACH paths: those
    are quoted, here with a quote in the file name)."""
    import dataclasses

    import pandas as pd

    from core.extract import ExtractionConfig, extract
    from core.models import custom_spec, load_ranker
    from core.store import Store

    ranker = load_ranker(custom_spec(str(tiny_bert_dir), "cross-encoder", name=HOSTILE))
    collection = dataclasses.replace(demo, name=HOSTILE + " \"; DELETE FROM pairs; --")
    side = tmp_path / "it's; DROP TABLE batches; --.duckdb"
    other = Store(side)
    run = extract(ranker, collection, ExtractionConfig(limit_queries=1, batch_size=8), other)
    other.begin_analysis(HOSTILE, analysis="knockout", ranker=HOSTILE, collection=collection.name,
                         config={"k": HOSTILE}, n_units=1)
    other.write_analysis_unit(HOSTILE, 0, HOSTILE, pd.DataFrame({"name": [HOSTILE]}))
    other.finish_analysis(HOSTILE)
    other.close()
    store = Store(tmp_path / "main.duckdb")
    counts = store.import_file(side)
    assert counts["runs"] == 1
    runs = store.runs()
    assert runs.ranker.tolist() == [HOSTILE] and runs.collection.tolist() == [collection.name]
    assert len(store.pairs(run.run_key)) == run.n_pairs
    assert store.analysis_frame(HOSTILE).name.tolist() == [HOSTILE]
    assert store.latest("knockout", HOSTILE, collection.name) == HOSTILE
    assert store.latest("probe", HOSTILE, collection.name) is None
    assert store.run_info(HOSTILE) is None
    with store.cursor() as cur:
        tables = {r[0] for r in cur.execute("SHOW TABLES").fetchall()}
    assert {"runs", "pairs", "batches", "analysis_runs", "analysis_units"} <= tables
    store.close()
