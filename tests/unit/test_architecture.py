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
