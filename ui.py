"""Streamlit glue shared by app.py and pages/: cached engine handles, the sidebar, errors.

Pages read widgets, call the engine through these cached wrappers, and render. Nothing here
computes an analysis.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from core.data import Collection, available_collections, load_collection
from core.errors import RankScopeError
from core.models import EMBEDDED, PRESETS, Ranker, load_ranker
from core.store import DEFAULT_PATH, Store, open_store, side_files

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
UPLOAD_LIMIT_MB = 50
GROUP_COLOURS = {"query": "#cfe8ff", "document": "#e6f4d7", "instruction": "#eeeeee",
                 "last": "#ffd7a8", "pad": "#ffffff"}


def store_path() -> Path:
    return Path(os.environ.get("RANKSCOPE_STORE", DEFAULT_PATH))


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> tuple[Store, str | None]:
    """The app's store (one connection per process; a cursor per call)."""
    return open_store(path, fallback=True)


@st.cache_resource(show_spinner=False, max_entries=2)
def get_ranker(name: str) -> Ranker:
    return load_ranker(name)


@st.cache_data(show_spinner=False, max_entries=8)
def get_collection(source: str) -> Collection:
    return load_collection(source)


def page_setup(title: str, icon: str = "🔎") -> None:
    st.set_page_config(page_title=f"RankScope · {title}", page_icon=icon, layout="wide")


def sidebar() -> tuple[str, str]:
    """Shared workspace choice: (ranker name, collection source)."""
    with st.sidebar:
        st.markdown("### Workspace")
        names = list(PRESETS)
        default = st.session_state.get("ranker", EMBEDDED[0])
        ranker = st.selectbox(
            "Ranker", names, index=names.index(default) if default in names else 0,
            format_func=lambda n: n + ("" if n in EMBEDDED else "  (hub)"),
            help="Embedded rankers work offline; hub presets need a connection (and a GPU "
                 "for 7B models).")
        st.session_state["ranker"] = ranker
        st.caption(PRESETS[ranker].description)
        options = available_collections()
        extra = st.session_state.get("extra_collections", [])
        options += [o for o in extra if o not in options]
        default_c = st.session_state.get("collection", "demo")
        collection = st.selectbox("Collection", options,
                                  index=options.index(default_c) if default_c in options else 0)
        st.session_state["collection"] = collection
        with st.expander("Add a collection folder"):
            folder = st.text_input("Folder path", key="folder_input",
                                   help="BEIR, MS MARCO TSV, or docs.jsonl + queries.tsv + "
                                        "qrels.txt")
            if st.button("Add", key="add_folder") and folder:
                try:
                    get_collection(folder)
                except RankScopeError as error:
                    st.error(str(error))
                else:
                    st.session_state["extra_collections"] = extra + [folder]
                    st.session_state["collection"] = folder
                    st.rerun()
    return ranker, collection


def ranker_or_error(name: str) -> Ranker | None:
    try:
        with st.spinner(f"Loading {name} …"):
            return get_ranker(name)
    except RankScopeError as error:
        st.error(str(error))
    return None


def collection_or_error(source: str) -> Collection | None:
    try:
        return get_collection(source)
    except RankScopeError as error:
        st.error(str(error))
    return None


def store_or_error() -> Store | None:
    try:
        store, note = get_store(str(store_path()))
    except RankScopeError as error:
        st.error(str(error))
        return None
    if note:
        st.info(note)
    return store


def pending_side_files() -> list[Path]:
    return [p for p in side_files(store_path()) if p != get_store(str(store_path()))[0].path]


class RunStatus:
    """Stop button, progress bar and messages of a long run, all in one container placed above
    the results, so the elements after it (tabs: and the tab a user is on) keep their place
    between the rerun that draws a progress bar and the next one that does not.

    ``flag`` marks a run in progress in the session: a rerun that finds it set without a new
    submission was caused by Stop, and says how to resume."""

    def __init__(self, flag: str, submitted: bool, button: str, unit: str):
        self.flag, self.unit = flag, unit
        self.area = st.container()
        if st.session_state.get(flag) and not submitted:
            st.session_state[flag] = False
            self.area.warning(f"Stopped. Finished {unit}s are saved in the store — press "
                              f"**{button}** to resume where it stopped.")

    def start(self):
        """Show Stop and a progress bar; returns the bar."""
        st.session_state[self.flag] = True
        self._stop = self.area.empty()
        self._stop.button("Stop", help=f"Stops after the current {self.unit}; finished "
                                       f"{self.unit}s are kept.")
        self.bar = self.area.progress(0.0, text="Starting …")
        return self.bar

    def fail(self, error: Exception) -> None:
        """Show the error where the run was and stop the script."""
        st.session_state[self.flag] = False
        self.area.error(str(error))
        st.stop()

    def done(self) -> None:
        self.bar.progress(1.0, text="Done")
        self._stop.empty()
        st.session_state[self.flag] = False


def coloured_tokens(tokens: list[tuple[str, str]]) -> str:
    """HTML for tokens coloured by position group (query / document / instruction / last)."""
    import html

    spans = []
    for text, group in tokens:
        shown = html.escape(text).replace("\n", "↵<br>") or "·"
        spans.append(f'<span title="{group}" style="background:{GROUP_COLOURS[group]};'
                     f'padding:1px 2px;margin:1px;border-radius:3px;'
                     f'display:inline-block">{shown}</span>')
    legend = " ".join(f'<span style="background:{c};padding:1px 6px;border-radius:3px">{g}</span>'
                      for g, c in GROUP_COLOURS.items() if g != "pad")
    return f'<div style="line-height:1.9">{"".join(spans)}</div><div>{legend}</div>'


def chart_with_exports(chart, frame, name: str, stretch: bool = True) -> None:
    """Draw an Altair chart with PNG / SVG / CSV downloads (images rendered on click, offline).

    ``stretch=False`` keeps the chart's own width (a radar chart must stay round)."""
    from core.charts import export_chart

    st.altair_chart(chart, width="stretch" if stretch else "content")
    cols = st.columns([1, 1, 1, 6])
    cols[0].download_button("PNG", lambda: export_chart(chart, "png"), f"{name}.png",
                            "image/png", key=f"png-{name}", on_click="ignore")
    cols[1].download_button("SVG", lambda: export_chart(chart, "svg"), f"{name}.svg",
                            "image/svg+xml", key=f"svg-{name}", on_click="ignore")
    cols[2].download_button("CSV", frame.to_csv(index=False), f"{name}.csv", "text/csv",
                            key=f"csv-{name}", on_click="ignore")
