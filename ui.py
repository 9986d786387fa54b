"""Streamlit glue shared by app.py and pages/: cached engine handles, the sidebar, errors.

Pages read widgets, call the engine through these cached wrappers, and render. Nothing here
computes an analysis.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

from core.analysis import plural
from core.constants import BM25_B, BM25_K1
from core.data import Collection, available_collections, load_collection, save_upload
from core.errors import ModelLoadError, RankScopeError
from core.models import (EMBEDDED, KINDS, PRESETS, QUANTIZATIONS, REMOTE_CODE_WARNING, ModelSpec,
                         Ranker, custom_spec, load_ranker)
from core.store import DEFAULT_PATH, Store, open_store, side_files

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def upload_limit_mb() -> float:
    """Upload size limit: ``RANKSCOPE_UPLOAD_LIMIT_MB`` or 50 MB (also Streamlit's
    ``server.maxUploadSize`` in .streamlit/config.toml, which refuses larger files earlier)."""
    return float(os.environ.get("RANKSCOPE_UPLOAD_LIMIT_MB", 50))


def uploads_dir() -> Path:
    """Uploaded collections live next to the store (``cache/uploads`` by default)."""
    return store_path().parent / "uploads"


GROUP_COLOURS = {"query": "#cfe8ff", "document": "#e6f4d7", "instruction": "#eeeeee",
                 "last": "#ffd7a8", "pad": "#ffffff"}


def store_path() -> Path:
    return Path(os.environ.get("RANKSCOPE_STORE", DEFAULT_PATH))


@st.cache_resource(show_spinner=False)
def get_store(path: str) -> tuple[Store, str | None]:
    """The app's store (one connection per process; a cursor per call)."""
    return open_store(path, fallback=True)


@st.cache_resource(show_spinner=False, max_entries=2)
def _load_ranker(key: str, _spec: ModelSpec) -> Ranker:
    return load_ranker(_spec)


def load_spec(spec: ModelSpec) -> Ranker:
    """A loaded ranker, cached per process by its spec (sessions share one copy)."""
    return _load_ranker(spec.key() + spec.name, spec)


def get_ranker(name: str) -> Ranker:
    return load_spec(spec_for(name))


def ranker_names() -> list[str]:
    """Presets, then the models this session added (sidebar: Add a model)."""
    return list(PRESETS) + [n for n in st.session_state.get("custom_models", {})
                            if n not in PRESETS]


def spec_for(name: str) -> ModelSpec:
    custom = st.session_state.get("custom_models", {})
    if name in custom:
        return custom[name]
    if name in PRESETS:
        return PRESETS[name]
    raise ModelLoadError(f"ranker {name!r} is not loaded in this session; add it again in the "
                         "sidebar (Add a model) — results stored for it are kept")


def collection_options() -> list[str]:
    """Built-in collections, uploaded ones, then folders this session added."""
    options = available_collections()
    if uploads_dir().is_dir():
        options += sorted(str(p) for p in uploads_dir().iterdir()
                          if p.is_dir() and not p.name.startswith("."))
    options += [o for o in st.session_state.get("extra_collections", []) if o not in options]
    return options


def candidates_caption(collection: Collection) -> str:
    """Where a collection's re-ranked candidates come from, in words."""
    if collection.run is not None:
        kind = " (a BM25 run)" if collection.run_is_bm25 else ""
        return f"the top-k of its run file {collection.run_name}{kind}"
    return f"BM25 top-k (bm25s, k1 = {BM25_K1}, b = {BM25_B})"


@st.cache_data(show_spinner=False, max_entries=8)
def get_collection(source: str) -> Collection:
    return load_collection(source)


