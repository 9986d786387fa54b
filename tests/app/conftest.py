import pytest


@pytest.fixture(autouse=True)
def app_store(tmp_path, monkeypatch):
    """Each app test gets its own store file; Streamlit caches are cleared between tests."""
    import streamlit as st

    monkeypatch.setenv("RANKSCOPE_STORE", str(tmp_path / "app.duckdb"))
    st.cache_data.clear()
    yield tmp_path / "app.duckdb"
    import ui

    ui.get_store.clear()
