"""One command per registered analysis (:mod:`core.analysis`), built from its config: every
config field becomes a flag (type, default, choices and help from the field), plus the
ranker, ``--collection``, ``--store`` and ``--out``. Nothing here knows any analysis."""

from __future__ import annotations

import dataclasses
import sys
import typing
from types import SimpleNamespace

from core.cli.common import COLLECTION_HELP, add_ranker, load, out_file, progress_bar, store_for


def commands() -> list[SimpleNamespace]:
    from core.analysis import registered

    return [command_for(analysis) for analysis in registered().values()]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(p, item: dataclasses.Field, kind) -> None:
    default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
    help_text = item.metadata.get("help", "").replace("%", "%%")  # argparse formats help
    choices = item.metadata.get("choices")
    if kind is bool:
        if default:
            p.add_argument(_flag("no_" + item.name), dest=item.name, action="store_false",
                           help=f"turn off: {help_text}")
        else:
            p.add_argument(_flag(item.name), action="store_true", help=help_text)
        return
    if typing.get_origin(kind) is tuple:
        inner = typing.get_args(kind)[0]
        p.add_argument(_flag(item.name), nargs="*", type=inner, default=list(default),
                       choices=choices, help=help_text)
        return
    p.add_argument(_flag(item.name), type=kind, default=default, choices=choices,
                   help=f"{help_text} (default {default!r})" if help_text else None)


def command_for(analysis) -> SimpleNamespace:
    """The command of one analysis: ``NAME``, ``HELP``, ``STOPPED``, ``arguments``, ``run``."""
    from core.store import DEFAULT_PATH

    hints = typing.get_type_hints(analysis.Config)
    fields = dataclasses.fields(analysis.Config)

    def arguments(p) -> None:
        add_ranker(p)
        p.add_argument("--collection", default="demo", help=COLLECTION_HELP)
        p.add_argument("--store", default=str(DEFAULT_PATH), help="DuckDB store file")
        for item in fields:
            _add_field(p, item, hints[item.name])
        p.add_argument("--out", default=None, help="also write the table as CSV")

    def config_of(args):
        from core.analysis import config_from

        return config_from(analysis.Config, {item.name: getattr(args, item.name)
                                             for item in fields})

    def run(args) -> int:
        from core.analysis import run as run_analysis

        out = out_file(args.out, f"{analysis.name}.csv") if args.out else None
        config = config_of(args)
        analysis.validate(config)  # before the model loads: bad settings fail at once
        ranker, collection = load(args)
        store = store_for(args)
        try:
            result = run_analysis(analysis, ranker, collection, config, store,
                                  progress=progress_bar(analysis.name, analysis.unit))
        finally:
            store.close()
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"{analysis.title or analysis.name}: {ranker.spec.name} on {collection.name} "
              f"({result.done} of {result.total} {analysis.plural}; key {result.key}; "
              f"{result.seconds:.1f} s)")
        print(analysis.display(result.frame).to_string(index=False,
                                                       float_format=lambda v: f"{v:.4f}"))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            result.frame.to_csv(out, index=False)
            print(f"→ {out}")
            if result.rows is not None and len(result.rows) and not result.rows.equals(result.frame):
                rows = out.with_name(f"{out.stem}-units.csv")
                binary = [c for c in result.rows if len(result.rows) and
                          isinstance(result.rows[c].iloc[0], bytes)]  # e.g. conductances
                result.rows.drop(columns=binary).to_csv(rows, index=False)  # per pair …
                print(f"→ {rows}")
        return 0

    return SimpleNamespace(
        NAME=analysis.name, HELP=(analysis.summary or analysis.title).replace("%", "%%"), run=run,
        arguments=arguments, config_of=config_of,
        STOPPED=f"finished {analysis.plural} are saved; run the same command again to resume")