PAGES = [  # (script, title, favicon, what it answers): Home's cards and the sidebar navigation
    ("pages/8_Lessons.py", "Lessons", "🎓",
     "Start here in a classroom: three guided lessons — predict, reveal, compare with the "
     "paper — one per study."),
    ("pages/2_Playground.py", "Playground", "🎛️",
     "Type a query and a document: the score, where in the layers it forms, and which words "
     "raise or lower it."),
    ("pages/1_Workspace.py", "Workspace", "🧰",
     "The ranker's card, the collection, activation extraction (stop and resume), and what "
     "4-bit or bf16 costs this ranker."),
    ("pages/3_Probing.py", "Probing", "📈",
     "Which IR features (BM25, TF·IDF, coverage …) each layer encodes: R² curves per layer."),
    ("pages/4_Patching.py", "Patching", "🩹",
     "Where relevance flows: indirect effect per layer × token position, heads, knock-outs."),
    ("pages/5_Attribution.py", "Attribution", "🧬",
     "Which neurons carry the score: conductance of every linear layer, top-X % sets."),
    ("pages/6_Ablation.py", "Ablation", "✂️",
     "Knock neuron sets out while re-ranking: nDCG@10 against random sets, Shapley checks."),
    ("pages/7_Lens.py", "Score lens", "🔭",
     "How well the ranker would rank if it stopped after each layer: nDCG@10 per layer."),
]


def page_setup(title: str, icon: str = "🔎") -> None:
    st.set_page_config(page_title=f"RankScope · {title}", page_icon=icon, layout="wide")


def sidebar() -> tuple[str, str]:
    """Shared workspace choice: (ranker name, collection source)."""
    with st.sidebar:
        # RankScope's own navigation (Streamlit's is off in .streamlit/config.toml): the first
        # entry reads "Home" on every page; no icons (a machine without an emoji font would
        # draw empty boxes)
        try:
            st.page_link("app.py", label="Home")
            for script, title, _, _ in PAGES:
                st.page_link(script, label=title)
            st.divider()
        except StreamlitPageNotFoundError:  # a page script run as the entry point (AppTest of
            pass  # one page): there is no app to navigate; `streamlit run app.py` always has
        st.markdown("### Workspace")
        names = ranker_names()
        default = st.session_state.get("ranker", EMBEDDED[0])
        ranker = st.selectbox(
            "Ranker", names, index=names.index(default) if default in names else 0,
            format_func=lambda n: n + ("" if n not in PRESETS or PRESETS[n].source.startswith("pypi:")
                                       else "  (hub)"),
            help="Embedded rankers work offline; hub presets need a connection (and a GPU "
                 "for 7B models).")
        st.session_state["ranker"] = ranker
        st.caption(spec_for(ranker).description)
        options = collection_options()
        extra = st.session_state.get("extra_collections", [])
        default_c = st.session_state.get("collection", "demo")
        collection = st.selectbox("Collection", options,
                                  index=options.index(default_c) if default_c in options else 0,
                                  format_func=lambda o: Path(o).name if "/" in o else o)
        st.session_state["collection"] = collection
        _add_model_form()
        _upload_form()
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


def _add_model_form() -> None:
    """Sidebar form: a hub id or local folder as a ranker, remote code only when ticked."""
    with st.expander("Add a model (hub id or folder)"):
        source = st.text_input("Hub id or local folder", key="model_source",
                               placeholder="cross-encoder/ms-marco-MiniLM-L-6-v2")
        kind = st.selectbox("Kind", KINDS, key="model_kind",
                            help="cross-encoder: [CLS] score head; llm-ranker: score head at "
                                 "the last token (RankLlama); llm-judge: yes/no logits.")
        adapter = st.text_input("LoRA adapter (optional)", key="model_adapter",
                                help="peft folder or hub id, merged into the base.")
        gguf = st.text_input("GGUF file (optional)", key="model_gguf",
                             help="File name inside the folder / repository.")
        c1, c2 = st.columns(2)
        quantization = c1.selectbox("Precision", QUANTIZATIONS, key="model_quantization",
                                    help="4bit-nf4 / 8bit need bitsandbytes (8bit: CUDA).")
        max_length = c2.number_input("Max tokens", min_value=8, max_value=32_768, value=256,
                                     key="model_max_length")
        trust = st.checkbox("Trust remote code", value=False, key="model_trust",
                            help=REMOTE_CODE_WARNING)
        if trust:
            st.warning(REMOTE_CODE_WARNING)
        else:
            st.caption("Remote code is off: a model that needs its own Python code is refused, "
                       "and nothing from the repository runs.")
        if st.button("Load model", key="add_model"):
            try:
                spec = custom_spec(source, kind, adapter=adapter, gguf_file=gguf,
                                   quantization=quantization, max_length=int(max_length),
                                   trust_remote_code=trust)
                with st.spinner(f"Loading {spec.name} …"):
                    load_spec(spec)
            except RankScopeError as error:
                st.error(str(error))
            else:
                custom = dict(st.session_state.get("custom_models", {}))
                custom[spec.name] = spec
                st.session_state["custom_models"] = custom
                st.session_state["ranker"] = spec.name
                st.rerun()


