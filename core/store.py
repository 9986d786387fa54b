"""The result store: one DuckDB file, every row keyed by a content hash of what produced it.

Layout (chosen with ``bench/store_layout.py``): one row per (run, component, layer, pooling,
pair) holding the pair's float32 vector as a BLOB. Rows are written per batch through one Arrow
insert whose binary column points at the batch's activations (no per-row Python objects), and a
layer is read back through Arrow as one binary buffer viewed as ``[n_pairs, d]`` float32. Small
blobs stay inline in DuckDB's pages; whole-batch blobs (tens of KB) went to overflow storage and
read 10–20× slower, and ARRAY/LIST columns pay a conversion on both sides (see the bench).

Transactions: a batch's activations, its scores and its completion mark are written in one
transaction, so an interrupted extraction leaves either the whole batch or nothing, and a resumed
run skips exactly the batches already marked done.

One writer per file (NOTES.md): DuckDB refuses a second process on a file another process holds.
The app owns its store; :func:`open_store` with ``fallback=True`` (the CLI) then writes to a file
of its own beside it, which the app imports with :meth:`Store.import_file`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from core.errors import StoreError

try:
    import duckdb
except ImportError:  # the compute modules import SCHEMA_VERSION from here and run without a
    duckdb = None  # store where duckdb is absent (bench/gpu_check.py on a borrowed GPU)

SCHEMA_VERSION = 2  # 2: one activation row per pair (was: per batch)
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "cache" / "rankscope.duckdb"


def content_key(what: str, *, prefix: str = "", length: int = 20, **parts) -> str:
    """The store key of a result: SHA-256 over everything that made it.

    ``what`` names the analysis; ``parts`` are its inputs (ranker spec key, collection content
    hash, the config as a dict, the analysis' own version …, anything JSON can write). The
    store schema version is always in it, so a result written under another schema is never
    found (and so never misread) under this one. Every analysis keys its results here.
    """
    import hashlib

    payload = {**parts, "what": what, "schema": SCHEMA_VERSION}
    text = json.dumps(payload, sort_keys=True, default=str)
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:length]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_key VARCHAR PRIMARY KEY, kind VARCHAR, ranker VARCHAR, ranker_key VARCHAR,
    collection VARCHAR, collection_key VARCHAR, config VARCHAR, n_pairs INTEGER,
    n_batches INTEGER, status VARCHAR, created DOUBLE, finished DOUBLE);
CREATE TABLE IF NOT EXISTS pairs (
    run_key VARCHAR, pair_index INTEGER, qid VARCHAR, docno VARCHAR, relevance INTEGER,
    bm25_rank INTEGER, PRIMARY KEY (run_key, pair_index));
CREATE TABLE IF NOT EXISTS batches (
    run_key VARCHAR, batch_index INTEGER, first_pair INTEGER, n_rows INTEGER, scores BLOB,
    seconds DOUBLE, PRIMARY KEY (run_key, batch_index));
CREATE TABLE IF NOT EXISTS activations (
    run_key VARCHAR, component VARCHAR, layer INTEGER, pooling VARCHAR, batch_index INTEGER,
    pair_index INTEGER, hook VARCHAR, dim INTEGER, data BLOB);
CREATE TABLE IF NOT EXISTS feature_sets (
    features_key VARCHAR PRIMARY KEY, run_key VARCHAR, n_pairs INTEGER, notes VARCHAR,
    created DOUBLE);
CREATE TABLE IF NOT EXISTS features (
    features_key VARCHAR, position INTEGER, feature VARCHAR, data BLOB,
    PRIMARY KEY (features_key, feature));
CREATE TABLE IF NOT EXISTS analysis_runs (
    key VARCHAR PRIMARY KEY, analysis VARCHAR, ranker VARCHAR, collection VARCHAR,
    config VARCHAR, n_units INTEGER, status VARCHAR, created DOUBLE, finished DOUBLE);
CREATE TABLE IF NOT EXISTS analysis_units (
    key VARCHAR, unit_index INTEGER, unit VARCHAR, frame BLOB, created DOUBLE,
    PRIMARY KEY (key, unit_index));
"""
# Migrations run when a store written by an earlier RankScope is opened for writing.
# result_frames held whole knock-out / neuron-ablation / Shapley tables under keys that did not
# cover their inputs (a knock-out handed another ranker's sweep found the first one's answer);
# those analyses now live in analysis_runs under keys that do, so the old tables are dropped
# (they are recomputed on demand; every other table is kept as it is).
MIGRATIONS = ("DROP TABLE IF EXISTS result_frames",)
TABLES = ("runs", "pairs", "batches", "activations")
# the columns of the tables attribution kept before the contract (read by the migration)
ATTRIBUTION_PAIR_COLUMNS = ["pair", "qid", "docno", "label", "score", "baseline_score", "delta",
                            "cut_total", "completeness_gap", "seconds"]


class _Connection:
    """The DuckDB connection, schema check and transactions every table family uses."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, read_only: bool = False):
        if duckdb is None:
            raise StoreError("the result store needs duckdb, which is not installed: "
                             "pip install -r requirements.txt")
        self.path = Path(path)
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as handle:
                head = handle.read(16)
            if b"DUCK" not in head:
                raise StoreError(f"{self.path} is not a DuckDB file; choose another store path "
                                 "or move this file away")
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise StoreLockedError(f"{self.path} is in use by another RankScope process") from None
            raise StoreError(f"{self.path} cannot be opened as a DuckDB store: "
                             f"{str(error).splitlines()[0]}") from None
        except duckdb.Error as error:
            raise StoreError(f"{self.path} cannot be opened as a DuckDB store: "
                             f"{str(error).splitlines()[0]}") from None
        self._lock = threading.Lock()
        names = {r[0] for r in self._con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchall()}
        if names and "meta" not in names:  # someone else's database: never write into it
            self._con.close()
            raise StoreError(f"{self.path} is a DuckDB file but not a RankScope store (it holds "
                             f"{len(names)} other table(s)); choose another store path")
        if not read_only:
            self._con.execute(SCHEMA)
            for table, migrate in (("attribution_runs", _migrate_attributions),
                                   ("patch_runs", _migrate_patching),
                                   ("probe_runs", _migrate_probes)):
                if table in names:  # each in one transaction: all of it or nothing
                    self._con.execute("BEGIN TRANSACTION")
                    try:
                        migrate(self._con)
                    except BaseException:
                        self._con.execute("ROLLBACK")
                        raise
                    self._con.execute("COMMIT")
            for statement in MIGRATIONS:
                self._con.execute(statement)
            self._con.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                              [str(SCHEMA_VERSION)])
        self._check_version()

    def _check_version(self) -> None:
        try:
            row = self._con.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            raise StoreError(f"{self.path} is a DuckDB file but not a RankScope store") from None
        version = int(row[0]) if row else None
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has store schema version {version}, this RankScope "
                             f"reads version {SCHEMA_VERSION}; move the file aside to start a "
                             "fresh store (results are recomputed on demand)")

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self._con.close()

    @contextlib.contextmanager
    def cursor(self):
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextlib.contextmanager
    def transaction(self):
        """A cursor inside BEGIN/COMMIT; any exception rolls the whole transaction back."""
        with self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")


class _ExtractionTables:
    """Extraction runs: pairs, batches (scores), activations; feature sets."""

    # -- runs -------------------------------------------------------------------------
    def begin_run(self, run_key: str, *, kind: str, ranker: str, ranker_key: str,
                  collection: str, collection_key: str, config: dict, pairs: pd.DataFrame,
                  n_batches: int) -> str:
        """Register a run and its pairs (idempotent). Returns its status."""
        with self.transaction() as cur:
            row = cur.execute("SELECT status FROM runs WHERE run_key = ?", [run_key]).fetchone()
            if row:
                return row[0]
            cur.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, NULL)",
                        [run_key, kind, ranker, ranker_key, collection, collection_key,
                         json.dumps(config, sort_keys=True), len(pairs), n_batches, time.time()])
            frame = pd.DataFrame({
                "run_key": run_key, "pair_index": np.arange(len(pairs), dtype=np.int32),
                "qid": pairs.qid.astype(str).to_numpy(), "docno": pairs.docno.astype(str).to_numpy(),
                "relevance": pairs.relevance.astype(np.int32).to_numpy(),
                "bm25_rank": pairs.bm25_rank.astype(np.int32).to_numpy()})
            cur.register("new_pairs", frame)
            cur.execute("INSERT INTO pairs SELECT * FROM new_pairs")
            cur.unregister("new_pairs")
        return "running"

    def done_batches(self, run_key: str) -> set[int]:
        with self.cursor() as cur:
            rows = cur.execute("SELECT batch_index FROM batches WHERE run_key = ?",
                               [run_key]).fetchall()
        return {r[0] for r in rows}

    def write_batch(self, run_key: str, batch_index: int, first_pair: int, scores: np.ndarray,
                    blocks: dict[tuple[str, int, str], tuple[str, np.ndarray]],
                    seconds: float) -> None:
        """Write one batch atomically. ``blocks``: (component, layer, pooling) → (hook, [n, d])."""
        table = _activation_rows(run_key, batch_index, first_pair, blocks)
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        with self.transaction() as cur:
            exists = cur.execute("SELECT count(*) FROM batches WHERE run_key = ? AND "
                                 "batch_index = ?", [run_key, batch_index]).fetchall()[0][0]
            if exists:
                return  # written before (a resumed run never writes a batch twice)
            if table is not None:
                cur.register("new_rows", table)
                cur.execute("INSERT INTO activations SELECT * FROM new_rows")
                cur.unregister("new_rows")
            cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                        [run_key, batch_index, first_pair, len(scores), scores.tobytes(), seconds])

    def finish_run(self, run_key: str) -> None:
        """Mark a run done and rewrite its rows layer-major, so DuckDB's zone maps let a
        one-layer read skip every other layer (rows arrive batch-major during extraction)."""
        with self.transaction() as cur:
            cur.execute("CREATE TEMP TABLE compacted AS SELECT * FROM activations WHERE "
                        "run_key = ? ORDER BY component, layer, pooling, pair_index", [run_key])
            cur.execute("DELETE FROM activations WHERE run_key = ?", [run_key])
            cur.execute("INSERT INTO activations SELECT * FROM compacted")
            cur.execute("DROP TABLE compacted")
            cur.execute("UPDATE runs SET status = 'done', finished = ? WHERE run_key = ?",
                        [time.time(), run_key])

    def runs(self) -> pd.DataFrame:
        with self.cursor() as cur:
            frame = cur.execute(
                "SELECT r.run_key, r.kind, r.ranker, r.collection, r.n_pairs, r.n_batches, "
                "coalesce(b.done, 0) AS batches_done, r.status, r.config, "
                "to_timestamp(r.created) AS created FROM runs r LEFT JOIN "
                "(SELECT run_key, count(*) AS done FROM batches GROUP BY run_key) b "
                "USING (run_key) ORDER BY r.created").df()
        return frame

    def run_info(self, run_key: str) -> dict | None:
        frame = self.runs()
        match = frame[frame.run_key == run_key]
        return None if match.empty else match.iloc[0].to_dict()

    # -- reading ----------------------------------------------------------------------
    def pairs(self, run_key: str) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute("SELECT pair_index, qid, docno, relevance, bm25_rank FROM pairs "
                               "WHERE run_key = ? ORDER BY pair_index", [run_key]).df()

    def scores(self, run_key: str) -> np.ndarray:
        """Scores of the finished batches, NaN for pairs not extracted yet ``-> [n_pairs]``."""
        with self.cursor() as cur:
            n_pairs = cur.execute("SELECT n_pairs FROM runs WHERE run_key = ?",
                                  [run_key]).fetchone()
            rows = cur.execute("SELECT first_pair, scores FROM batches WHERE run_key = ?",
                               [run_key]).fetchall()
        out = np.full(n_pairs[0] if n_pairs else 0, np.nan, dtype=np.float32)
        for first, blob in rows:
            values = np.frombuffer(blob, dtype=np.float32)
            out[first:first + len(values)] = values
        return out

    def layers(self, run_key: str) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(
                "SELECT component, layer, pooling, any_value(hook) AS hook, any_value(dim) AS dim, "
                "count(*) AS rows FROM activations WHERE run_key = ? "
                "GROUP BY ALL ORDER BY component, layer, pooling", [run_key]).df()

    def activations(self, run_key: str, component: str, layer: int, pooling: str) -> np.ndarray:
        """One layer as a contiguous float32 array ``[n_pairs_done, d]`` in pair order."""
        with self.cursor() as cur:
            table = cur.sql(  # a relation, not a DB-API result: Arrow without an extra copy
                "SELECT dim, data FROM activations WHERE run_key = ? AND component = ? "
                "AND layer = ? AND pooling = ? ORDER BY pair_index",
                params=[run_key, component, layer, pooling]).to_arrow_table()
        if table.num_rows == 0:
            raise StoreError(f"no {component} activations for layer {layer} ({pooling}) in run "
                             f"{run_key}; run the extraction first")
        dim = table.column("dim")[0].as_py()
        data = table.column("data").combine_chunks()
        offsets = np.frombuffer(data.buffers()[1], dtype=np.int32)[data.offset:data.offset + len(data) + 1]
        raw = np.frombuffer(data.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
        return raw.view(np.float32).reshape(len(data), dim).copy()

    # -- features (probing targets) ---------------------------------------------------
    def features(self, features_key: str) -> tuple[pd.DataFrame, list[str]] | None:
        """A stored feature frame (columns in stored order) and its notes, or None."""
        with self.cursor() as cur:
            meta = cur.execute("SELECT notes FROM feature_sets WHERE features_key = ?",
                               [features_key]).fetchone()
            if meta is None:
                return None
            rows = cur.execute("SELECT feature, data FROM features WHERE features_key = ? "
                               "ORDER BY position", [features_key]).fetchall()
        frame = pd.DataFrame({name: np.frombuffer(blob, dtype=np.float64) for name, blob in rows})
        return frame, json.loads(meta[0])

    def write_features(self, features_key: str, run_key: str, frame: pd.DataFrame,
                       notes: list[str]) -> None:
        """Store a feature frame in one transaction (all columns or none)."""
        with self.transaction() as cur:
            if cur.execute("SELECT count(*) FROM feature_sets WHERE features_key = ?",
                           [features_key]).fetchall()[0][0]:
                return
            for position, name in enumerate(frame.columns):
                values = np.ascontiguousarray(frame[name].to_numpy(dtype=np.float64))
                cur.execute("INSERT INTO features VALUES (?, ?, ?, ?)",
                            [features_key, position, name, values.tobytes()])
            cur.execute("INSERT INTO feature_sets VALUES (?, ?, ?, ?, ?)",
                        [features_key, run_key, len(frame), json.dumps(notes), time.time()])


class _AnalysisTables:
    """Generic tables: any :mod:`core.analysis` run and its units."""

    # -- any analysis of the contract (core.analysis): one row per run, one per unit ----
    def begin_analysis(self, key: str, *, analysis: str, ranker: str, collection: str,
                       config: dict, n_units: int) -> None:
        with self.transaction() as cur:
            cur.execute("INSERT INTO analysis_runs VALUES (?, ?, ?, ?, ?, ?, 'running', ?, NULL) "
                        "ON CONFLICT DO NOTHING",
                        [key, analysis, ranker, collection, json.dumps(config, sort_keys=True),
                         n_units, time.time()])

    def analysis_units_done(self, key: str) -> set[int]:
        with self.cursor() as cur:
            rows = cur.execute("SELECT unit_index FROM analysis_units WHERE key = ?",
                               [key]).fetchall()
        return {r[0] for r in rows}

    def write_analysis_unit(self, key: str, index: int, unit, frame: pd.DataFrame) -> None:
        """One unit's rows in one transaction (Arrow IPC: dtypes come back exactly)."""
        with self.transaction() as cur:
            cur.execute("INSERT INTO analysis_units VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [key, index, json.dumps(unit, default=str), _frame_blob(frame),
                         time.time()])

    def finish_analysis(self, key: str) -> None:
        with self.transaction() as cur:
            cur.execute("UPDATE analysis_runs SET status = 'done', finished = ? WHERE key = ?",
                        [time.time(), key])

    def analysis_run(self, key: str) -> dict | None:
        """The run's row (analysis, ranker, collection, config, n_units, status) and
        ``units_done``, or None."""
        with self.cursor() as cur:
            run = cur.execute(
                "SELECT key, analysis, ranker, collection, config, n_units, (SELECT count(*) "
                "FROM analysis_units u WHERE u.key = r.key) AS units_done, status FROM "
                "analysis_runs r WHERE key = ?", [key]).df()
        return None if run.empty else run.iloc[0].to_dict()

    def analysis_frame(self, key: str) -> pd.DataFrame:
        """Every stored unit's rows, in unit order."""
        with self.cursor() as cur:
            blobs = [r[0] for r in cur.execute("SELECT frame FROM analysis_units WHERE key = ? "
                                               "ORDER BY unit_index", [key]).fetchall()]
        frames = [pa.ipc.open_stream(pa.py_buffer(blob)).read_all().to_pandas() for blob in blobs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def latest(self, analysis: str, ranker: str, collection: str | None = None) -> str | None:
        """Key of the newest finished run of ``analysis`` of ``ranker`` (on ``collection``
        when given), or None."""
        with self.cursor() as cur:
            row = cur.execute(
                "SELECT key FROM analysis_runs WHERE status = 'done' AND analysis = ? AND "
                "ranker = ?" + (" AND collection = ?" if collection is not None else "")
                + " ORDER BY created DESC LIMIT 1",
                [analysis, ranker] + ([collection] if collection is not None else [])
            ).fetchone()
        return None if row is None else row[0]

    def finished(self, analysis: str, ranker: str) -> list[tuple[str, str, float]]:
        """(key, collection, created) of every finished run of ``analysis`` of ``ranker``,
        newest first (the runs an analysis may build on)."""
        with self.cursor() as cur:
            return cur.execute(
                "SELECT key, collection, created FROM analysis_runs WHERE status = 'done' AND "
                "analysis = ? AND ranker = ? ORDER BY created DESC", [analysis, ranker]
            ).fetchall()

    def run_row(self, analysis: str, key: str) -> dict | None:
        """``ranker``, ``collection`` and ``status`` of one stored run of ``analysis``, or None."""
        with self.cursor() as cur:
            row = cur.execute("SELECT ranker, collection, status FROM analysis_runs WHERE "
                              "key = ? AND analysis = ?", [key, analysis]).fetchone()
        return None if row is None else dict(zip(("ranker", "collection", "status"), row))

    def analysis_runs(self, analysis: str | None = None) -> pd.DataFrame:
        with self.cursor() as cur:
            return cur.execute(
                "SELECT r.key, r.analysis, r.ranker, r.collection, r.config, r.n_units, "
                "coalesce(u.done, 0) AS units_done, r.status, to_timestamp(r.created) AS created "
                "FROM analysis_runs r LEFT JOIN (SELECT key, count(*) AS done FROM analysis_units "
                "GROUP BY key) u USING (key)" + (" WHERE r.analysis = ?" if analysis else "")
                + " ORDER BY r.created", [analysis] if analysis else []).df()


class Store(_ExtractionTables, _AnalysisTables, _Connection):
    """A DuckDB result store. Thread-safe: each call works on its own cursor."""

    # -- several files ----------------------------------------------------------------
    @staticmethod
    def _import_keyed(cur, alias: str, head: str, details: tuple[str, ...], key: str,
                      finished: str) -> int:
        """Copy finished ``head`` rows (and their ``details`` rows) this store lacks."""
        if not cur.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND "
                           "table_name = ?", [alias, head]).fetchall()[0][0]:
            return 0  # written by an older RankScope without this analysis
        keys = [r[0] for r in cur.execute(
            f"SELECT {key} FROM {alias}.{head} WHERE {finished} AND {key} NOT IN "
            f"(SELECT {key} FROM {head} WHERE {finished})").fetchall()]
        for value in keys:
            for table in (head, *details):
                cur.execute(f"DELETE FROM {table} WHERE {key} = ?", [value])
                cur.execute(f"INSERT INTO {table} SELECT * FROM {alias}.{table} WHERE {key} = ?",
                            [value])
        return len(keys)

    def import_file(self, other: str | Path) -> dict[str, int]:
        """Copy runs of another store file (e.g. written by a CLI job) that this one lacks."""
        other = Path(other)
        alias = f"src_{os.getpid()}_{threading.get_ident() % 100000}"
        counts = {}
        with self.cursor() as cur:
            try:
                cur.execute(f"ATTACH '{_quote(str(other))}' AS {alias} (READ_ONLY)")
            except duckdb.Error as error:
                raise StoreError(f"{other} cannot be imported now ({str(error).splitlines()[0]}); "
                                 "is a CLI job still writing it? try again when it has finished") from None
            try:
                cur.execute("BEGIN TRANSACTION")
                new = [r[0] for r in cur.execute(
                    f"SELECT run_key FROM {alias}.runs WHERE status = 'done' AND run_key NOT IN "
                    "(SELECT run_key FROM runs WHERE status = 'done')").fetchall()]
                for key in new:
                    for table in TABLES:
                        cur.execute(f"DELETE FROM {table} WHERE run_key = ?", [key])
                        cur.execute(f"INSERT INTO {table} SELECT * FROM {alias}.{table} "
                                    "WHERE run_key = ?", [key])
                counts["runs"] = len(new)
                counts["feature sets"] = self._import_keyed(
                    cur, alias, "feature_sets", ("features",), "features_key", "TRUE")
                counts["analyses"] = self._import_keyed(
                    cur, alias, "analysis_runs", ("analysis_units",), "key", "status = 'done'")
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.execute(f"DETACH {alias}")
        return counts


