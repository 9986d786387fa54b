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
    import time

    from core.errors import RankScopeError
    from core.models import ModelSpec, load_ranker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(RankScopeError, match="someone/not-cached-ranker"):
        load_ranker(ModelSpec("x", "cross-encoder", "someone/not-cached-ranker"))
    assert time.perf_counter() - started < 10