def _upload_form() -> None:
    """Sidebar: upload collection files (size-limited, parsed as text, checked before use)."""
    with st.expander("Upload a collection"):
        limit = upload_limit_mb()
        files = st.file_uploader(
            "Collection files", accept_multiple_files=True, type=["jsonl", "tsv", "txt"],
            key="upload_files",
            help=f"docs.jsonl (or collection.tsv / docs.tsv / BEIR corpus.jsonl), queries.tsv "
                 f"(or queries.jsonl), qrels*.txt (or a BEIR qrels .tsv), optional run.txt; "
                 f"{limit:g} MB in all.")
        name = st.text_input("Collection name (optional)", key="upload_name")
        if st.button("Add upload", key="add_upload"):
            try:
                folder = save_upload([(f.name, f.getvalue()) for f in files or []],
                                     uploads_dir(), limit, name)  # loaded strictly there
            except RankScopeError as error:
                st.error(str(error))
            else:
                st.session_state["collection"] = str(folder)
                st.rerun()


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
        self.units = plural(unit)
        self.area = st.container()
        if st.session_state.get(flag) and not submitted:
            st.session_state[flag] = False
            self.area.warning(f"Stopped. Finished {self.units} are saved in the store — press "
                              f"**{button}** to resume where it stopped.")

    def start(self):
        """Show Stop and a progress bar; returns the bar."""
        st.session_state[self.flag] = True
        self._stop = self.area.empty()
        self._stop_help = f"Stops after the current {self.unit}; finished {self.units} are kept."
        self._stop.button("Stop", key=f"{self.flag}-stop", help=self._stop_help)
        self.bar = self.area.progress(0.0, text="Starting …")
        self._beat = self.area.empty()
        return self.bar

    def progress(self, done: int, total: int, what: str = "") -> None:
        """The engine's ``progress(done, total, what)``."""
        text = f"{what}: {done} of {total}" if what else f"{done} of {total} {self.units}"
        self.bar.progress(min(1.0, done / max(total, 1)), text=text)

    def should_stop(self) -> bool:
        """The engine's ``should_stop``, polled between units. Streamlit delivers a press of
        Stop by raising inside the next call that touches the page, so touching it here ends
        the run at a unit boundary (finished units are in the store) even when the analysis
        reports no progress. False when Stop was not pressed."""
        self._beat.empty()
        return False

    def fail(self, error: Exception) -> None:
        """Show the error where the run was (no Stop, no progress bar left) and stop the
        script."""
        st.session_state[self.flag] = False
        if getattr(self, "_stop", None) is not None:
            self._stop.empty()
            self.bar.empty()
        self.area.error(str(error))
        st.stop()

    def done(self) -> None:
        self.bar.progress(1.0, text="Done")
        self._stop.empty()
        st.session_state[self.flag] = False

    @contextlib.contextmanager
    def running(self):
        """Stop and a progress bar for the work inside the block; it ends as done, or as
        failed — one sentence where Stop and the bar were — whatever it raises: bad input
        (:class:`RankScopeError`) as its message, anything else as a failure naming the
        error (its traceback in the terminal), never a live Stop over a dead run."""
        self.start()
        try:
            yield self
        except RankScopeError as error:
            self.fail(error)
        except Exception as error:  # noqa: BLE001 - a bug must still end the run on screen
            import logging

            logging.getLogger("rankscope").exception("run failed")
            self.fail(f"The run failed: {type(error).__name__}: {error}. Finished "
                      f"{self.units} are kept in the store; the traceback is in the "
                      "terminal that runs Streamlit (please report it).")
        self.done()


def group_label(group: str, kind: str | None = None) -> str:
    """What a position group is for a ranker kind: the scored position is [CLS] (the first
    token) in a cross-encoder and the last token in a decoder."""
    return "[CLS]" if group == "last" and kind == "cross-encoder" else group