def _activation_rows(run_key: str, batch_index: int, first_pair: int,
                     blocks: dict[tuple[str, int, str], tuple[str, np.ndarray]]) -> pa.Table | None:
    """One Arrow row per (block, pair); the binary column is built from the blocks' buffers."""
    if not blocks:
        return None
    columns: dict[str, list] = {k: [] for k in ("component", "layer", "pooling", "hook")}
    pair_index, dims, payload = [], [], []
    for (component, layer, pooling), (hook, array) in blocks.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        n, dim = array.shape
        for name, value in zip(columns, (component, layer, pooling, hook)):
            columns[name].append(np.full(n, value, dtype=object if isinstance(value, str) else np.int32))
        pair_index.append(np.arange(first_pair, first_pair + n, dtype=np.int32))
        dims.append(np.full(n, dim, dtype=np.int32))
        payload.append(array.reshape(-1))
    row_dims = np.concatenate(dims)
    offsets = np.zeros(len(row_dims) + 1, dtype=np.int32)
    np.cumsum(row_dims * 4, out=offsets[1:])
    data = pa.Array.from_buffers(pa.binary(), len(row_dims),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(np.concatenate(payload))])
    n_rows = len(row_dims)
    return pa.table({
        "run_key": pa.array(np.full(n_rows, run_key, dtype=object), pa.string()),
        "component": pa.array(np.concatenate(columns["component"]), pa.string()),
        "layer": pa.array(np.concatenate(columns["layer"])),
        "pooling": pa.array(np.concatenate(columns["pooling"]), pa.string()),
        "batch_index": pa.array(np.full(n_rows, batch_index, dtype=np.int32)),
        "pair_index": pa.array(np.concatenate(pair_index)),
        "hook": pa.array(np.concatenate(columns["hook"]), pa.string()),
        "dim": pa.array(row_dims),
        "data": data,
    })


