"""The analysis contract (core/analysis.py): one resumable driver, one result type, generic
store tables, a CLI command and a page generated from the config — checked over every
registered analysis, and shown working for a new one registered the way README says."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pandas as pd
import pytest

from core import analysis as contract
from core.analysis import Analysis, drive, option, register
from core.cli import build_parser, main, reproduce
from core.errors import InputError
from core.store import Store


@dataclass(frozen=True)
class LengthConfig:
    depth: int = option(5, "candidates per query")
    queries: int = option(3, "queries")
    side: str = option("document", "which text is counted", choices=("document", "query"))


class DocumentLength(Analysis):
    """The worked example of README's "add an analysis": tokens per candidate text."""

    name = "doclength"
    title = "Document length"
    summary = "tokens per candidate, per query"
    unit = "query"
    Config = LengthConfig

    def units(self, job):
        return [str(q) for q in job.collection.queries.qid[:job.config.queries]]

    def compute(self, job, unit):
        from core.retrieval import candidate_pairs

        pairs = candidate_pairs(job.collection, job.config.depth, qids=[unit])
        return pd.DataFrame({"qid": unit, "docno": pairs.docno.astype(str),
                             "tokens": [job.ranker.count_tokens(t) for t in pairs[job.config.side]]})

    def summarise(self, frame, collection, config):
        return frame.groupby("qid", sort=False, as_index=False).tokens.mean()


@pytest.fixture(scope="module")
def example():
    register(DocumentLength)
    yield contract.REGISTRY["doclength"]
    contract.REGISTRY.pop("doclength")


@pytest.fixture(scope="module")
def tiny(tiny_ce):
    return tiny_ce


def _analyses(example):
    return list(contract.registered().values())  # the built-in ones and the example


# Settings that keep each analysis cheap on the tiny models (the rest are the defaults).
SMALL = {"queries": 2, "depth": 2, "k": 2, "repeats": 1, "draws": 2, "percents": (1.0,),
         "threshold": 0.0, "permutations": 4, "random_groups": 3, "pairs": 1, "steps": 6}


def _small(analysis):
    """A cheap config of any registered analysis."""
    config = analysis.Config()
    names = {f.name for f in dataclasses.fields(config)}
    small = {k: v for k, v in SMALL.items() if k in names}
    if analysis.name == "shapley":
        small["depth"] = 4
    if analysis.name == "probe":  # a few features of the first 30 queries
        small.update(features=("stream_length", "sum_tf"), folds=3, limit=30)
    if analysis.name == "patch":  # two usable pairs on a random-weight model
        small.update(pairs=2, depth=4, min_gap=0.0, correct_only=False, doc_tokens=10,
                     attention_scores=False)
    return dataclasses.replace(config, **small)


@pytest.fixture(scope="module")
def upstream(tiny, demo, tmp_path_factory):
    """A store holding what the building-on analyses read: a probe run, a patching sweep and
    an attribution run of the tiny cross-encoder on the demo collection (closed: copy it)."""
    from core.attribution import AttributionConfig, attribute_collection
    from core.patching import PatchConfig
    from core.sweep import run_patching
    from core.probing import ProbeConfig, probe_ranker

    path = tmp_path_factory.mktemp("upstream") / "store.duckdb"
    store = Store(path)
    probe_ranker(tiny, demo, store, ProbeConfig(features=("stream_length", "sum_tf"), folds=3),
                 limit_queries=30)
    run_patching(tiny, demo, PatchConfig(pairs=2, min_gap=0.0, correct_only=False,
                                         doc_tokens=10, attention_scores=False), store)
    attribute_collection(tiny, demo, AttributionConfig(steps=4), pairs_per_label=1, store=store)
    store.close()
    return path


def _store_from(upstream, path):
    import shutil

    shutil.copy(upstream, path)
    return Store(path)


def _units_stored(store) -> int:
    with store.cursor() as cur:
        return cur.execute("SELECT count(*) FROM analysis_units").fetchone()[0]


def test_the_driver_skips_done_units_stops_between_units_and_reports_progress():
    seen, written, progress = [], [], []
    outputs, stopped = drive(list("abcde"), lambda i, u: seen.append(u) or u.upper(),
                             done={1}, write=lambda i, u, o: written.append((i, o)),
                             progress=lambda d, t, _: progress.append((d, t)),
                             should_stop=lambda: len(seen) == 2)
    assert stopped and seen == ["a", "c"] and outputs == ["A", "C"]
    assert written == [(0, "A"), (2, "C")]
    assert progress == [(1, 5), (2, 5)]  # unit b counted as done from the start


