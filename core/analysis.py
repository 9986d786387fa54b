"""One analysis contract: a frozen config, units, one resumable driver, one result type.

An analysis is a subclass of :class:`Analysis` registered with :func:`register`:

- ``Config``: a frozen dataclass holding every run parameter. Each field's ``metadata`` may give
  ``help`` and ``choices``; the CLI command (:mod:`core.cli.generated`) and the page form
  (``ui.analysis_form``) are built from these fields, so a parameter is declared once.
- :meth:`Analysis.units`: the independent pieces of work (a query, a pair, a layer …), each
  JSON-writable; :meth:`Analysis.compute` turns one unit into a tidy frame of rows. Both receive
  one :class:`Job`: the ranker, the collection, the config, the stored runs it builds on and a
  scratch dict its units share.
- An analysis that builds on another's stored run (the knock-out on a patching sweep, the
  neuron ablation on an attribution run …) names that run in a config field declared with
  ``option(..., builds_on="patch")``. The field holds the run's store key; left empty it means
  the newest finished run of this ranker on this collection, and :func:`prepare` writes the
  key it found into the config before the run is keyed — so the key covers every input, and
  what the analysis reads (``job.inputs[field]``) is exactly the run its key names.
- :meth:`Analysis.summarise`: the unit frames (in unit order) → the table the user reads.

:func:`run` keys the run with :func:`core.store.content_key` (ranker, collection, config,
the analysis' version and the schema version), and :func:`drive` does the rest: skip the
units already stored → compute → write each unit in one transaction → report
``progress(done, total, what)`` → stop between units when asked. A stopped run resumes at its first
missing unit; a finished one is read back without loading anything. Results live in the
store's generic ``analysis_runs`` / ``analysis_units`` tables (no store method per analysis),
and :meth:`core.store.Store.import_file` carries them from a CLI side file like any other run.

Extraction is not an analysis but data: its batches are the store's activation tables, read by
probing and the score lens; probing runs it as the preparatory stage of its :meth:`units`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
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
    rows: pd.DataFrame | None = None  # every unit's rows, before summarise


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


def option(default, help: str = "", choices: Sequence | None = None, label: str = "", *,
           minimum: float | None = None, builds_on: str = "", same_collection: bool = True,
           optional: bool = False, multiline: bool = False):
    """A config field with what the CLI flag and the page widget show.

    ``minimum``: the smallest value allowed (checked by :meth:`Analysis.validate`, the page's
    number input starts there).

    ``builds_on`` makes the field name a stored run of that analysis (its key; ``""`` = the
    newest finished one of this ranker on this collection). ``same_collection``: the run must
    have been made on the collection this analysis runs on. ``optional``: with no such run
    (or the value ``none``) the analysis goes on without it. ``multiline``: a tuple of free
    texts that may hold spaces (one per line on the page, one quoted argument each in the
    CLI)."""
    metadata = {"help": help, "label": label, "multiline": multiline}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if minimum is not None:
        metadata["minimum"] = minimum
    if builds_on:
        metadata.update(builds_on=builds_on, same_collection=same_collection, optional=optional)
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def plural(unit: str) -> str:
    """``query`` → ``queries``, ``batch`` → ``batches``, ``pair`` → ``pairs`` (progress and
    Stop messages)."""
    if unit.endswith("y") and unit[-2:-1] not in "aeiou":
        return unit[:-1] + "ies"
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def config_from(config_class: type, values: dict):
    """A config from plain values (a form, parsed flags, stored JSON): lists become tuples."""
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class Stopped(Exception):
    """Raised from :meth:`Analysis.units` when the user's Stop ends a preparatory stage (an
    extraction the units read): the run returns stopped, with nothing of its own stored."""


@dataclass
class Job:
    """What one run's units are computed from.

    Attributes:
        ranker / collection / config: the run's inputs (the config with every ``builds_on``
            field resolved to a store key).
        inputs: ``builds_on`` field → the stored run it names (see :func:`stored_input`), or
            None for an optional run left out.
        memo: scratch space shared by this run's units (candidate pairs, reference means …);
            never part of the result.
        store: the run's store (None for a run kept in memory), for an analysis that reads
            data the store holds (probing reads extracted activations).
        progress / should_stop: the run's, for a preparatory stage in :meth:`Analysis.units`
            (which raises :class:`Stopped` when stopped).
    """

    ranker: Any
    collection: Any
    config: Any
    inputs: dict = field(default_factory=dict)
    memo: dict = field(default_factory=dict)
    store: Any = None
    progress: Progress | None = None
    should_stop: StopCheck | None = None

    def cached(self, name: str, make: Callable[[], Any]) -> Any:
        """``memo[name]``, made once per run."""
        if name not in self.memo:
            self.memo[name] = make()
        return self.memo[name]


def upstream_fields(config_class: type) -> list[dataclasses.Field]:
    """The config's fields that name another analysis' stored run."""
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("builds_on")]


def stored_input(store, analysis: str, key: str):
    """The stored run ``key`` of ``analysis`` as the analyses that build on it read it:
    ``patch`` → :class:`core.sweep.PatchResult`, ``probe`` → its result rows,
    ``attribute`` → :class:`core.attribution.AttributionResult`, any analysis of the
    contract → its :class:`Result`."""
    if analysis == "patch":
        from core.sweep import load_patching

        return load_patching(store, key)
    if analysis == "probe":  # its table (layer, pooling, feature, estimator, r2_mean …)
        stored = registered()["probe"]
        info = store.analysis_run(key)
        return load(stored, store, key, None,
                    config_from(stored.Config, json.loads(info["config"]))).frame
    if analysis == "attribute":
        from core.attribution import load_attribution

        return load_attribution(store, key)
    info = store.analysis_run(key)
    stored = registered()[analysis]
    return load(stored, store, key, None, config_from(stored.Config, json.loads(info["config"])))


def _command(analysis: str, ranker, collection) -> str:
    return f"python -m core {analysis} --ranker {ranker.spec.name} --collection {collection.name}"


def prepare(analysis: "Analysis", ranker, collection, config, store,
            given: dict | None = None) -> Job:
    """The run's :class:`Job`: every ``builds_on`` field resolved to the key of a finished
    stored run (checked: same ranker, same collection where required) and that run read.

    Raises:
        InputError: a run that does not exist, is unfinished, or was made with another ranker
            or on another collection — saying which run and how to make one.
    """
    inputs, resolved = dict(given or {}), {}
    for item in upstream_fields(type(config)):
        if item.name in inputs:
            continue
        source, value = item.metadata["builds_on"], str(getattr(config, item.name) or "")
        optional = item.metadata["optional"]
        label = item.metadata.get("label") or item.name.replace("_", " ")
        if value.lower() == "none" and optional:
            resolved[item.name], inputs[item.name] = "none", None
            continue
        if store is None:
            raise InputError(f"{analysis.title} builds on a stored {source} run: give it a store")
        if not value:
            value = store.latest(source, ranker.spec.name, collection.name)
            if value is None:
                if optional:
                    resolved[item.name], inputs[item.name] = "none", None
                    continue
                raise InputError(f"{analysis.title} builds on a {source} run of "
                                 f"{ranker.spec.name} on {collection.name}, and the store holds "
                                 f"none: run `{_command(source, ranker, collection)}` (or its "
                                 "page) first")
        row = store.run_row(source, value)
        if row is None:
            raise InputError(f"{label}: the store holds no {source} run {value!r}; leave it "
                             f"empty for the newest, or run `{_command(source, ranker, collection)}`")
        if row["status"] != "done":
            raise InputError(f"{label}: {source} run {value} is unfinished; run its command "
                             "again to finish it first")
        if row["ranker"] != ranker.spec.name:
            raise InputError(f"{label}: {source} run {value} was made with {row['ranker']}, "
                             f"not {ranker.spec.name}; pick a run of this ranker")
        if item.metadata["same_collection"] and row["collection"] != collection.name:
            raise InputError(f"{label}: {source} run {value} was made on {row['collection']}, "
                             f"not {collection.name}; pick a run on this collection")
        resolved[item.name], inputs[item.name] = value, stored_input(store, source, value)
    return Job(ranker, collection, dataclasses.replace(config, **resolved), inputs, store=store)


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
    def units(self, job: Job) -> list:
        """The independent pieces of work, each JSON-writable, in a fixed order. Settings that
        depend on the ranker (a head count …) are checked here: an :class:`InputError` raised
        here leaves nothing in the store."""

    @abstractmethod
    def compute(self, job: Job, unit) -> pd.DataFrame:
        """One unit's tidy rows."""

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        """The table the user reads, from all unit rows (default: the rows themselves)."""
        return frame

    def notes(self, frame: pd.DataFrame, config) -> list[str]:
        return []

    def charts(self, result: Result) -> dict:
        """name → Altair chart of a result, for the page, the CLI's figures and the zip
        (empty: the table only)."""
        return {}

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        """The table as the page shows it (rounded, combined columns); the CSV keeps all."""
        return table

    def enough(self, job: Job, frames: list[pd.DataFrame]) -> bool:
        """Whether the units stored so far (``frames``, in unit order) already make a
        finished run, so the rest are not computed (patching stops once it has its usable
        pairs). Default: every unit is needed."""
        return False

    def validate(self, config) -> None:
        """Raise :class:`InputError` with one actionable sentence for impossible settings,
        naming the field by the label the page shows."""
        for item in dataclasses.fields(config):
            choices = item.metadata.get("choices")
            value = getattr(config, item.name)
            label = item.metadata.get("label") or item.name.replace("_", " ")
            values = value if isinstance(value, tuple) else (value,)
            wrong = [v for v in values if choices and v not in choices]
            if wrong:
                raise InputError(f"{label}: {wrong[0]!r} is not one of "
                                 f"{', '.join(map(str, choices))}")
            minimum = item.metadata.get("minimum")
            if minimum is not None and any(v < minimum for v in values):
                raise InputError(f"{label} must be at least {minimum}, got {value}")

    def key(self, ranker, collection, config) -> str:
        return content_key(self.name, prefix=f"{self.name}-", length=16,
                           ranker=ranker.spec.key(), collection=collection.content_hash,
                           config=dataclasses.asdict(config), version=self.version)