def _frame_blob(frame: pd.DataFrame) -> bytes:
    """A unit's rows as an Arrow IPC stream (dtypes come back exactly)."""
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _migrate_attributions(con) -> None:
    """Attribution runs of a store written before attribution moved to the analysis contract
    (tables attribution_runs / attribution_pairs) become analysis runs of ``attribute``
    under the same keys — one unit per pair, its conductances and completeness report; then the
    old tables go (the caller holds the transaction)."""
    runs = con.execute("SELECT * FROM attribution_runs").df()
    for run in runs.itertuples(index=False):
        stored = json.loads(run.config)
        layout = stored.pop("layout")
        settings = {"pairs": stored.pop("pairs_per_label"),
                    "split": stored.pop("split") or "", **stored}
        counts = run.counts
        pairs = con.execute("SELECT * FROM attribution_pairs WHERE attr_key = ? ORDER BY "
                            "pair", [run.attr_key]).df()
        for pair in pairs.itertuples(index=False):
            row = {c: getattr(pair, c) for c in ATTRIBUTION_PAIR_COLUMNS}
            frame = pd.DataFrame([{**row, "conductances": bytes(pair.data),
                                   "layout": json.dumps(layout), "counts": counts}])
            unit = {c: row[c] for c in ("pair", "qid", "docno", "label")}
            con.execute("INSERT INTO analysis_units VALUES (?, ?, ?, ?, ?) ON CONFLICT DO "
                        "NOTHING", [run.attr_key, int(pair.pair), json.dumps(unit, default=str),
                                    _frame_blob(frame), time.time()])
        con.execute("INSERT INTO analysis_runs VALUES (?, 'attribute', ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [run.attr_key, run.ranker, run.collection,
                     json.dumps(settings, sort_keys=True), int(run.n_pairs), run.status,
                     run.created, run.finished])
    con.execute("DROP TABLE attribution_pairs")
    con.execute("DROP TABLE attribution_runs")


