"""Which activation layout to store: write time, size, and read-back of one layer.

    python bench/store_layout.py [--pairs 5000 --layers 31 --dim 576 --batch 20]

All layouts hold the same float32 activations ``[pairs, layers, dim]`` (random, shaped like the
SmolLM2 residual stream of the demo collection) and are timed in this one process:
  - npy: one raw ``.npy`` memmap per layer (the floor; not transactional, not keyed);
  - array: DuckDB fixed-size ``FLOAT[dim]`` ARRAY, one row per (pair, layer);
  - list: DuckDB ``FLOAT[]`` LIST, one row per (pair, layer);
  - blob_row: DuckDB BLOB of one pair's float32 vector per row;
  - blob_batch: DuckDB BLOB of a whole ``[batch, dim]`` block per (layer, batch);
  - store: RankScope's layout (a BLOB row per pair, Arrow in and out), through
    ``core.store.Store`` itself, transactions and all;
  - parquet: one Parquet file, layer-major, one row group per layer, read through DuckDB.
Reads return one layer as a contiguous float32 ``[pairs, dim]`` array. Ratios are against npy.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa


from core.store import Store  # noqa: E402


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def arrow_fixed(block: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), block.shape[1])


def run(pairs: int, layers: int, dim: int, batch: int, root: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((layers, pairs, dim), dtype=np.float32)
    read_layer = layers // 2
    results = []

    # npy floor
    path = root / "npy"
    path.mkdir()
    t = time.perf_counter()
    for layer in range(layers):
        mm = np.lib.format.open_memmap(path / f"{layer}.npy", "w+", np.float32, (pairs, dim))
        mm[:] = data[layer]
        mm.flush()
        del mm
    write = time.perf_counter() - t
    t = time.perf_counter()
    out = np.ascontiguousarray(np.load(path / f"{read_layer}.npy", mmap_mode="r"))
    read = time.perf_counter() - t
    assert np.array_equal(out, data[read_layer])
    results.append({"layout": "npy", "write_s": write, "size_mb": folder_size(path) / 2**20,
                    "read_ms": read * 1e3})

    # one row per (pair, layer): ARRAY, LIST, BLOB
    for layout in ("array", "list", "blob_row", "blob_batch"):
        db = root / f"{layout}.duckdb"
        con = duckdb.connect(str(db))
        column = {"array": f"FLOAT[{dim}]", "list": "FLOAT[]", "blob_row": "BLOB",
                  "blob_batch": "BLOB"}[layout]
        con.execute(f"CREATE TABLE act (layer INTEGER, pair INTEGER, vec {column})")
        t = time.perf_counter()
        for layer in range(layers):
            for start in range(0, pairs, batch):
                block = data[layer, start:start + batch]
                idx = np.arange(start, start + len(block), dtype=np.int32)
                if layout == "blob_batch":
                    block, idx = block[None], idx[:1]
                if layout in ("blob_row", "blob_batch"):
                    vec = pa.array([row.tobytes() for row in block], type=pa.binary())
                elif layout == "array":
                    vec = arrow_fixed(block)
                else:
                    vec = pa.ListArray.from_arrays(pa.array(np.arange(0, block.size + 1, dim,
                                                                      dtype=np.int32)),
                                                   pa.array(block.reshape(-1)))
                table = pa.table({"layer": pa.array(np.full(len(block), layer, np.int32)),
                                  "pair": pa.array(idx), "vec": vec})
                con.execute("BEGIN")
                con.register("t", table)
                con.execute("INSERT INTO act SELECT * FROM t")
                con.unregister("t")
                con.execute("COMMIT")
        write = time.perf_counter() - t
        con.execute("CHECKPOINT")
        t = time.perf_counter()
        if layout in ("blob_row", "blob_batch"):
            rows = con.execute("SELECT vec FROM act WHERE layer = ? ORDER BY pair",
                               [read_layer]).fetchall()
            out = np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float32).reshape(pairs, dim)
        else:
            table = con.sql(f"SELECT vec FROM act WHERE layer = {read_layer} ORDER BY pair"
                            ).to_arrow_table()
            values = table.column("vec").combine_chunks().flatten().to_numpy()
            out = np.ascontiguousarray(values, dtype=np.float32).reshape(pairs, dim)
        read = time.perf_counter() - t
        assert np.array_equal(out, data[read_layer])
        con.close()
        results.append({"layout": layout, "write_s": write, "size_mb": folder_size(db) / 2**20,
                        "read_ms": read * 1e3})

    # RankScope's layout, through the real Store code path
    db = root / "store.duckdb"
    store = Store(db)
    t = time.perf_counter()
    for batch_index, start in enumerate(range(0, pairs, batch)):
        blocks = {("resid", layer, "mean"): (f"layers.{layer}", data[layer, start:start + batch])
                  for layer in range(layers)}
        store.write_batch("bench", batch_index, start, np.zeros(min(batch, pairs - start)),
                          blocks, 0.0)
    store.finish_run("bench")  # as extract() does: the run's rows are rewritten layer-major
    write = time.perf_counter() - t
    t = time.perf_counter()
    out = store.activations("bench", "resid", read_layer, "mean")
    read = time.perf_counter() - t
    assert np.array_equal(out, data[read_layer])
    store.close()
    results.append({"layout": "store (RankScope)", "write_s": write,
                    "size_mb": folder_size(db) / 2**20, "read_ms": read * 1e3})

    # Parquet, layer-major, one row group per layer
    pq_path = root / "act.parquet"
    con = duckdb.connect()
    t = time.perf_counter()
    table = pa.table({"layer": pa.array(np.repeat(np.arange(layers, dtype=np.int32), pairs)),
                      "pair": pa.array(np.tile(np.arange(pairs, dtype=np.int32), layers)),
                      "vec": arrow_fixed(data.reshape(-1, dim))})
    con.register("t", table)
    con.execute(f"COPY (SELECT * FROM t) TO '{pq_path}' (FORMAT parquet, COMPRESSION "
                f"uncompressed, ROW_GROUP_SIZE {pairs})")
    write = time.perf_counter() - t
    t = time.perf_counter()
    table = con.sql(f"SELECT vec FROM '{pq_path}' WHERE layer = {read_layer} ORDER BY pair"
                    ).to_arrow_table()
    out = np.ascontiguousarray(table.column("vec").combine_chunks().flatten().to_numpy(),
                               dtype=np.float32).reshape(pairs, dim)
    read = time.perf_counter() - t
    assert np.array_equal(out, data[read_layer])
    results.append({"layout": "parquet", "write_s": write, "size_mb": folder_size(pq_path) / 2**20,
                    "read_ms": read * 1e3})
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=31)
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--batch", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rankscope-layout-"))
    try:
        results = run(args.pairs, args.layers, args.dim, args.batch, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor = results[0]
    print(f"{args.pairs} pairs x {args.layers} layers x {args.dim} float32 "
          f"({args.pairs * args.layers * args.dim * 4 / 2**20:.0f} MiB), batches of {args.batch}")
    print(f"{'layout':24} {'write s':>8} {'x npy':>7} {'MiB':>7} {'read ms':>8} {'x npy':>7}")
    for r in results:
        print(f"{r['layout']:24} {r['write_s']:8.2f} {r['write_s'] / floor['write_s']:7.1f} "
              f"{r['size_mb']:7.0f} {r['read_ms']:8.1f} {r['read_ms'] / floor['read_ms']:7.1f}")
    ours = results[-2]
    others = [r for r in results[1:] if r is not ours]
    print(f"RESULT store_read_vs_npy={ours['read_ms'] / floor['read_ms']:.2f}")
    print(f"RESULT store_write_vs_npy={ours['write_s'] / floor['write_s']:.2f}")
    print(f"RESULT store_read_vs_best_other_duckdb_or_parquet="
          f"{ours['read_ms'] / min(r['read_ms'] for r in others):.2f}")


if __name__ == "__main__":
    main()