def coloured_tokens(tokens: list[tuple[str, str]], kind: str | None = None) -> str:
    """HTML for tokens coloured by position group (query / document / instruction / the
    scored position: [CLS] for a cross-encoder, last for a decoder)."""
    import html

    spans = []
    for text, group in tokens:
        shown = html.escape(text).replace("\n", "↵<br>") or "·"
        spans.append(f'<span title="{group_label(group, kind)}" '
                     f'style="background:{GROUP_COLOURS[group]};'
                     f'padding:1px 2px;margin:1px;border-radius:3px;'
                     f'display:inline-block">{shown}</span>')
    legend = " ".join(f'<span style="background:{c};padding:1px 6px;border-radius:3px">'
                      f'{group_label(g, kind)}</span>'
                      for g, c in GROUP_COLOURS.items() if g != "pad")
    return f'<div style="line-height:1.9">{"".join(spans)}</div><div>{legend}</div>'


def saliency_tokens(frame) -> str:
    """HTML for tokens shaded by their attribution: green raises the score, red lowers it
    (opacity ∝ |attribution| / the largest one); hover for the value and group."""
    import html

    scale = float(frame.attribution.abs().max()) or 1.0
    spans = []
    for row in frame.itertuples(index=False):
        strength = min(1.0, abs(row.attribution) / scale)
        colour = "44,160,44" if row.attribution >= 0 else "214,39,40"
        shown = html.escape(str(row.token)).replace("\n", "↵<br>") or "·"
        spans.append(f'<span title="{row.group}: {row.attribution:+.4f}" '
                     f'style="background:rgba({colour},{0.08 + 0.82 * strength:.2f});'
                     f'padding:1px 2px;margin:1px;border-radius:3px;display:inline-block">'
                     f'{shown}</span>')
    legend = ('<span style="background:rgba(44,160,44,.7);padding:1px 6px;border-radius:3px">'
              'raises the score</span> <span style="background:rgba(214,39,40,.7);'
              'padding:1px 6px;border-radius:3px">lowers it</span>')
    return f'<div style="line-height:1.9">{"".join(spans)}</div><div>{legend}</div>'


def download_run(name: str, config: dict, tables: dict, charts: dict | None = None,
                 command: str = "") -> None:
    """"Download this run": a zip of its config (with the command line), tables (CSV) and
    figures (PNG / SVG), built when clicked."""
    from core.charts import run_archive

    st.download_button("Download this run (zip)",
                       lambda: run_archive(config, tables, charts, command), f"{name}.zip",
                       "application/zip", key=f"zip-{name}", on_click="ignore")


def show_chart(chart, container=None, stretch: bool = True) -> None:
    """Draw an Altair chart in RankScope's theme (the one its exports use): as wide as the
    container with the plot at its own height; concatenated / faceted charts and
    ``stretch=False`` at their own size."""
    from core.charts import fit_width, is_composed

    target = container or st
    wide = stretch and not is_composed(chart)
    target.altair_chart(fit_width(chart) if wide else chart,
                        width="stretch" if wide else "content", theme=None)


def chart_with_exports(chart, frame, name: str, stretch: bool = True,
                       panels: list | None = None) -> None:
    """Draw an Altair chart with PNG / SVG / CSV downloads (images rendered on click, offline).

    ``stretch=False`` keeps the chart's own width (a radar chart must stay round).
    ``panels``: the chart's parts drawn side by side in two columns, each as wide as its
    column (small multiples that fit any window); the downloads are ``chart``, all of them."""
    from core.charts import export_chart

    if panels:
        columns = st.columns(2)
        for number, panel in enumerate(panels):
            show_chart(panel, columns[number % 2])
    else:
        show_chart(chart, stretch=stretch)
    cols = st.columns([1, 1, 1, 6])
    cols[0].download_button("PNG", lambda: export_chart(chart, "png"), f"{name}.png",
                            "image/png", key=f"png-{name}", on_click="ignore")
    cols[1].download_button("SVG", lambda: export_chart(chart, "svg"), f"{name}.svg",
                            "image/svg+xml", key=f"svg-{name}", on_click="ignore")
    cols[2].download_button("CSV", frame.to_csv(index=False), f"{name}.csv", "text/csv",
                            key=f"csv-{name}", on_click="ignore")


