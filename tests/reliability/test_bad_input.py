"""Bad input, table-driven: every case must raise one RankScopeError whose message names what
is wrong and where (file, line, field or setting) — never a raw exception — and leave the
store without partial rows.

Collections start from one valid folder (docs.jsonl, queries.tsv, qrels.txt, run.txt) and
change one thing; settings start from valid defaults and break one field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import RankScopeError

GOOD = {
    "docs.jsonl": "\n".join(json.dumps({"docno": f"d{i}", "title": "", "text": text})
                            for i, text in enumerate(["honey keeps for years in a jar",
                                                      "bees make honey from nectar",
                                                      "trams run along the harbour"])) + "\n",
    "queries.tsv": "q1\thow long does honey keep\nq2\twhere do trams run\n",
    "qrels.txt": "q1 0 d0 2\nq1 0 d1 1\nq2 0 d2 2\n",
    "run.txt": "q1 Q0 d0 1 3.5 bm25\nq1 Q0 d1 2 1.0 bm25\nq2 Q0 d2 1 2.0 bm25\n",
}


def _folder(tmp_path: Path, **changes) -> Path:
    """The good folder with files replaced (text or bytes) or removed (None)."""
    folder = tmp_path / "collection"
    folder.mkdir()
    for name, content in {**GOOD, **changes}.items():
        if content is None:
            continue
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    return folder


def _doc_line(text: str, docno: str = "d9") -> str:
    return json.dumps({"docno": docno, "title": "", "text": text})


# (case id, files changed, message fragments that must all appear)
COLLECTION_CASES = [
    ("docs: invalid JSON", {"docs.jsonl": GOOD["docs.jsonl"] + "{not json\n"},
     ["docs.jsonl line 4", "invalid JSON"]),
    ("docs: JSON array line", {"docs.jsonl": GOOD["docs.jsonl"] + "[1, 2]\n"},
     ["line 4", "expected an object"]),
    ("docs: missing text", {"docs.jsonl": GOOD["docs.jsonl"] + '{"docno": "d9"}\n'},
     ["line 4", "missing field"]),
    ("docs: missing id", {"docs.jsonl": GOOD["docs.jsonl"] + '{"text": "a b c"}\n'},
     ["line 4", "missing field"]),
    ("docs: empty text", {"docs.jsonl": GOOD["docs.jsonl"] + _doc_line("") + "\n"},
     ["line 4", "empty text"]),
    ("docs: whitespace text", {"docs.jsonl": GOOD["docs.jsonl"] + _doc_line(" \t ") + "\n"},
     ["line 4", "empty text"]),
    ("docs: NUL bytes", {"docs.jsonl": GOOD["docs.jsonl"] + _doc_line("a\x00b") + "\n"},
     ["line 4", "binary content"]),
    ("docs: 100k-token text", {"docs.jsonl": GOOD["docs.jsonl"]
                               + _doc_line("honey " * 100_000) + "\n"},
     ["line 4", "longer than 200,000 characters"]),
    ("docs: latin-1 bytes", {"docs.jsonl": GOOD["docs.jsonl"].encode() + b'{"docno": "d9", '
                             b'"text": "caf\xe9"}\n'}, ["docs.jsonl line 4", "not valid UTF-8"]),
    ("docs: binary file", {"docs.jsonl": bytes(range(256)) * 4}, ["docs.jsonl", "UTF-8"]),
    ("docs: duplicate id", {"docs.jsonl": GOOD["docs.jsonl"] + _doc_line("again", "d0") + "\n"},
     ["duplicate document id 'd0'"]),
    ("docs: none", {"docs.jsonl": None}, ["no documents found"]),
    ("docs: only blank lines", {"docs.jsonl": "\n\n"}, ["no usable documents"]),
    ("docs tsv: wrong field count", {"docs.jsonl": None, "docs.tsv": "d0 honey keeps\n"},
     ["docs.tsv line 1", "wrong field count", "expected 2"]),
    ("queries: wrong field count", {"queries.tsv": "q1 how long does honey keep\n"},
     ["queries.tsv line 1", "wrong field count"]),
    ("queries: empty text", {"queries.tsv": GOOD["queries.tsv"] + "q3\t\n"},
     ["queries.tsv line 3", "empty text"]),
    ("queries: whitespace text", {"queries.tsv": GOOD["queries.tsv"] + "q3\t   \n"},
     ["queries.tsv line 3", "empty text"]),
    ("queries: NUL bytes", {"queries.tsv": GOOD["queries.tsv"] + "q3\tho\x00ney\n"},
     ["queries.tsv line 3", "binary content"]),
    ("queries: cp1252 bytes", {"queries.tsv": b"q1\tcaf\xe9 honey\n"},
     ["queries.tsv line 1", "not valid UTF-8"]),
    ("queries: duplicate id", {"queries.tsv": GOOD["queries.tsv"] + "q1\tagain\n"},
     ["duplicate query id 'q1'"]),
    ("queries: none", {"queries.tsv": None}, ["no queries found"]),
    ("topics: no <top>", {"queries.tsv": None, "topics.txt": "<num> 1 <title> honey\n"},
     ["topics.txt", "no <top> blocks"]),
    ("topics: block without title", {"queries.tsv": None,
                                     "topics.txt": "<top>\n<num> Number: 7\n</top>\n"},
     ["topics.txt", "lacks <num> or <title>", "topic 7"]),
    ("qrels: unknown query", {"qrels.txt": GOOD["qrels.txt"] + "q9 0 d0 1\n"},
     ["qrels name unknown query id 'q9'"]),
    ("qrels: negative grade", {"qrels.txt": GOOD["qrels.txt"] + "q2 0 d1 -1\n"},
     ["negative grade", "'q2'", "'d1'"]),
    ("qrels: NaN grade", {"qrels.txt": GOOD["qrels.txt"] + "q2 0 d1 nan\n"},
     ["qrels.txt line 4", "relevance is not an integer"]),
    ("qrels: fractional grade", {"qrels.txt": GOOD["qrels.txt"] + "q2 0 d1 0.5\n"},
     ["qrels.txt line 4", "not an integer"]),
    ("qrels: wrong field count", {"qrels.txt": GOOD["qrels.txt"] + "q2 d1 1\n"},
     ["qrels.txt line 4", "wrong field count", "expected 4"]),
    ("run: NaN score", {"run.txt": GOOD["run.txt"] + "q2 Q0 d0 2 nan bm25\n"},
     ["run.txt line 4", "score is not finite"]),
    ("run: infinite score", {"run.txt": GOOD["run.txt"] + "q2 Q0 d0 2 inf bm25\n"},
     ["run.txt line 4", "score is not finite"]),
    ("run: rank not a number", {"run.txt": GOOD["run.txt"] + "q2 Q0 d0 two 1.0 bm25\n"},
     ["run.txt line 4", "not a number"]),
    ("run: wrong field count", {"run.txt": GOOD["run.txt"] + "q2 d0 2 1.0\n"},
     ["run.txt line 4", "wrong field count"]),
    ("run: unknown query", {"run.txt": GOOD["run.txt"] + "q7 Q0 d0 1 1.0 bm25\n"},
     ["run name unknown query id 'q7'"]),
    ("beir: no qrels", {"docs.jsonl": None, "queries.tsv": None, "qrels.txt": None,
                        "run.txt": None, "corpus.jsonl": GOOD["docs.jsonl"],
                        "queries.jsonl": '{"_id": "q1", "text": "honey"}\n'},
     ["BEIR folder has no qrels/*.tsv"]),
    ("beir: grade not an integer", {"docs.jsonl": None, "queries.tsv": None, "qrels.txt": None,
                                    "run.txt": None, "corpus.jsonl": GOOD["docs.jsonl"],
                                    "queries.jsonl": '{"_id": "q1", "text": "honey"}\n',
                                    "qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td0\thigh\n"},
     ["qrels", "relevance is not an integer"]),
]


@pytest.mark.parametrize("changes, fragments", [c[1:] for c in COLLECTION_CASES],
                         ids=[c[0] for c in COLLECTION_CASES])
def test_bad_collection_files_name_what_and_where(tmp_path, changes, fragments):
    from core.data import load_folder

    folder = _folder(tmp_path, **changes)
    with pytest.raises(RankScopeError) as raised:
        load_folder(folder, strict=True)
    message = str(raised.value)
    assert all(f in message for f in fragments), message
    assert "Traceback" not in message and "\n" not in message


def test_the_good_folder_and_a_bom_load(tmp_path):
    from core.data import load_folder

    folder = _folder(tmp_path, **{"queries.tsv": "\ufeff" + GOOD["queries.tsv"]})
    collection = load_folder(folder, strict=True)
    assert collection.queries.qid.tolist() == ["q1", "q2"]  # the BOM is not part of the id
    assert len(collection.docs) == 3 and len(collection.run) == 3


def test_lenient_loading_skips_and_counts_what_strict_loading_refuses(tmp_path):
    from core.data import load_folder

    broken = GOOD["docs.jsonl"] + "{not json\n" + _doc_line("") + "\n"
    collection = load_folder(_folder(tmp_path, **{"docs.jsonl": broken}))
    assert len(collection.docs) == 3
    assert collection.skipped == {"invalid JSON": 1, "empty text": 1}


def _ranker_free_settings():
    import numpy as np

    from core.attribution import AttributionConfig, combine
    from core.extract import ExtractionConfig
    from core.agreement import AgreementConfig
    from core.analysis import registered
    from core.knockout import KnockoutConfig, NeuronAblationConfig
    from core.probing import ProbeConfig
    from core.shapley import ShapleyConfig

    return [
        ("probe: 0 folds", lambda: registered()["probe"].validate(
            ProbeConfig(features=("bm25",), folds=0)), "Folds must be at least 2"),
        ("probe: 1 fold", lambda: registered()["probe"].validate(
            ProbeConfig(features=("bm25",), folds=1)), "Folds must be at least 2"),
        ("probe: negative α", lambda: ProbeConfig(features=("bm25",), lasso_alpha=-0.1).validate(), "positive"),
        ("probe: zero α", lambda: ProbeConfig(features=("bm25",), lasso_alpha=0.0).validate(), "positive"),
        ("extract: batch size 0", lambda: ExtractionConfig(batch_size=0).validate(),
         "Batch size (--batch-size) must be at least 1"),
        ("extract: depth 0", lambda: ExtractionConfig(depth=-5).validate(),
         "Candidates per query (--depth) must be at least 1, got -5"),
        ("attribution: 1 step", lambda: AttributionConfig(steps=1).validate(), "steps"),
        ("attribution: unknown baseline", lambda: AttributionConfig(baseline="mask").validate(),
         "baseline must be"),
        ("attribution: unknown rule", lambda: AttributionConfig(rule="simpson").validate(),
         "rule must be"),
        ("set algebra: X% > 100", lambda: combine({"a": np.ones(10)}, "∩", 120), "X must be"),
        ("set algebra: X% = 0", lambda: combine({"a": np.ones(10)}, "∩", 0), "X must be"),
        ("set algebra: no scheme", lambda: combine({}, "∩", 1), "at least one scheme"),
        ("set algebra: unknown operation", lambda: combine({"a": np.ones(3)}, "∪", 1),
         "operation must be"),
        ("ablation: 0 draws", lambda: registered()["ablate"].validate(
            NeuronAblationConfig(draws=0)), "Random sets must be at least 1"),
        ("ablation: unknown mode", lambda: registered()["ablate"].validate(
            NeuronAblationConfig(mode="noise")), "Knock-out: 'noise' is not one of zero, mean"),
        ("ablation: top 200 %", lambda: registered()["ablate"].validate(
            NeuronAblationConfig(percents=(200.0,))), "Top X % must lie in"),
        ("shapley: threshold 1.5", lambda: registered()["shapley"].validate(
            ShapleyConfig(threshold=1.5)), "R² threshold"),
        ("shapley: 0 permutations", lambda: registered()["shapley"].validate(
            ShapleyConfig(permutations=0)), "Orders sampled must be at least 1"),
        ("knock-out: k = 0", lambda: registered()["knockout"].validate(KnockoutConfig(k=0)),
         "Heads knocked out (k) must be at least 1"),
        ("agreement: top 0 %", lambda: registered()["agreement"].validate(
            AgreementConfig(percent=0.0)), "Top X % must lie in"),
    ]


SETTINGS = _ranker_free_settings()


@pytest.mark.parametrize("call, fragment", [s[1:] for s in SETTINGS], ids=[s[0] for s in SETTINGS])
def test_impossible_settings_are_refused_with_the_setting_named(call, fragment):
    with pytest.raises(RankScopeError) as raised:
        call()
    assert fragment in str(raised.value), str(raised.value)


def test_store_files_that_are_not_stores(tmp_path):
    import duckdb

    from core.store import Store

    text = tmp_path / "notes.duckdb"
    text.write_text("these are my notes, not a database")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).execute("CREATE TABLE t (x INT)").close()
    old = tmp_path / "old.duckdb"
    Store(old).close()
    duckdb.connect(str(old)).execute(
        "UPDATE meta SET value = '1' WHERE name = 'schema_version'").close()
    for path, fragment in ((text, "is not a DuckDB file"), (other, "not a RankScope store"),
                           (old, "schema version 1")):
        with pytest.raises(RankScopeError) as raised:
            Store(path)
        assert fragment in str(raised.value) and str(path) in str(raised.value)
    assert text.read_text() == "these are my notes, not a database"  # left untouched
    tables = duckdb.connect(str(other)).execute("SELECT table_name FROM duckdb_tables()")
    assert [r[0] for r in tables.fetchall()] == ["t"]  # nothing of RankScope's written into it


TEXTS = [("empty", ""), ("whitespace", " \t\n "), ("binary", "ab\x00\x01cd"),
         ("100k tokens", "honey " * 100_000)]


@pytest.mark.parametrize("what", ["query", "document"])
@pytest.mark.parametrize("name, text", TEXTS, ids=[t[0] for t in TEXTS])
def test_unusable_query_or_document_texts_are_refused(what, name, text):
    from core.data import check_user_text

    with pytest.raises(RankScopeError, match=f"the {what} is unusable"):
        check_user_text(what, text)


@pytest.mark.parametrize("args, fragment", [
    (["--query", "", "--document", "honey keeps"], "the query is unusable: empty text"),
    (["--query", "honey", "--document", " \t "], "the document is unusable: empty text"),
])
def test_cli_score_refuses_unusable_text_before_loading(args, fragment):
    out = _refused_by_cli("score", "minilm-cross-encoder", args, fragment)
    assert "loading" not in out.stderr


def _refused_by_cli(command: str, ranker: str, args: list[str], fragment: str):
    """Run ``python -m core COMMAND --ranker RANKER ARGS``: exit 2, one sentence, no trace."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "core", command, "--ranker", ranker, *args],
                         capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 2 and fragment in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    return out