REGISTRY: dict[str, Analysis] = {}
# modules whose import registers the analyses shipped with RankScope
BUILT_IN = ("core.lens", "core.probing", "core.sweep", "core.attribution", "core.knockout", "core.shapley",
            "core.agreement")


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
        progress: Progress | None = None, should_stop: StopCheck | None = None,
        inputs: dict | None = None) -> Result:
    """Run (or resume, or read back) ``analysis`` on ``ranker`` × ``collection``.

    ``inputs`` hands in what ``builds_on`` fields would read from the store (a probe table, an
    attribution result …) for a run kept in memory — a worked example or a test; the key
    cannot cover such inputs, so a run with them is never stored."""
    if inputs and store is not None:
        raise ValueError("a run given its inputs in memory cannot be stored: its key would not "
                         "cover them")
    analysis.validate(config)
    started = time.perf_counter()
    job = prepare(analysis, ranker, collection, config, store, inputs)
    job.progress, job.should_stop = progress, should_stop
    config = job.config
    key = analysis.key(ranker, collection, config)
    if store is not None:
        info = store.analysis_run(key)
        if info is not None and info["status"] == "done":
            return load(analysis, store, key, collection, config)
    try:
        units = analysis.units(job)
    except Stopped:
        return Result(key, pd.DataFrame(), [], True, time.perf_counter() - started)
    if not units:
        raise InputError(f"{analysis.title or analysis.name}: nothing to do — the collection "
                         "and settings select no " + analysis.plural)
    done, write, seen = set(), None, []
    if store is not None:
        store.begin_analysis(key, analysis=analysis.name, ranker=ranker.spec.name,
                             collection=collection.name, config=dataclasses.asdict(config),
                             n_units=len(units))
        done = store.analysis_units_done(key)
        if done and type(analysis).enough is not Analysis.enough:
            seen.append(store.analysis_frame(key))

        def write(index, unit, frame):
            store.write_analysis_unit(key, index, unit, frame)

    def compute(index, unit):
        frame = analysis.compute(job, unit)
        seen.append(frame)
        return frame

    frames, stopped = drive(units, compute, done=done, write=write, progress=progress,
                            should_stop=should_stop, enough=lambda: analysis.enough(job, seen))
    if store is not None:
        if not stopped:
            store.finish_analysis(key)
        result = load(analysis, store, key, collection, config)
    else:
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        table = analysis.summarise(frame, collection, config) if len(frame) else frame
        result = Result(key, table, analysis.notes(frame, config), stopped, 0.0,
                        len(frames), len(units), frame)
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
                  info["units_done"], info["n_units"], frame)
