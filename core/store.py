"""The result store: one DuckDB file, every row keyed by a content hash of what produced it.

Layout (chosen with ``bench/store_layout.py``): activations are kept as one float32 BLOB per
(run, component, layer, pooling, batch) — a ``[n_rows, d]`` block in C order. Reading a layer
back is one indexed scan over a few dozen rows and a ``np.frombuffer`` per block, close to the
raw ``.npy`` floor, while a row per pair (ARRAY/LIST/BLOB) pays per-row costs on both sides.

Transactions: a batch's activations, its scores and its completion mark are written in one
transaction, so an interrupted extraction leaves either the whole batch or nothing, and a resumed
run skips exactly the batches already marked done.

One writer per file (NOTES.md): DuckDB refuses a second process on a file another process holds.
The app owns its store; :func:`open_store` with ``fallback=True`` (the CLI) then writes to a file
of its own beside it, which the app imports with :meth:`Store.import_file`.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from core.errors import StoreError

SCHEMA_VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "cache" / "rankscope.duckdb"

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
    hook VARCHAR, n_rows INTEGER, dim INTEGER, data BLOB,
    PRIMARY KEY (run_key, component, layer, pooling, batch_index));
"""
TABLES = ("runs", "pairs", "batches", "activations")
ACTIVATION_TYPES = {"run_key": pa.string(), "component": pa.string(), "layer": pa.int32(),
                    "pooling": pa.string(), "batch_index": pa.int32(), "hook": pa.string(),
                    "n_rows": pa.int32(), "dim": pa.int32(), "data": pa.binary()}
ACTIVATION_COLUMNS = tuple(ACTIVATION_TYPES)


class Store:
    """A DuckDB result store. Thread-safe: each call works on its own cursor."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, read_only: bool = False):
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
        if not read_only:
            self._con.execute(SCHEMA)
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
        columns: dict[str, list] = {name: [] for name in ACTIVATION_COLUMNS}
        for (component, layer, pooling), (hook, array) in blocks.items():
            array = np.ascontiguousarray(array, dtype=np.float32)
            for name, value in zip(ACTIVATION_COLUMNS, (
                    run_key, component, layer, pooling, batch_index, hook, array.shape[0],
                    array.shape[1], array.tobytes())):
                columns[name].append(value)
        # One Arrow insert per batch: ≈2× faster than executemany over the same rows.
        table = pa.table({name: pa.array(values, type=ACTIVATION_TYPES[name])
                          for name, values in columns.items()})
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        with self.transaction() as cur:
            if blocks:
                cur.register("new_blocks", table)
                cur.execute("INSERT INTO activations SELECT * FROM new_blocks ON CONFLICT DO NOTHING")
                cur.unregister("new_blocks")
            cur.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        [run_key, batch_index, first_pair, len(scores), scores.tobytes(), seconds])

    def finish_run(self, run_key: str) -> None:
        with self.cursor() as cur:
            cur.execute("UPDATE runs SET status = 'done', finished = ? WHERE run_key = ?",
                        [time.time(), run_key])

    def delete_run(self, run_key: str) -> None:
        with self.transaction() as cur:
            for table in TABLES:
                cur.execute(f"DELETE FROM {table} WHERE run_key = ?", [run_key])

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
                "sum(n_rows) AS rows FROM activations WHERE run_key = ? "
                "GROUP BY ALL ORDER BY component, layer, pooling", [run_key]).df()

    def activations(self, run_key: str, component: str, layer: int, pooling: str) -> np.ndarray:
        """One layer as a contiguous float32 array ``[n_rows_done, d]`` in pair order."""
        with self.cursor() as cur:
            rows = cur.execute(
                "SELECT n_rows, dim, data FROM activations WHERE run_key = ? AND component = ? "
                "AND layer = ? AND pooling = ? ORDER BY batch_index",
                [run_key, component, layer, pooling]).fetchall()
        if not rows:
            raise StoreError(f"no {component} activations for layer {layer} ({pooling}) in run "
                             f"{run_key}; run the extraction first")
        dim = rows[0][1]
        out = np.empty((sum(r[0] for r in rows), dim), dtype=np.float32)
        position = 0
        for n_rows, _, blob in rows:
            out[position:position + n_rows] = np.frombuffer(blob, dtype=np.float32).reshape(n_rows, dim)
            position += n_rows
        return out

    # -- several files ----------------------------------------------------------------
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
                cur.execute("COMMIT")
                counts["runs"] = len(new)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.execute(f"DETACH {alias}")
        return counts


def _quote(text: str) -> str:
    return text.replace("'", "''")


class StoreLockedError(StoreError):
    """Another process holds the store file."""


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