@pytest.mark.parametrize("args, fragment", [
    (["--precisions", "fp32", "8bit"], "8bit needs a CUDA GPU and none is visible"),
    (["--limit", "0"], "--limit must be at least 1 query"),
    (["--out", "."], "is a folder; give a file name"),
])
def test_cli_precisions_refuses_what_it_cannot_run_before_loading(args, fragment):
    import torch

    if "8bit" in args and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible: 8-bit runs")
    out = _refused_by_cli("precisions", "minilm-cross-encoder-demo", args, fragment)
    assert "scoring" not in out.stderr


# --------------------------------------------------------------------------- models
def _model_case(tmp_path: Path, case: str):
    """Build the broken model source of one case; returns a callable that loads it."""
    from core.models import ModelSpec, custom_spec, load_ranker

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    if case == "empty source":
        return lambda: custom_spec("  ", "cross-encoder")
    if case == "unknown kind":
        return lambda: custom_spec(str(folder), "bi-encoder")
    if case == "unknown precision":
        return lambda: custom_spec(str(folder), "cross-encoder", quantization="3bit")
    if case == "max length 0":
        return lambda: custom_spec(str(folder), "cross-encoder", max_length=0)
    if case == "unknown preset":
        return lambda: load_ranker("minilm-cross-encodr")
    if case == "unknown hub id offline":
        return lambda: load_ranker(custom_spec("someone/not-a-cached-model", "cross-encoder"))
    if case == "source is a file":
        return lambda: load_ranker(custom_spec(str(folder / "config.json"), "cross-encoder"))
    if case == "pickled weights only":
        (folder / "pytorch_model.bin").write_bytes(b"never unpickled")
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder"))
    (folder / "model.safetensors").write_bytes(b"{}")
    if case == "adapter without adapter_config.json":
        (tmp_path / "adapter").mkdir()
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder",
                                               adapter=str(tmp_path / "adapter")))
    if case == "pickled adapter":
        (tmp_path / "adapter").mkdir()
        (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
        (tmp_path / "adapter" / "adapter_model.bin").write_bytes(b"never unpickled")
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder",
                                               adapter=str(tmp_path / "adapter")))
    if case == "GGUF file missing":
        return lambda: load_ranker(custom_spec(str(folder), "llm-judge", gguf_file="m.gguf"))
    if case == "GGUF with bad magic":
        (folder / "m.gguf").write_bytes(b"PK\x03\x04 a zip, not a GGUF")
        return lambda: load_ranker(custom_spec(str(folder), "llm-judge", gguf_file="m.gguf"))
    if case == "truncated GGUF":
        (folder / "m.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 20)
        return lambda: load_ranker(custom_spec(str(folder), "llm-judge", gguf_file="m.gguf"))
    if case == "8-bit without CUDA":
        return lambda: load_ranker(ModelSpec("x", "cross-encoder", str(folder),
                                             quantization="8bit", device="cpu"))
    if case == "config.json not JSON":
        (folder / "config.json").write_text("{model_type: bert")
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder"))
    if case == "needs remote code":
        (folder / "config.json").write_text(
            '{"model_type": "mystery", "auto_map": {"AutoConfig": "cfg.MysteryConfig"}}')
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder"))
    if case == "weights transformers cannot read":
        return lambda: load_ranker(custom_spec(str(folder), "cross-encoder"))
    raise AssertionError(case)


MODEL_CASES = [
    ("empty source", "give a model source"),
    ("unknown kind", "unknown ranker kind 'bi-encoder'"),
    ("unknown precision", "unknown quantization '3bit'"),
    ("max length 0", "max length 0"),
    ("unknown preset", "unknown ranker 'minilm-cross-encodr'"),
    ("unknown hub id offline", "someone/not-a-cached-model"),
    ("source is a file", "is a file"),
    ("pickled weights only", "never loads pickled"),
    ("adapter without adapter_config.json", "no adapter_config.json"),
    ("pickled adapter", "pickled .bin adapters are refused"),
    ("GGUF file missing", "'m.gguf' not found"),
    ("GGUF with bad magic", "not a GGUF file"),
    ("truncated GGUF", "could not be read"),
    ("8-bit without CUDA", "needs a CUDA GPU"),
    ("config.json not JSON", "config.json is not valid JSON"),
    ("needs remote code", "Trust remote code"),
    ("weights transformers cannot read", "could not be loaded as a cross-encoder"),
]


@pytest.mark.parametrize("case, fragment", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_models_that_cannot_be_loaded_say_why(tmp_path, monkeypatch, case, fragment):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load = _model_case(tmp_path, case)
    with pytest.raises(RankScopeError) as raised:
        load()
    message = str(raised.value)
    assert fragment in message, message
    assert "Traceback" not in message


# --------------------------------------------------------------------------- uploads
def _files(**changes) -> list[tuple[str, bytes]]:
    files = {**GOOD, **changes}
    return [(name, content if isinstance(content, bytes) else content.encode())
            for name, content in files.items() if content is not None]


UPLOAD_CASES = [
    ("over the size limit", _files(**{"docs.jsonl": GOOD["docs.jsonl"] + "x" * 2048}), 0.001,
     ["MB upload limit"]),
    ("path in a file name", _files() + [("../../etc/passwd", b"x")], 1, ["not a plain file name"]),
    ("hidden file", _files() + [(".bashrc", b"x")], 1, ["not a plain file name"]),
    ("pickle", _files() + [("model.pkl", b"\x80\x04")], 1, ["unexpected file 'model.pkl'"]),
    ("zip archive", [("collection.zip", b"PK\x03\x04")], 1, ["unexpected file"]),
    ("same name twice", _files() + [("queries.tsv", b"q3\tx\n")], 1, ["queries.tsv given more"]),
    ("no files", [], 1, ["no files given"]),
    ("latin-1 queries", _files(**{"queries.tsv": "q1\tcaf\xe9 au lait\n".encode("latin-1")}), 1,
     ["queries.tsv line 1", "UTF-8"]),
    ("qrels for an unknown query", _files(**{"qrels.txt": GOOD["qrels.txt"] + "q9 0 d0 1\n"}),
     1, ["q9"]),
]


@pytest.mark.parametrize("files, limit, fragments", [c[1:] for c in UPLOAD_CASES],
                         ids=[c[0] for c in UPLOAD_CASES])
def test_bad_uploads_are_refused_and_leave_nothing(tmp_path, files, limit, fragments):
    from core.data import save_upload

    root = tmp_path / "uploads"
    with pytest.raises(RankScopeError) as raised:
        save_upload(files, root, limit)
    message = str(raised.value)
    assert all(f in message for f in fragments), message
    assert ".partial" not in message  # names the upload, not the temporary folder
    assert not root.exists() or list(root.iterdir()) == []
    assert not (tmp_path.parent / "etc").exists()


def test_a_good_upload_becomes_a_collection_once(tmp_path):
    from core.data import load_collection, save_upload

    root = tmp_path / "uploads"
    folder = save_upload(_files(), root, 1, "honey")
    assert folder == root / "honey"
    collection = load_collection(folder)
    assert collection.name == "honey" and len(collection.docs) == 3
    assert save_upload(_files(), root, 1, "honey") == folder  # the same files again: no-op
    with pytest.raises(RankScopeError, match="already exists"):
        save_upload(_files(**{"run.txt": None}), root, 1, "honey")
    with pytest.raises(RankScopeError, match="collection name"):
        save_upload(_files(), root, 1, "../honey")
    beir = save_upload([("corpus.jsonl", GOOD["docs.jsonl"].replace('"docno"', '"_id"').encode()),
                        ("queries.jsonl", b'{"_id": "q1", "text": "honey"}\n'),
                        ("test.tsv", b"query-id\tcorpus-id\tscore\nq1\td0\t1\n")], root, 1)
    assert (beir / "qrels" / "test.tsv").is_file()  # BEIR's layout, from flat uploads
    assert load_collection(beir).qrels.relevance.tolist() == [1]


# --------------------------------------------------------------------------- the same in the UI
def test_every_bad_collection_folder_shows_one_error_in_the_app(tmp_path, monkeypatch):
    """The collection table once more through the sidebar's "Add a collection folder": each
    case shows the engine's message with st.error, no exception, and the choice is unchanged."""
    from streamlit.testing.v1 import AppTest

    from core.data import load_folder

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("RANKSCOPE_STORE", str(tmp_path / "s.duckdb"))
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120).run()
    problems, refused = [], 0
    for index, (case, changes, _) in enumerate(COLLECTION_CASES):
        case_dir = tmp_path / f"case{index}"
        case_dir.mkdir()
        folder = _folder(case_dir, **changes)
        try:  # what the engine does with it: the app loads leniently
            skipped, expected = load_folder(folder).skipped, None
        except RankScopeError as error:
            skipped, expected = None, str(error)
        at.text_input(key="folder_input").set_value(str(folder))
        at.button(key="add_folder").click().run()
        errors = [e.value for e in at.sidebar.error]
        if at.exception:
            problems.append(f"{case}: exception {at.exception[0].value}")
        elif expected is None:  # loads: its bad lines must be counted (the Workspace shows them)
            if not skipped:
                problems.append(f"{case}: loads leniently with nothing counted as skipped")
            if errors:
                problems.append(f"{case}: error although it loads leniently: {errors}")
            at.session_state["collection"] = "demo"
            at.session_state["extra_collections"] = []
        elif errors != [expected]:
            problems.append(f"{case}: shown {errors}, expected [{expected}]")
        elif at.session_state["collection"] != "demo":
            problems.append(f"{case}: the refused folder became the collection")
        else:
            refused += 1
    assert not problems, "\n".join(problems)
    assert refused >= 10, refused  # whole-file problems cannot be skipped line by line
