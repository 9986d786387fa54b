"""Probe sweep: RankScope's Lasso probes vs scikit-learn's Lasso looped per feature and fold.

    python bench/probe_sweep.py [--ranker minilm-cross-encoder] [--queries 120]
                                [--threads N] [--solver working_set|batched]

Both sides fit the same problems in this process, on the same real activations of an embedded
ranker (extracted into the store once, then reused; ``python -m core probe`` with the same
``--limit`` leaves the same extraction there): every layer × every available IR feature × 5
folds, Lasso α = 0.1 on each feature's balanced probing set (the study's protocol,
``core.probing``). The baseline is the naive loop the study's code would run:
``sklearn.linear_model.Lasso(alpha=0.1).fit`` per layer, feature and fold on the design arrays
RankScope builds (building them is not timed for the baseline), once on float64 copies and once
on the float32 arrays themselves (scikit-learn then fits in float32, faster). RankScope's side
is timed from the layer's activations to the test R² of every fold model, everything
included (``working_set``: ``core.solvers``, the CPU default; ``batched``: the torch solver, the
CUDA default, with its design arrays). Test R² of every fold model is compared with both loops.
Ridge (α = 1) is timed the same way against ``sklearn.linear_model.Ridge``.

``--threads`` caps BLAS and torch threads on RankScope's side (scikit-learn's coordinate
descent is single-threaded either way). Prints ``RESULT probe_speedup=<x>`` (against the
faster of the two loops), ``RESULT probe_speedup_float64=<x>``,
``RESULT probe_max_abs_r2_diff=<d>`` (against the float64 loop) and the ridge figures.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import load_collection  # noqa: E402
from core.extract import ExtractionConfig, extract  # noqa: E402
from core.features import FEATURES, stored_features  # noqa: E402
from core.models import load_ranker  # noqa: E402
from core.probing import ProbeConfig, _r2, build_design, make_plan  # noqa: E402
from core.solvers import compile_kernels, fit_lasso, fit_ridge, solve_layer  # noqa: E402
from core.store import DEFAULT_PATH, Store  # noqa: E402


def sklearn_loop(design, estimator_factory, dtype=np.float64):
    """Fit one scikit-learn model per (feature, fold): test R² ``[F, K]``, seconds and the
    coordinate-descent sweeps of each fit (``n_iter_``; None for ridge)."""
    from sklearn.metrics import r2_score

    X = design.X.cpu().numpy().astype(dtype)
    y = design.y.cpu().numpy().astype(dtype)
    train, test = design.train.cpu().numpy(), design.test.cpu().numpy()
    r2 = np.zeros(train.shape[:2])
    sweeps = []
    started = time.perf_counter()
    for f in range(train.shape[0]):
        for k in range(train.shape[1]):
            model = estimator_factory().fit(X[f][train[f, k]], y[f][train[f, k]])
            r2[f, k] = r2_score(y[f][test[f]], model.predict(X[f][test[f]]))
            sweeps.append(getattr(model, "n_iter_", None))
    return r2, time.perf_counter() - started, sweeps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="minilm-cross-encoder")
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--pooling", default="mean", choices=["mean", "max"])
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="BLAS and torch threads on RankScope's side (all cores)")
    parser.add_argument("--solver", default="working_set", choices=["working_set", "batched"])
    parser.add_argument("--store", default=str(DEFAULT_PATH),
                        help="store with (or for) the extraction; the app's store by default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # sklearn ConvergenceWarnings on hard problems

    from sklearn.linear_model import Lasso, Ridge
    from threadpoolctl import threadpool_limits

    ranker = load_ranker(args.ranker)
    collection = load_collection(args.collection)
    store = Store(args.store)
    extraction = ExtractionConfig(limit_queries=args.queries)
    run = extract(ranker, collection, extraction, store)
    features, _, notes = stored_features(store, collection, extraction, run.run_key)
    config = ProbeConfig(features=tuple(f for f in FEATURES if f in features))
    plan = make_plan(features[list(config.features)], config)
    print(f"{args.ranker} on {collection.name}: {run.n_pairs} pairs, {ranker.n_layers} layers, "
          f"{len(plan.names)} features probed ({', '.join(plan.skipped) or 'none'} skipped: "
          f"too little spread), set sizes {min(map(len, plan.rows))}–{max(map(len, plan.rows))}, "
          f"{config.folds} folds, torch threads {args.threads}")
    started = time.perf_counter()
    compile_kernels()  # once per process (numba's on-disk cache); not part of the sweep
    print(f"numba kernels ready in {time.perf_counter() - started:.2f}s (untimed)")
    totals = {"ours_lasso": 0.0, "sk_lasso": 0.0, "sk32_lasso": 0.0, "ours_ridge": 0.0,
              "sk_ridge": 0.0}
    max_diff = {"lasso": 0.0, "lasso32": 0.0, "ridge": 0.0}
    rounds, sweeps = [], []

    def ours_lasso(acts):
        if args.solver == "batched":
            design = build_design(acts, plan, config.folds)
            coef, intercept = fit_lasso(design.X, design.y, design.train, config.lasso_alpha,
                                        config.tol)
            return _r2(design, coef, intercept, design.test)[0].double().numpy()
        fit = solve_layer(acts, plan.lasso_problems(len(acts), config.folds), config.lasso_alpha)
        rounds.append(fit.rounds)
        return fit.r2_test

    def ours_ridge(acts):
        design = build_design(acts, plan, config.folds)
        coef, intercept = fit_ridge(design.X, design.y, design.train, config.ridge_alpha)
        return _r2(design, coef, intercept, design.test)[0].double().numpy()

    for layer in range(ranker.n_layers):
        acts = store.activations(run.run_key, "resid", layer, args.pooling)
        design = build_design(acts, plan, config.folds)
        for name, ours, reference in (("lasso", ours_lasso, lambda: Lasso(config.lasso_alpha)),
                                      ("ridge", ours_ridge, lambda: Ridge(config.ridge_alpha))):
            # numpy's BLAS only on the working-set path: limiting torch's bundled OpenBLAS
            # through threadpoolctl breaks its LU solves (torch threads are set above)
            with threadpool_limits(args.threads if ours is ours_lasso and
                                   args.solver == "working_set" else None):
                started = time.perf_counter()
                r2 = ours(acts)
                totals[f"ours_{name}"] += time.perf_counter() - started
            theirs, seconds, fits_sweeps = sklearn_loop(design, reference)
            totals[f"sk_{name}"] += seconds
            if name == "lasso":
                sweeps += fits_sweeps
            max_diff[name] = max(max_diff[name], float(np.abs(r2 - theirs).max()))
            if name == "lasso":
                theirs, seconds, _ = sklearn_loop(design, reference, np.float32)
                totals["sk32_lasso"] += seconds
                max_diff["lasso32"] = max(max_diff["lasso32"], float(np.abs(r2 - theirs).max()))
        print(f"  layer {layer + 1:2d}: RankScope lasso {totals['ours_lasso']:7.2f}s  sklearn "
              f"lasso {totals['sk_lasso']:7.2f}s (float64) {totals['sk32_lasso']:7.2f}s "
              f"(float32)  (cumulative)", flush=True)
    fits = ranker.n_layers * len(plan.names) * config.folds
    print(f"{fits} Lasso fits: RankScope ({args.solver}, {args.threads} thread(s)) "
          f"{totals['ours_lasso']:.2f}s, sklearn loop {totals['sk_lasso']:.2f}s (float64), "
          f"{totals['sk32_lasso']:.2f}s (float32)"
          + f"; scikit-learn's sweeps per fit: median {np.median(sweeps):.0f}, max {max(sweeps)}"
          + (f"; working-set rounds per layer {min(rounds)}–{max(rounds)}" if rounds else "")
          + f"; ridge: RankScope {totals['ours_ridge']:.2f}s, sklearn loop "
          f"{totals['sk_ridge']:.2f}s")
    fastest = min(totals["sk_lasso"], totals["sk32_lasso"])
    print(f"RESULT probe_speedup={fastest / totals['ours_lasso']:.2f}")
    print(f"RESULT probe_speedup_float64={totals['sk_lasso'] / totals['ours_lasso']:.2f}")
    print(f"RESULT probe_max_abs_r2_diff={max_diff['lasso']:.2e}")
    print(f"RESULT probe_max_abs_r2_diff_float32={max_diff['lasso32']:.2e}")
    print(f"RESULT ridge_speedup={totals['sk_ridge'] / totals['ours_ridge']:.2f}")
    print(f"RESULT ridge_max_abs_r2_diff={max_diff['ridge']:.2e}")


if __name__ == "__main__":
    main()
