"""`python -m core models`: the presets and whether each is installed."""

from __future__ import annotations

from pathlib import Path

from core.errors import RankScopeError

NAME = "models"
HELP = "list rankers: name, kind, installed, source"


def arguments(p) -> None:
    pass


def run(args) -> int:
    from core.models import PRESETS, resolve_adapter, resolve_source

    print(f"{'name':26} {'kind':14} {'installed':10} source")
    for name, spec in PRESETS.items():
        installed = "hub"  # hub presets load when online or cached; not probed here
        local = spec.source.startswith("pypi:")  # embedded: a PyPI body + a committed adapter
        if local:
            try:
                resolve_source(spec)
                resolve_adapter(spec)
                installed = "yes"
            except RankScopeError:
                installed = "no"
        adapter = Path(spec.adapter).name if local and spec.adapter else spec.adapter
        source = spec.source + (f" + {adapter}" if adapter else "")
        print(f"{name:26} {spec.kind:14} {installed:10} {source}")
    return 0