# --------------------------------------------------------------------------- analysis pages
def _stored_run_widget(container, item, label, help_text, key, store, ranker: str,
                       collection: str, default):
    """A select box of the finished stored runs a ``builds_on`` field may name."""
    runs = store.finished(item.metadata["builds_on"], ranker)
    if item.metadata["same_collection"]:
        runs = [r for r in runs if r[1] == collection]
    labels = {"": f"the newest on {collection}" + (" (or none)" if item.metadata["optional"]
                                                    else "")}
    if item.metadata["optional"]:
        labels["none"] = "none"
    import datetime

    labels.update({r[0]: f"{r[1]} · {datetime.datetime.fromtimestamp(r[2]):%Y-%m-%d %H:%M} · "
                         f"{r[0]}" for r in runs})
    if default not in labels:
        labels[default] = default
    options = list(labels)
    return container.selectbox(label, options, index=options.index(default), help=help_text,
                               key=key, format_func=labels.get)


def _field_widget(container, item, kind, default, key: str, runs=None):
    """One form widget for one config field (its label, help and choices from the field);
    ``runs`` = (store, ranker, collection) for fields that name a stored run."""
    import typing

    label = item.metadata.get("label") or item.name.replace("_", " ").capitalize()
    help_text = item.metadata.get("help") or None
    if item.metadata.get("builds_on") and runs is not None:
        return _stored_run_widget(container, item, label, help_text, key, *runs, default)
    choices = item.metadata.get("choices")
    if kind is bool:
        return container.checkbox(label, value=default, help=help_text, key=key)
    if typing.get_origin(kind) is tuple:
        inner = typing.get_args(kind)[0]
        if choices:
            return tuple(container.multiselect(label, list(choices), default=list(default),
                                               help=help_text, key=key))
        if item.metadata.get("multiline"):  # free-text entries that hold spaces
            text = container.text_area(label, value="\n".join(map(str, default)), key=key,
                                       help=(help_text or "") + " (one per line)", height=70)
            return tuple(line.strip() for line in text.splitlines() if line.strip())
        text = container.text_input(label, value=" ".join(map(str, default)), key=key,
                                    help=(help_text or "") + " (separated by spaces)")
        try:
            return tuple(inner(v) for v in text.replace(",", " ").split())
        except ValueError:
            raise RankScopeError(f"{label}: {text!r} is not a list of numbers") from None
    if choices:
        return container.selectbox(label, list(choices), index=list(choices).index(default),
                                   help=help_text, key=key)
    minimum = item.metadata.get("minimum")
    if kind is int:
        return int(container.number_input(label, value=int(default), step=1, help=help_text,
                                          key=key, min_value=None if minimum is None
                                          else int(minimum)))
    if kind is float:
        return float(container.number_input(label, value=float(default), help=help_text,
                                            key=key, format="%.4g", min_value=minimum))
    return container.text_input(label, value=str(default), help=help_text, key=key)


def analysis_page(name: str, icon: str = "🔬") -> None:
    """The whole page of a registered analysis (:mod:`core.analysis`)."""
    from core.analysis import registered

    analysis = registered()[name]
    page_setup(analysis.title, icon)
    ranker_name, source = sidebar()
    st.title(analysis.title)
    store = store_or_error()
    collection = collection_or_error(source)
    if store is None or collection is None:
        st.stop()
    analysis_section(name, ranker_name, source, store, collection)


def analysis_section(name: str, ranker_name: str, source: str, store: Store,
                     collection: Collection, preset: dict | None = None) -> None:
    """A registered analysis on a page: a form built from its config (``preset`` overrides
    defaults), a run with progress / Stop / resume, the command line that reruns it, and its
    stored runs of this ranker on this collection — the newest drawn by default, read back
    from the store without recomputing (after a restart too)."""
    from core.analysis import registered

    analysis = registered()[name]
    summary = analysis.summary[:1].upper() + analysis.summary[1:]
    st.caption(f"{summary} — headless: `python -m core {analysis.name} --help`.")
    analysis_form(analysis, ranker_name, store, collection, preset)
    _stored_run(analysis, ranker_name, source, store, collection)


