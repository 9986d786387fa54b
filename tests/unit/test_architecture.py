"""core/ never imports streamlit; only the core/models package imports transformers/peft/
bitsandbytes; nothing outside it touches a Ranker's model, tokenizer or private state."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"
MODELS = CORE / "models"


def _core_files(outside_models: bool = False) -> list[Path]:
    files = sorted(CORE.rglob("*.py"))
    return [p for p in files if not (outside_models and MODELS in p.parents)]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_never_imports_streamlit_statically():
    offenders = [p.name for p in _core_files() if "streamlit" in _imports(p)]
    assert offenders == []


def test_only_models_imports_model_frameworks():
    frameworks = {"transformers", "peft", "bitsandbytes"}
    offenders = {p.name: sorted(_imports(p) & frameworks) for p in _core_files(True)
                 if _imports(p) & frameworks}
    assert offenders == {}


def test_importing_every_core_module_does_not_load_streamlit():
    modules = [".".join(p.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__")
               for p in _core_files() if p.stem != "__main__"]
    code = ("import sys; " + "; ".join(f"import {m}" for m in modules)
            + "; print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=CORE.parent, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


ROOT = CORE.parent
SEALED = {"model", "tokenizer"}


def _ranker_names(tree: ast.AST) -> set[str]:
    """Names that hold a Ranker: ``ranker``-like names and arguments annotated ``Ranker``."""
    names = {"ranker", "judge"}
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None \
                and "Ranker" in ast.unparse(node.annotation):
            names.add(node.arg)
    return names


def ranker_seal_breaches(source: str) -> list[str]:
    """``x.model``, ``x.tokenizer`` or ``x._private`` where ``x`` holds a Ranker."""
    tree = ast.parse(source)
    names = _ranker_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        holder = owner.id if isinstance(owner, ast.Name) else \
            owner.attr if isinstance(owner, ast.Attribute) else None
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        if holder in names and (node.attr in SEALED or private):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_seal_check_catches_a_breach():
    assert ranker_seal_breaches("def f(r: Ranker):\n    return r.model.config") == \
        ["line 2: r.model"]
    assert ranker_seal_breaches("x = ranker._blocks_path + ranker.tokenizer.eos_token") == \
        ["line 1: ranker._blocks_path", "line 1: ranker.tokenizer"]
    assert ranker_seal_breaches("ranker.capture(paths); ranker.spec.name") == []


def test_nothing_outside_the_model_module_touches_a_rankers_model_or_tokenizer():
    """Analyses, pages and the UI glue go through Ranker's methods (capture, intervene,
    linear widths, pad embedding, special-token mask, token counts …); only the core/models
    package reaches into the transformers model. (Training and bench scripts build and time raw models
    on purpose and are not checked.)"""
    files = _core_files(outside_models=True)
    files += sorted((ROOT / "pages").glob("*.py")) + [ROOT / "ui.py", ROOT / "app.py"]
    breaches = {str(p.relative_to(ROOT)): found for p in files
                if (found := ranker_seal_breaches(p.read_text()))}
    assert breaches == {}


def test_every_kind_has_one_head_and_every_head_a_kind():
    from core.constants import KINDS
    from core.models import HEADS

    assert sorted(HEADS) == sorted(KINDS)


def test_every_engine_call_reports_progress_with_one_signature():
    """``progress(done, total, what)`` everywhere in core/ (a log of messages is ``log``)."""
    allowed = {"Callable[[int, int, str], None] | None", "Progress | None"}
    found = {}
    for path in _core_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg == "progress":
                        found[f"{path.name}:{node.name}"] = (ast.unparse(arg.annotation)
                                                             if arg.annotation else None)
    assert len(found) >= 8
    assert {k: v for k, v in found.items() if v not in allowed} == {}


def _sealed(monkeypatch) -> list[str]:
    """Record every read of a Ranker's model, tokenizer or private attribute made by code of
    core/ (outside core/models) or ui.py, recognised by what the value is — a Ranker — not by
    the name of the variable holding it."""
    import sys

    from core.models import Ranker

    breaches, original = [], Ranker.__getattribute__

    def checked(self, name):
        if name in SEALED or (name.startswith("_") and not name.startswith("__")):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if (caller.startswith("core.") and not caller.startswith("core.models")) \
                    or caller == "ui":
                breaches.append(f"{caller}: .{name}")
        return original(self, name)

    monkeypatch.setattr(Ranker, "__getattribute__", checked)
    return breaches


def test_the_run_time_seal_check_catches_a_renamed_variable(tiny_ce, monkeypatch):
    breaches = _sealed(monkeypatch)
    code = "def peek(thing):\n    return thing.tokenizer, thing._head\n"
    where = {"__name__": "core.an_analysis"}
    exec(compile(code, "core/an_analysis.py", "exec"), where)
    where["peek"](tiny_ce)
    assert breaches == ["core.an_analysis: .tokenizer", "core.an_analysis: ._head"]


def test_no_analysis_reaches_into_a_ranker_at_run_time(tiny_ce, tiny_bert_dir, demo, tmp_path,
                                                       monkeypatch):
    """Every registered analysis, and the study with tables of its own (probing),
    attribution, saliency and the score lens, run on a tiny ranker while the seal
    is watched: nothing outside core/models touches its model, tokenizer or private state."""
    from core import analysis as contract
    from core.attribution import AttributionConfig, attribute_collection
    from core.probing import ProbeConfig, probe_ranker
    from core.saliency import saliency
    from core.store import Store

    breaches = _sealed(monkeypatch)
    store = Store(tmp_path / "store.duckdb")
    probe_ranker(tiny_ce, demo, store, ProbeConfig(features=("stream_length", "sum_tf"),
                                                    folds=3), limit_queries=30)
    attribute_collection(tiny_ce, demo, AttributionConfig(steps=4), pairs_per_label=1,
                         store=store)
    saliency(tiny_ce, "honey", "store honey in a jar", steps=4)
    small = {"queries": 2, "depth": 4, "k": 2, "repeats": 1, "draws": 1, "percents": (1.0,),
             "threshold": 0.0, "permutations": 2, "random_groups": 2, "pairs": 2,
             "min_gap": 0.0, "correct_only": False, "doc_tokens": 10}
    for analysis in contract.registered().values():
        names = {f.name for f in __import__("dataclasses").fields(analysis.Config)}
        config = analysis.Config(**{k: v for k, v in small.items() if k in names})
        contract.run(analysis, tiny_ce, demo, config, store)
    store.close()
    assert sorted(set(breaches)) == []


def test_no_function_over_80_lines_and_no_class_over_250_outside_numba_kernels():
    """STYLE.md's room sizes, in core/, pages/ and ui.py; a numba kernel (one loop the
    compiler sees whole) is the exception."""
    root = Path(__file__).resolve().parents[2]
    files = [*root.joinpath("core").rglob("*.py"), *root.joinpath("pages").glob("*.py"),
             root / "ui.py"]
    too_long = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                continue
            size = node.end_lineno - node.lineno + 1
            numba = any("njit" in ast.unparse(d) for d in getattr(node, "decorator_list", []))
            if isinstance(node, ast.FunctionDef) and size > 80 and not numba \
                    or isinstance(node, ast.ClassDef) and size > 250:
                too_long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({size})")
    assert too_long == []
