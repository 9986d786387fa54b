"""What every command shares: the ranker and collection flags, loading them, the store, the
progress bar, ``--out`` checks."""

from __future__ import annotations

import sys
from pathlib import Path

from core.constants import KINDS, QUANTIZATIONS
from core.errors import InputError, RankScopeError  # noqa: F401 - re-exported to commands

COLLECTION_HELP = ("demo, cranfield, trec-dl-2019 … trec-dl-2022 (when beside the project), a "
                   "folder, or irds:<id>")


def add_ranker(p, *, required: bool = True, default: str | None = None,
               help: str = "preset name (see `models`), or a hub id / local folder with --kind",
               aliases: tuple[str, ...] = ()) -> None:
    """``--ranker`` (and its aliases), ``--quantization``, and the flags of a model that is not
    a preset."""
    p.add_argument("--ranker", *aliases, required=required, default=default, help=help)
    p.add_argument("--quantization", choices=QUANTIZATIONS)
    custom = p.add_argument_group("a model that is not a preset (--ranker is its hub id "
                                  "or folder)")
    custom.add_argument("--kind", choices=KINDS)
    custom.add_argument("--adapter", help="peft LoRA adapter folder or hub id, merged in")
    custom.add_argument("--gguf-file", help="GGUF file inside the folder / repository")
    custom.add_argument("--max-length", type=int, default=256, help="tokens per input")
    custom.add_argument("--trust-remote-code", action="store_true",
                        help="run the repository's own Python code (off by default; only "
                             "for authors you trust: it runs with your permissions)")


CANDIDATE_FLAGS = ("limit", "depth", "batch_size", "split")


def add_collection(p, *, flags: tuple[str, ...] = CANDIDATE_FLAGS, split: str | None = None,
                   split_help: str = "only queries of this split (demo: test)", depth: int = 20,
                   depth_help: str = "candidates per query: the run's top-k, else BM25's") -> None:
    """``--collection``, ``--store`` and those of the candidate flags (``--limit``,
    ``--depth``, ``--batch-size``, ``--split``) the command uses — a command never accepts a
    flag it would ignore."""
    from core.store import DEFAULT_PATH

    unknown = set(flags) - set(CANDIDATE_FLAGS)
    if unknown:
        raise ValueError(f"unknown candidate flags {sorted(unknown)}")
    p.add_argument("--collection", default="demo", help=COLLECTION_HELP)
    if "limit" in flags:
        p.add_argument("--limit", type=int, default=None, help="first N queries only")
    if "depth" in flags:
        p.add_argument("--depth", type=int, default=depth, help=f"{depth_help} (default {depth})")
    if "batch_size" in flags:
        p.add_argument("--batch-size", type=int, default=20, help="pairs per forward pass")
    if "split" in flags:
        p.add_argument("--split", default=split, help=split_help)
    p.add_argument("--store", default=str(DEFAULT_PATH), help="DuckDB store file")


TEST_SPLIT = {"split": "test", "split_help": "queries of this split (default test; '' for all)"}


def progress_bar(description: str, unit: str = "batch", stream=None):
    """A ``progress(done, total, what)`` callback drawing a tqdm bar on stderr; a stage named
    in ``what`` (an analysis' preparatory extraction …; not the bar's own unit) gets a bar of
    its own, counted in its own units. When stderr is not a terminal (piped to a file, a
    job's log) it prints plain lines instead — the first update, each further tenth of the
    total (or a minute since the last line) and the end — never carriage-return redraws."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return _progress_lines(description, unit, stream)
    from tqdm import tqdm

    bars: dict[str, object] = {}

    def update(done: int, total: int, what: str = "") -> None:
        what = "" if what == unit else what
        if what not in bars:
            label = f"{description} ({what})" if what else description
            bars[what] = tqdm(total=total, initial=0, desc=label, unit="" if what else unit,
                              file=stream)
        bar = bars[what]
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


PLAIN_EVERY_S = 60.0  # a plain progress line at least this often while work advances


def _progress_lines(description: str, unit: str, stream):
    """``progress_bar`` for a pipe: one line per tenth of the work, per minute, and at the
    end, each naming the stage, done / total and the elapsed time."""
    import time

    from core.analysis import plural

    start = time.monotonic()
    last: dict[str, tuple[int, float]] = {}  # stage → (tenth printed, when)

    def update(done: int, total: int, what: str = "") -> None:
        what = "" if what == unit else what
        now = time.monotonic()
        tenth = 10 * done // max(total, 1)
        seen = last.get(what)
        if seen is not None and done < total and tenth == seen[0] \
                and now - seen[1] < PLAIN_EVERY_S:
            return
        if seen is not None and done >= total and seen[0] > 10:
            return  # the end was printed
        last[what] = (11 if done >= total else tenth, now)
        label = f"{description} ({what})" if what else description
        units = "" if what else f" {plural(unit)}"
        print(f"{label}: {done} of {total}{units} ({100 * done / max(total, 1):.0f}%, "
              f"{now - start:.0f} s)", file=stream, flush=True)

    return update


def ranker_spec(args, name: str | None = None):
    """The ranker asked for: a preset, or (with ``--kind``) a hub id or local folder."""
    from dataclasses import replace

    from core.models import PRESETS, custom_spec, get_spec

    name = name or args.ranker
    custom = getattr(args, "kind", None)
    if name in PRESETS and not custom:
        spec = get_spec(name)
        if getattr(args, "trust_remote_code", False):
            raise InputError("--trust-remote-code applies to a hub id or folder given with "
                             "--kind, not to a preset (no preset needs remote code)")
    elif custom:
        spec = custom_spec(name, custom, adapter=args.adapter, gguf_file=args.gguf_file,
                           trust_remote_code=args.trust_remote_code, name=name,
                           max_length=args.max_length)
    else:
        spec = get_spec(name)  # unknown name: the message lists presets and --kind
    if getattr(args, "quantization", None):
        spec = replace(spec, quantization=args.quantization)
    return spec


def load(args):
    """The ranker (and collection, when the command has one) the flags name."""
    from core.data import load_collection
    from core.models import load_ranker

    spec = ranker_spec(args)
    collection = load_collection(args.collection) if getattr(args, "collection", None) else None
    if collection is not None and collection.skipped:
        skipped = ", ".join(f"{n} × {k}" for k, n in collection.skipped.items())
        print(f"note: {collection.name}: skipped lines: {skipped}", file=sys.stderr)
    print(f"loading {spec.name} ({spec.quantization}) …", file=sys.stderr)
    ranker = load_ranker(spec, log=lambda m: print(m, file=sys.stderr))
    return ranker, collection


def out_file(value: str, example: str) -> Path:
    """The ``--out`` path, refused when it names a folder (before any work starts)."""
    out = Path(value)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / example}")
    return out


def store_for(args):
    """The ``--store`` file, or a side file beside it when the app holds it (said on stderr)."""
    from core.store import open_store

    store, note = open_store(args.store, fallback=True)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return store


def stored_key(store, analysis: str, ranker: str, collection: str | None, command: str) -> str:
    """The newest finished run of ``analysis``, or an error naming the command that makes one."""
    key = store.latest(analysis, ranker, collection)
    if key is None:
        where = f" on {collection}" if collection else ""
        raise InputError(f"the store {store.path} holds no finished {analysis} run of {ranker}"
                         f"{where}; run `python -m core {command}` first")
    return key