def config_fields(analysis, preset: dict | None = None, runs=None
                  ) -> tuple[dict, RankScopeError | None]:
    """One widget per field of the analysis' config (inside a form), ``preset`` overriding
    defaults; returns (field → value, the error of a field that could not be read)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(analysis.Config)
    fields = dataclasses.fields(analysis.Config)
    defaults = dataclasses.replace(analysis.Config(), **(preset or {}))
    columns = st.columns(min(4, max(1, len(fields))))
    try:
        return {item.name: _field_widget(columns[i % len(columns)], item, hints[item.name],
                                         getattr(defaults, item.name),
                                         f"{analysis.name}-field-{item.name}", runs)
                for i, item in enumerate(fields)}, None
    except RankScopeError as bad:
        return {}, bad


def analysis_form(analysis, ranker_name: str, store: Store, collection: Collection,
                   preset: dict | None) -> None:
    """The analysis' form (one widget per config field) and, when submitted, its run with
    progress and Stop; the new run's key is remembered to be shown."""
    from core.analysis import config_from
    from core.analysis import run as run_analysis

    name = analysis.name
    button = f"Run {analysis.title.lower()}"
    with st.form(f"analysis-{name}"):
        values, error = config_fields(analysis, preset, (store, ranker_name, collection.name))
        submitted = st.form_submit_button(button, type="primary")
    status = RunStatus(f"running-{name}", submitted, button, analysis.unit)
    if not submitted:
        return
    try:
        if error is not None:
            raise error
        config = config_from(analysis.Config, values)
        analysis.validate(config)
    except RankScopeError as bad:
        status.fail(bad)
    with status.area:
        ranker = ranker_or_error(ranker_name)
    if ranker is None:
        st.stop()
    with status.running():
        result = run_analysis(analysis, ranker, collection, config, store,
                              progress=status.progress, should_stop=status.should_stop)
    st.session_state[f"{name}-key"] = result.key


def stored_run_choice(analysis, ranker_name: str, store: Store, collection: Collection):
    """The finished stored runs of ``analysis`` for the ranker on the collection in a select
    box — the one just run, else the newest — as (its ``analysis_runs`` row, its stored
    config), or None (with a hint) when there is none."""
    runs = store.analysis_runs(analysis.name)
    runs = runs[(runs.status == "done") & (runs.collection == collection.name)
                & (runs.ranker == ranker_name)]
    if runs.empty:
        st.info(f"Pick the settings, then **Run {analysis.title.lower()}**. Runs are kept in "
                "the store: asking again is instant.")
        return None
    labels = {r.key: f"{r.ranker} · {r.collection} · {r.units_done} {analysis.plural} · "
                     f"{r.created:%Y-%m-%d %H:%M} · {r.key}" for r in runs.itertuples()}
    wanted = st.session_state.get(f"{analysis.name}-key")
    keys = list(labels)[::-1]
    key = st.selectbox("Run shown", keys, index=keys.index(wanted) if wanted in labels else 0,
                       format_func=labels.get, key=f"{analysis.name}-shown")
    info = runs[runs.key == key].iloc[0]
    return info, json.loads(info.config)


def command_line(name: str, ranker: str, source: str, stored: dict) -> str:
    """The CLI line that reruns a stored run (its config as stored) on the same store key."""
    from core.cli import reproduce

    return reproduce(name, ranker=ranker, collection=source,
                     store=None if store_path() == DEFAULT_PATH else str(store_path()),
                     **{k: list(v) if isinstance(v, (tuple, list)) else v
                        for k, v in stored.items()})


def _stored_run(analysis, ranker_name: str, source: str, store: Store,
                collection: Collection) -> None:
    """The stored runs of the ranker on the collection: the chosen one (the newest, or the
    one just run) drawn from the store, with its command line and downloads."""
    from core.analysis import config_from, load

    name = analysis.name
    chosen = stored_run_choice(analysis, ranker_name, store, collection)
    if chosen is None:
        return
    info, stored = chosen
    result = load(analysis, store, info.key, collection, config_from(analysis.Config, stored))
    command = command_line(name, info.ranker, source, stored)
    with st.expander("Reproduce this run from the command line (same store key)"):
        st.code(command, language="bash", wrap_lines=True)
    for note in result.notes:
        st.caption(note)
    charts = analysis.charts(result)
    stem = f"{name}-{info.ranker}-{info.collection}"
    for chart_name, chart in charts.items():
        chart_with_exports(chart, result.frame, f"{chart_name}-{info.ranker}-{info.collection}")
    st.dataframe(analysis.display(result.frame), hide_index=True, width="stretch")
    download_run(stem, {"analysis": name, "ranker": info.ranker, "collection": info.collection,
                        "config": stored}, {name: result.frame}, charts or None, command)
