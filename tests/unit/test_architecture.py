"""core/ never imports streamlit; only core/models.py imports transformers/peft/bitsandbytes."""

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core"


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
    offenders = [p.name for p in CORE.glob("*.py") if "streamlit" in _imports(p)]
    assert offenders == []


def test_only_models_imports_model_frameworks():
    frameworks = {"transformers", "peft", "bitsandbytes"}
    offenders = {p.name: sorted(_imports(p) & frameworks) for p in CORE.glob("*.py")
                 if p.name != "models.py" and _imports(p) & frameworks}
    assert offenders == {}


def test_importing_every_core_module_does_not_load_streamlit():
    modules = [f"core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__main__"]
    code = ("import sys; " + "; ".join(f"import {m}" for m in modules)
            + "; print('streamlit' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=CORE.parent, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