def _migrate_patching(con) -> None:
    """Patching sweeps of a store written before patching moved to the analysis contract
    (tables patch_runs / patch_pairs / patch_results) become analysis runs of ``patch`` under
    the same keys — one unit per candidate pair, its patched runs with the pair's fields
    beside them (:mod:`core.sweep`) — in one transaction; then the old tables go."""
    from core.patching import PatchConfig
    from core.sweep import _unit_frame

    defaults = dataclasses.asdict(PatchConfig())
    for run in con.execute("SELECT * FROM patch_runs").df().itertuples(index=False):
        stored = {**defaults, **json.loads(run.config)}
        stored.update(split=stored["split"] or "", tries=stored["tries"] or 0)
        pairs = con.execute("SELECT * FROM patch_pairs WHERE patch_key = ? ORDER BY pair",
                            [run.patch_key]).df()
        results = con.execute("SELECT * FROM patch_results WHERE patch_key = ?",
                              [run.patch_key]).df()
        for pair in pairs.to_dict("records"):
            rows = results[results.pair == pair["pair"]]
            frame = _unit_frame(pair, rows.drop(columns="patch_key"))
            unit = {c: pair[c] for c in ("pair", "qid", "positive_docno", "negative_docno")}
            con.execute("INSERT INTO analysis_units VALUES (?, ?, ?, ?, ?) ON CONFLICT DO "
                        "NOTHING", [run.patch_key, int(pair["pair"]),
                                    json.dumps(unit, default=str), _frame_blob(frame),
                                    time.time()])
        con.execute("INSERT INTO analysis_runs VALUES (?, 'patch', ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [run.patch_key, run.ranker, run.collection,
                     json.dumps(stored, sort_keys=True),
                     int(stored["tries"] or 4 * stored["pairs"]), run.status,
                     run.created, run.finished])
    for table in ("patch_results", "patch_pairs", "patch_runs"):
        con.execute(f"DROP TABLE {table}")


