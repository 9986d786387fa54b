"""Probe sweep: RankScope's batched probes vs scikit-learn looped per feature and fold.

    python bench/probe_sweep.py [--ranker minilm-cross-encoder] [--queries 120] [--threads 1]

Both sides fit the same problems in this process, on the same real activations of an embedded
ranker (extracted into the store once, then reused; ``python -m core probe`` with the same
``--limit`` leaves the same extraction there): every layer × every available
IR feature × 5 folds, Lasso α = 0.1 on each feature's balanced probing set (the study's
protocol, ``core.probing``). The baseline is the naive loop the study's code would run:
``sklearn.linear_model.Lasso(alpha=0.1).fit`` per layer, feature and fold, on the design arrays
RankScope builds (building them is timed on RankScope's side only). Test R² of every fold
model is compared. Ridge (α = 1) is timed the same way against ``sklearn.linear_model.Ridge``.

Prints ``RESULT probe_speedup=<x>``, ``RESULT probe_max_abs_r2_diff=<d>`` and
``RESULT ridge_speedup=<x>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data import load_collection  # noqa: E402
from core.extract import ExtractionConfig, extract  # noqa: E402
from core.features import FEATURES  # noqa: E402
from core.models import load_ranker  # noqa: E402
from core.probing import (ProbeConfig, _r2, build_design, ensure_features, fit_lasso,  # noqa: E402
                          fit_ridge, make_plan)
from core.store import DEFAULT_PATH, Store  # noqa: E402


def sklearn_loop(design, estimator_factory):
    """Fit one scikit-learn model per (feature, fold); test R² ``[F, K]`` and seconds."""
    from sklearn.metrics import r2_score

    X = design.X.double().cpu().numpy()
    y = design.y.double().cpu().numpy()
    train, test = design.train.cpu().numpy(), design.test.cpu().numpy()
    r2 = np.zeros(train.shape[:2])
    started = time.perf_counter()
    for f in range(train.shape[0]):
        for k in range(train.shape[1]):
            model = estimator_factory().fit(X[f][train[f, k]], y[f][train[f, k]])
            r2[f, k] = r2_score(y[f][test[f]], model.predict(X[f][test[f]]))
    return r2, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="minilm-cross-encoder")
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--pooling", default="mean", choices=["mean", "max"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (sklearn's "
                        "coordinate descent is single-threaded)")
    parser.add_argument("--store", default=str(DEFAULT_PATH),
                        help="store with (or for) the extraction; the app's store by default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # sklearn ConvergenceWarnings on hard problems

    from sklearn.linear_model import Lasso, Ridge

    ranker = load_ranker(args.ranker)
    collection = load_collection(args.collection)
    store = Store(args.store)
    extraction = ExtractionConfig(limit_queries=args.queries)
    run = extract(ranker, collection, extraction, store)
    features, _, notes = ensure_features(store, collection, extraction, run.run_key)
    config = ProbeConfig(features=tuple(f for f in FEATURES if f in features))
    plan = make_plan(features[list(config.features)], config)
    print(f"{args.ranker} on {collection.name}: {run.n_pairs} pairs, {ranker.n_layers} layers, "
          f"{len(plan.names)} features probed ({', '.join(plan.skipped) or 'none'} skipped: "
          f"too little spread), set sizes {min(map(len, plan.rows))}–{max(map(len, plan.rows))}, "
          f"{config.folds} folds, torch threads {args.threads}")
    totals = {"ours_lasso": 0.0, "sk_lasso": 0.0, "ours_ridge": 0.0, "sk_ridge": 0.0}
    max_diff = {"lasso": 0.0, "ridge": 0.0}
    for layer in range(ranker.n_layers):
        acts = store.activations(run.run_key, "resid", layer, args.pooling)
        for name, fit, reference in (
                ("lasso", lambda d: fit_lasso(d.X, d.y, d.train, config.lasso_alpha, config.tol),
                 lambda: Lasso(alpha=config.lasso_alpha)),
                ("ridge", lambda d: fit_ridge(d.X, d.y, d.train, config.ridge_alpha),
                 lambda: Ridge(alpha=config.ridge_alpha))):
            started = time.perf_counter()
            design = build_design(acts, plan, config.folds)
            coef, intercept = fit(design)
            ours, _ = _r2(design, coef, intercept, design.test)
            totals[f"ours_{name}"] += time.perf_counter() - started
            theirs, seconds = sklearn_loop(design, reference)
            totals[f"sk_{name}"] += seconds
            max_diff[name] = max(max_diff[name], float(np.abs(ours.double().numpy() - theirs).max()))
        print(f"  layer {layer + 1:2d}: RankScope lasso {totals['ours_lasso']:7.2f}s  sklearn "
              f"lasso {totals['sk_lasso']:7.2f}s  (cumulative)", flush=True)
    fits = ranker.n_layers * len(plan.names) * config.folds
    print(f"{fits} Lasso fits: RankScope {totals['ours_lasso']:.2f}s, sklearn loop "
          f"{totals['sk_lasso']:.2f}s; ridge: RankScope {totals['ours_ridge']:.2f}s, sklearn "
          f"loop {totals['sk_ridge']:.2f}s")
    print(f"RESULT probe_speedup={totals['sk_lasso'] / totals['ours_lasso']:.2f}")
    print(f"RESULT probe_max_abs_r2_diff={max_diff['lasso']:.2e}")
    print(f"RESULT ridge_speedup={totals['sk_ridge'] / totals['ours_ridge']:.2f}")
    print(f"RESULT ridge_max_abs_r2_diff={max_diff['ridge']:.2e}")


if __name__ == "__main__":
    main()
