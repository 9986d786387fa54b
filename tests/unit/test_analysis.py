"""The analysis contract (core/analysis.py): one resumable driver, one result type, generic
store tables, a CLI command and a page generated from the config — checked over every
registered analysis, and shown working for a new one registered the way README says."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import pytest

from core import analysis as contract
from core.analysis import Analysis, drive, option, register
from core.cli import build_parser, main, reproduce
from core.errors import InputError
from core.models import ModelSpec, load_ranker
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

    def units(self, ranker, collection, config):
        return [str(q) for q in collection.queries.qid[:config.queries]]

    def compute(self, ranker, collection, config, unit):
        from core.retrieval import candidate_pairs

        pairs = candidate_pairs(collection, config.depth, qids=[unit])
        return pd.DataFrame({"qid": unit, "docno": pairs.docno.astype(str),
                             "tokens": [ranker.count_tokens(t) for t in pairs[config.side]]})

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


def _small(analysis):
    """A cheap config of any registered analysis: integer fields that size the work set low."""
    config = analysis.Config()
    small = {f.name: 2 for f in dataclasses.fields(config)
             if f.name in ("queries", "depth") and isinstance(getattr(config, f.name), int)}
    return dataclasses.replace(config, **small)


def test_the_driver_skips_done_units_stops_between_units_and_reports_progress():
    seen, written, progress = [], [], []
    outputs, stopped = drive(list("abcde"), lambda i, u: seen.append(u) or u.upper(),
                             done={1}, write=lambda i, u, o: written.append((i, o)),
                             progress=lambda d, t, _: progress.append((d, t)),
                             should_stop=lambda: len(seen) == 2)
    assert stopped and seen == ["a", "c"] and outputs == ["A", "C"]
    assert written == [(0, "A"), (2, "C")]
    assert progress == [(1, 5), (2, 5)]  # unit b counted as done from the start


def test_every_registered_analysis_keeps_the_contract(example, tiny, demo, tmp_path):
    """Same inputs → identical results; stop then resume equals an uninterrupted run and
    the stored result equals the one computed without a store; the config is not mutated;
    no hook is left behind."""
    for analysis in _analyses(example):
        config = _small(analysis)
        before = dataclasses.asdict(config)
        fresh = contract.run(analysis, tiny, demo, config)
        again = contract.run(analysis, tiny, demo, config)
        pd.testing.assert_frame_equal(fresh.frame, again.frame)
        assert not fresh.stopped and fresh.done == fresh.total > 0

        store = Store(tmp_path / f"{analysis.name}.duckdb")
        calls = []
        stopped = contract.run(analysis, tiny, demo, config, store,
                               should_stop=lambda: len(calls) > 0 or calls.append(1))
        assert stopped.stopped and stopped.done == 1 < stopped.total
        resumed = contract.run(analysis, tiny, demo, config, store)
        assert not resumed.stopped and resumed.done == resumed.total
        pd.testing.assert_frame_equal(resumed.frame, fresh.frame, check_dtype=False)
        assert store.analysis_run(resumed.key)["status"] == "done"
        read_back = contract.run(analysis, tiny, demo, config, store,
                                 should_stop=lambda: pytest.fail("a finished run recomputed"))
        pd.testing.assert_frame_equal(read_back.frame, fresh.frame, check_dtype=False)
        store.close()
        assert dataclasses.asdict(config) == before
        assert tiny.hook_count() == 0, analysis.name


def test_unit_order_in_the_collection_does_not_change_a_units_rows(example, tiny, demo):
    analysis = contract.REGISTRY["doclength"]
    config = LengthConfig()
    unit = analysis.units(tiny, demo, config)[1]
    shuffled = dataclasses.replace(demo, queries=demo.queries.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(analysis.compute(tiny, demo, config, unit),
                                  analysis.compute(tiny, shuffled, config, unit))


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
    with pytest.raises(InputError, match="side 'title' is not one of document, query"):
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