def test_every_registered_analysis_keeps_the_contract(example, tiny, demo, upstream, tmp_path):
    """Same inputs → identical results; stop then resume equals an uninterrupted run; a
    finished run is read back, never recomputed; the config is not mutated; no hook is left
    behind — for every registered analysis (built-in and the README example)."""
    names = [a.name for a in _analyses(example)]
    assert len(names) >= 9 and {"lens", "probe", "patch", "attribute", "baselines", "knockout", "ablate",
                                "shapley", "agreement"} <= set(names)
    for analysis in _analyses(example):
        config = _small(analysis)
        before = dataclasses.asdict(config)
        stores = [_store_from(upstream, tmp_path / f"{analysis.name}-{i}.duckdb") for i in range(3)]
        fresh = contract.run(analysis, tiny, demo, config, stores[0])
        again = contract.run(analysis, tiny, demo, config, stores[1])
        pd.testing.assert_frame_equal(fresh.frame, again.frame)
        assert not fresh.stopped and fresh.done > 0, analysis.name
        # every unit is computed unless the analysis had enough before (patching's pairs)
        assert fresh.done == fresh.total or analysis.enough(contract.Job(tiny, demo, config),
                                                            [fresh.rows]), analysis.name

        before_stop = _units_stored(stores[2])  # Stop as soon as one unit of this run is in
        stopped = contract.run(analysis, tiny, demo, config, stores[2],
                               should_stop=lambda: _units_stored(stores[2]) > before_stop)
        if stopped.total > 1:
            assert stopped.stopped and stopped.done == 1, analysis.name
        resumed = contract.run(analysis, tiny, demo, config, stores[2])
        assert not resumed.stopped and resumed.done == fresh.done
        pd.testing.assert_frame_equal(resumed.frame, fresh.frame, check_dtype=False)
        assert stores[2].analysis_run(resumed.key)["status"] == "done"
        read_back = contract.run(analysis, tiny, demo, config, stores[2],
                                 should_stop=lambda: pytest.fail("a finished run recomputed"))
        pd.testing.assert_frame_equal(read_back.frame, fresh.frame, check_dtype=False)
        for store in stores:
            store.close()
        assert dataclasses.asdict(config) == before
        assert tiny.hook_count() == 0, analysis.name


def test_an_analysis_that_builds_on_a_run_names_it_in_its_key(tiny, demo, upstream, tmp_path):
    """'' resolves to the newest run and the key holds that run's key; a run that does not
    exist, or was made on another collection, is refused with one sentence."""
    from core.patching import PatchConfig
    from core.sweep import run_patching

    knockout = contract.registered()["knockout"]
    store = _store_from(upstream, tmp_path / "store.duckdb")
    config = _small(knockout)
    first = contract.run(knockout, tiny, demo, config, store)
    named = json.loads(store.analysis_run(first.key)["config"])["patch"]
    assert named == store.latest("patch", tiny.spec.name, demo.name)
    other = run_patching(tiny, demo, PatchConfig(pairs=2, min_gap=0.0, correct_only=False,
                                                 doc_tokens=12, attention_scores=False), store)
    second = contract.run(knockout, tiny, demo, config, store)  # now the newest sweep
    assert json.loads(store.analysis_run(second.key)["config"])["patch"] == other.key
    assert second.key != first.key
    explicit = contract.run(knockout, tiny, demo, dataclasses.replace(config, patch=named), store)
    assert explicit.key == first.key  # naming the run explicitly finds the same answer
    with pytest.raises(InputError, match="holds no patch run 'patch-nope'"):
        contract.run(knockout, tiny, demo, dataclasses.replace(config, patch="patch-nope"), store)
    elsewhere = dataclasses.replace(demo, name="demo-copy")
    with pytest.raises(InputError, match="made on demo, not demo-copy"):
        contract.run(knockout, tiny, elsewhere, dataclasses.replace(config, patch=named), store)
    with pytest.raises(InputError, match="holds none: run `python -m core attribute"):
        contract.run(contract.registered()["ablate"], tiny, elsewhere, _small(
            contract.registered()["ablate"]), store)
    store.close()