def _migrate_probes(con) -> None:
    """Probe sweeps of a store written before probing moved to the analysis contract (tables
    probe_runs / probe_results) become analysis runs of ``probe`` under the same keys — one
    unit per (layer, pooling), every feature's probes, with the run's notes — in one
    transaction; then the old tables go. ``limit`` / ``depth`` come from the extraction run
    the sweep read."""
    from core.probing import PROBE_COLUMNS, config_from_stored

    for run in con.execute("SELECT * FROM probe_runs").df().itertuples(index=False):
        extraction = con.execute("SELECT config FROM runs WHERE run_key = ?",
                                 [run.run_key]).fetchone()
        extraction = json.loads(extraction[0]) if extraction else {}
        config = config_from_stored(json.loads(run.config), extraction.get("limit_queries"),
                                    extraction.get("depth", 20))
        rows = con.execute("SELECT * FROM probe_results WHERE probe_key = ?",
                           [run.probe_key]).df()
        notes = run.notes if run.status == "done" and run.notes else "[]"
        n_layers = int(run.n_units) // len(config.poolings)
        for p, pooling in enumerate(config.poolings):
            for layer in range(n_layers):
                part = rows[(rows.layer == layer + 1) & (rows.pooling == pooling)]
                if part.empty:
                    continue
                frame = part[PROBE_COLUMNS].reset_index(drop=True)
                frame["notes"] = pd.Categorical([notes] * len(frame))
                con.execute("INSERT INTO analysis_units VALUES (?, ?, ?, ?, ?) ON CONFLICT "
                            "DO NOTHING", [run.probe_key, p * n_layers + layer,
                                           json.dumps({"layer": layer, "pooling": pooling}),
                                           _frame_blob(frame), time.time()])
        con.execute("INSERT INTO analysis_runs VALUES (?, 'probe', ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [run.probe_key, run.ranker, run.collection,
                     json.dumps(dataclasses.asdict(config), sort_keys=True),
                     int(run.n_units), run.status, run.created, run.finished])
    con.execute("DROP TABLE probe_results")
    con.execute("DROP TABLE probe_runs")


