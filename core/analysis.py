"""One analysis contract: a frozen config, units, one resumable driver, one result type.

An analysis is a subclass of :class:`Analysis` registered with :func:`register`:

- ``Config``: a frozen dataclass holding every run parameter. Each field's ``metadata`` may give
  ``help`` and ``choices``; the CLI command (:mod:`core.cli.generated`) and the page form
  (``ui.analysis_form``) are built from these fields, so a parameter is declared once.
- :meth:`Analysis.units`: the independent pieces of work (a query, a pair, a layer …), each
  JSON-writable; :meth:`Analysis.compute` turns one unit into a tidy frame of rows.
- :meth:`Analysis.summarise`: the unit frames (in unit order) → the table the user reads.

:func:`run` keys the run with :func:`core.store.content_key` (ranker, collection, config,
the analysis' version and the schema version), and :func:`drive` does the rest: skip the
units already stored → compute → write each unit in one transaction → report
``progress(done, total, what)`` → stop between units when asked. A stopped run resumes at its first
missing unit; a finished one is read back without loading anything. Results live in the
store's generic ``analysis_runs`` / ``analysis_units`` tables (no store method per analysis),
and :meth:`core.store.Store.import_file` carries them from a CLI side file like any other run.

The older studies (extraction, probing, patching, attribution) drive their loops through
:func:`drive` too, with their own tables as the sink.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from core.errors import InputError
from core.store import content_key

# Every long-running engine call reports ``progress(done, total, what)``: units done, units in
# all, and what is being done ("" when there is nothing to add). One signature everywhere.
Progress = Callable[[int, int, str], None]
StopCheck = Callable[[], bool]


@dataclass
class Result:
    """What every analysis returns: its store key, its tidy table, notes for the user, whether
    it was stopped before the end, and the seconds it took in this call."""

    key: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0
    done: int = 0
    total: int = 0


def drive(units: Sequence, compute: Callable[[int, Any], Any], *, done: Iterable = (),
          write: Callable[[int, Any, Any], None] | None = None, progress: Progress | None = None,
          should_stop: StopCheck | None = None,
          enough: Callable[[], bool] | None = None) -> tuple[list, bool]:
    """The resumable loop: every unit whose index is not in ``done`` is computed and handed to
    ``write`` (which stores it in one transaction) before the next one starts.

    ``should_stop`` (the user's Stop) is polled between units and leaves a resumable run;
    ``enough`` ends the loop early as finished (e.g. patching has its usable pairs).

    Returns:
        (the outputs computed in this call, in unit order; whether ``should_stop`` ended it).
    """
    done = set(done)
    outputs, total = [], len(units)
    finished = sum(1 for i in range(total) if i in done)
    for i, unit in enumerate(units):
        if enough and enough():
            break
        if i in done:
            continue
        if should_stop and should_stop():
            return outputs, True
        if progress:
            progress(finished, total, "")
        output = compute(i, unit)
        if write is not None:
            write(i, unit, output)
        outputs.append(output)
        finished += 1
    if progress:
        progress(total, total, "")
    return outputs, False


def option(default, help: str = "", choices: Sequence | None = None, label: str = ""):
    """A config field with what the CLI flag and the page widget show."""
    metadata = {"help": help, "label": label}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def plural(unit: str) -> str:
    """``query`` → ``queries``, ``pair`` → ``pairs`` (progress and Stop messages)."""
    return unit[:-1] + "ies" if unit.endswith("y") else unit + "s"


def config_from(config_class: type, values: dict):
    """A config from plain values (a form, parsed flags, stored JSON): lists become tuples."""
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class Analysis(ABC):
    """Subclass, set the class attributes, implement :meth:`units` and :meth:`compute`."""

    name = ""  # the CLI command and the store's analysis name
    title = ""  # the page title
    summary = ""  # one line: the CLI help and the page caption
    unit = "unit"  # what one unit is, for progress and Stop messages ("query", "pair" …)
    version = 1  # bump when a change alters stored results (it is part of the key)
    Config: type = object

    @property
    def plural(self) -> str:
        return plural(self.unit)

    @abstractmethod
    def units(self, ranker, collection, config) -> list:
        """The independent pieces of work, each JSON-writable, in a fixed order."""

    @abstractmethod
    def compute(self, ranker, collection, config, unit) -> pd.DataFrame:
        """One unit's tidy rows."""

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        """The table the user reads, from all unit rows (default: the rows themselves)."""
        return frame

    def notes(self, frame: pd.DataFrame, config) -> list[str]:
        return []

    def chart(self, table: pd.DataFrame):
        """An Altair chart of the summary table for the page (None: the table only)."""
        return None

    def validate(self, config) -> None:
        """Raise :class:`InputError` with one actionable sentence for impossible settings."""
        for item in dataclasses.fields(config):
            choices = item.metadata.get("choices")
            value = getattr(config, item.name)
            values = value if isinstance(value, tuple) else (value,)
            wrong = [v for v in values if choices and v not in choices]
            if wrong:
                raise InputError(f"{item.name.replace('_', ' ')} {wrong[0]!r} is not one of "
                                 f"{', '.join(map(str, choices))}")

    def key(self, ranker, collection, config) -> str:
        return content_key(self.name, prefix=f"{self.name}-", length=16,
                           ranker=ranker.spec.key(), collection=collection.content_hash,
                           config=dataclasses.asdict(config), version=self.version)


REGISTRY: dict[str, Analysis] = {}
# modules whose import registers the analyses shipped with RankScope
BUILT_IN = ("core.lens",)


def registered() -> dict[str, Analysis]:
    """Every registered analysis, the built-in ones imported (so registered) first."""
    for module in BUILT_IN:
        importlib.import_module(module)
    return REGISTRY


def register(analysis: type[Analysis] | Analysis) -> type[Analysis] | Analysis:
    """Add an analysis to the CLI (one generated command) and to :data:`REGISTRY`; usable as
    a class decorator."""
    instance = analysis() if isinstance(analysis, type) else analysis
    if not instance.name or not dataclasses.is_dataclass(instance.Config):
        raise TypeError(f"{type(instance).__name__}: an analysis needs a name and a dataclass Config")
    REGISTRY[instance.name] = instance
    return analysis


def run(analysis: Analysis, ranker, collection, config, store=None, *,
        progress: Progress | None = None, should_stop: StopCheck | None = None) -> Result:
    """Run (or resume, or read back) ``analysis`` on ``ranker`` × ``collection``."""
    analysis.validate(config)
    started = time.perf_counter()
    key = analysis.key(ranker, collection, config)
    if store is not None:
        info = store.analysis_run(key)
        if info is not None and info["status"] == "done":
            return load(analysis, store, key, collection, config)
    units = analysis.units(ranker, collection, config)
    if not units:
        raise InputError(f"{analysis.title or analysis.name}: nothing to do — the collection "
                         "and settings select no " + analysis.plural)
    done, write = set(), None
    if store is not None:
        store.begin_analysis(key, analysis=analysis.name, ranker=ranker.spec.name,
                             collection=collection.name, config=dataclasses.asdict(config),
                             n_units=len(units))
        done = store.analysis_units_done(key)

        def write(index, unit, frame):
            store.write_analysis_unit(key, index, unit, frame)

    def compute(index, unit):
        return analysis.compute(ranker, collection, config, unit)

    frames, stopped = drive(units, compute, done=done, write=write, progress=progress,
                            should_stop=should_stop)
    if store is not None:
        if not stopped:
            store.finish_analysis(key)
        result = load(analysis, store, key, collection, config)
    else:
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        table = analysis.summarise(frame, collection, config) if len(frame) else frame
        result = Result(key, table, analysis.notes(frame, config), stopped, 0.0,
                        len(frames), len(units))
    result.stopped = stopped
    result.seconds = time.perf_counter() - started
    return result


def load(analysis: Analysis, store, key: str, collection, config) -> Result | None:
    """A stored run read back (finished or stopped), or None when there is none."""
    info = store.analysis_run(key)
    if info is None:
        return None
    frame = store.analysis_frame(key)
    table = analysis.summarise(frame, collection, config) if len(frame) else frame
    return Result(key, table, analysis.notes(frame, config), info["status"] != "done", 0.0,
                  info["units_done"], info["n_units"])