def test_unit_order_in_the_collection_does_not_change_a_units_rows(example, tiny, demo):
    analysis = contract.REGISTRY["doclength"]
    config = LengthConfig()
    unit = analysis.units(contract.Job(tiny, demo, config))[1]
    shuffled = dataclasses.replace(demo, queries=demo.queries.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(analysis.compute(contract.Job(tiny, demo, config), unit),
                                  analysis.compute(contract.Job(tiny, shuffled, config), unit))


def test_a_registered_analysis_gets_a_cli_command_from_its_config(example, tiny_bert_dir,
                                                                   tmp_path, capsys):
    parser = build_parser()
    args = parser.parse_args(["doclength", "--ranker", str(tiny_bert_dir), "--kind",
                              "cross-encoder", "--queries", "2", "--side", "query"])
    assert (args.depth, args.queries, args.side) == (5, 2, "query")
    with pytest.raises(SystemExit):  # choices come from the field
        parser.parse_args(["doclength", "--ranker", "x", "--side", "title"])
    out = tmp_path / "lengths.csv"
    argv = ["doclength", "--ranker", str(tiny_bert_dir), "--kind", "cross-encoder",
            "--queries", "2", "--store", str(tmp_path / "s.duckdb"), "--out", str(out)]
    assert main(argv) == 0
    table = pd.read_csv(out, dtype={"qid": str})
    assert len(table) == 2 and set(table.columns) == {"qid", "tokens"}
    line = reproduce("doclength", ranker="r", queries=2, side="query")
    assert line == "python -m core doclength --ranker r --queries 2 --side query"
    assert main(argv[:-2] + ["--queries", "0"]) == 2  # bad config: one line, no traceback
    assert "error:" in capsys.readouterr().err


def test_config_choices_are_checked_before_anything_runs(example, tiny, demo):
    with pytest.raises(InputError, match="side: 'title' is not one of document, query"):
        contract.run(contract.REGISTRY["doclength"], tiny, demo, LengthConfig(side="title"))


def test_a_cli_side_file_carries_analysis_runs_into_the_main_store(example, tiny, demo,
                                                                   tmp_path):
    side = Store(tmp_path / "side.duckdb")
    result = contract.run(contract.REGISTRY["doclength"], tiny, demo, LengthConfig(), side)
    side.close()
    main_store = Store(tmp_path / "main.duckdb")
    assert main_store.import_file(tmp_path / "side.duckdb")["analyses"] == 1
    pd.testing.assert_frame_equal(
        contract.load(contract.REGISTRY["doclength"], main_store, result.key, demo,
                      LengthConfig()).frame, result.frame, check_dtype=False)


# what every generated command adds to its config's fields: the ranker's flags, the
# collection, the store and the CSV output
SHARED_FLAGS = {"help", "ranker", "quantization", "kind", "adapter", "gguf_file", "max_length",
                "trust_remote_code", "collection", "store", "out"}


def test_every_registered_analysis_takes_exactly_its_configs_flags(example):
    """A parameter is declared once: each command's flags are its config's fields plus the
    shared ones — no flag it would ignore, none missing."""
    import argparse

    from core.cli import commands

    for analysis in _analyses(example):
        parser = argparse.ArgumentParser()
        commands()[analysis.name].arguments(parser)
        flags = {action.dest for action in parser._actions}
        fields = {f.name for f in dataclasses.fields(analysis.Config)}
        assert flags == fields | SHARED_FLAGS, analysis.name


def test_document_order_changes_no_units_rows(example, tiny, demo, upstream, tmp_path):
    """For every registered analysis: the same collection with its documents in another
    order gives the same units and the same rows for a unit (scikit-learn's order check).
    Probing is the exception, by design of its input: it reads the extraction of the
    collection's BM25 top-k, and bm25s breaks score ties by document position, so a
    reordered demo collection (many tied template sentences) has other candidates — its
    content hash differs too, so it is another extraction, never a wrong stored one."""
    shuffled = dataclasses.replace(
        demo, docs=demo.docs.sample(frac=1.0, random_state=3).reset_index(drop=True))
    store = _store_from(upstream, tmp_path / "store.duckdb")
    for analysis in [a for a in _analyses(example) if a.name != "probe"]:
        config = _small(analysis)
        job = contract.prepare(analysis, tiny, demo, config, store)
        other = contract.prepare(analysis, tiny, shuffled, config, store)
        units = analysis.units(job)
        assert analysis.units(other) == units, analysis.name
        rows, again = analysis.compute(job, units[-1]), analysis.compute(other, units[-1])
        pd.testing.assert_frame_equal(rows.drop(columns="seconds", errors="ignore"),
                                      again.drop(columns="seconds", errors="ignore"),
                                      obj=analysis.name)
    store.close()


def test_cli_progress_piped_to_a_file_is_plain_lines_one_per_tenth_and_the_end():
    """Redirected output (a log file, a pipe) gets readable lines, not carriage-return
    redraws; each stage counts in its own units and its end is printed once."""
    import io

    from core.cli.common import progress_bar

    out = io.StringIO()  # not a terminal
    update = progress_bar("probe", "unit", stream=out)
    for done in range(0, 41):
        update(done, 40, "extract")
    for done in range(0, 26):
        update(done, 25)
    update(25, 25)  # a repeated final call prints nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    extract = [line for line in lines if line.startswith("probe (extract): ")]
    units = [line for line in lines if line.startswith("probe: ")]
    assert len(extract) == 11 and len(units) == 11, lines  # 0 %, each tenth, 100 % once
    assert extract[0].startswith("probe (extract): 0 of 40 (0%")
    assert extract[-1].startswith("probe (extract): 40 of 40 (100%")
    assert units[-1].startswith("probe: 25 of 25 units (100%")