def _quote(text: str) -> str:
    return text.replace("'", "''")


class StoreLockedError(StoreError):
    """Another process holds the store file."""


def import_side_files(store: "Store", paths: list[Path]) -> list[tuple[Path, dict | str]]:
    """Import each CLI side file into ``store`` and delete it once its runs are in; returns
    (path, counts of what was imported) or (path, the reason it could not be, kept for later)."""
    done = []
    for path in paths:
        try:
            counts = store.import_file(path)
        except StoreError as error:
            done.append((path, str(error)))
            continue
        path.unlink(missing_ok=True)  # its runs now live in the main store
        path.with_name(path.name + ".wal").unlink(missing_ok=True)
        done.append((path, counts))
    return done


def side_files(path: str | Path = DEFAULT_PATH) -> list[Path]:
    """Store files written by CLI jobs that found the main store locked."""
    path = Path(path)
    return sorted(path.parent.glob(f"{path.stem}.cli-*.duckdb"))


def open_store(path: str | Path = DEFAULT_PATH, *, fallback: bool = False) -> tuple[Store, str | None]:
    """Open the store for writing. With ``fallback``, a locked file sends writes to a side file.

    Returns:
        (store, note) — the note says where results went when the fallback was taken.
    """
    path = Path(path)
    try:
        return Store(path), None
    except StoreLockedError:
        if not fallback:
            raise
    side = path.with_name(f"{path.stem}.cli-{os.getpid()}.duckdb")
    note = (f"{path} is open in the RankScope app, so this job writes to {side}; the app "
            "imports it (Workspace → Import CLI results)")
    return Store(side), note
