"""How far a CPU Lasso sweep can get: a working-set solver on scikit-learn's own Gram-form
coordinate descent vs scikit-learn's Lasso looped per feature and fold (issue 3's ≥30× target).

    python bench/probe_working_set.py [--ranker minilm-cross-encoder] [--queries 120] [--layers 6]

The candidate, per feature: one Gram matrix per CV fold over a small working set of neurons
(the largest |Xᵀy| first, then the worst KKT violators of all five fold problems, checked over
every neuron with one matrix product), each fold problem solved by
``sklearn.linear_model._cd_fast.enet_coordinate_descent_gram`` (the routine ``Lasso`` itself
runs when given a Gram matrix; private API, hence a bench and not the engine), warm-started, until
no neuron outside the set violates the optimality conditions. Same designs, same α = 0.1, same
test rows as ``bench/probe_sweep.py``; building the designs is timed separately.

Prints ``RESULT working_set_speedup=<x>`` (solver only), ``RESULT
working_set_speedup_with_design=<x>`` and ``RESULT working_set_max_abs_r2_diff=<d>``.
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
from core.probing import (ProbeConfig, _r2, build_design, ensure_features,  # noqa: E402
                          fit_lasso_sklearn, make_plan)
from core.store import DEFAULT_PATH, Store  # noqa: E402


def working_set_lasso(design, alpha: float, start: int = 48, grow: int = 32, tol: float = 1e-4):
    """Coefficients ``[F, K, d]`` and intercepts ``[F, K]`` (scikit-learn's objective)."""
    from sklearn.linear_model._cd_fast import enet_coordinate_descent_gram

    rng = np.random.RandomState(0)
    X = design.X.double().numpy()
    Y = design.y.double().numpy()
    train = design.train.numpy()
    n_f, n_k, _ = train.shape
    d = X.shape[-1]
    coef, intercept = np.zeros((n_f, n_k, d)), np.zeros((n_f, n_k))
    for f in range(n_f):
        rows = int(train[f].any(0).nonzero()[0].max()) + 1
        A, y, M = X[f, :rows], Y[f, :rows], train[f, :, :rows].astype(np.float64)
        count = M.sum(1)
        mean_x, mean_y = (M @ A) / count[:, None], (M @ y) / count
        y_c = (y[None, :] - mean_y[:, None]) * M  # [K, n]
        linear = y_c @ A  # X_cᵀ y_c per fold [K, d]
        W = np.zeros((n_k, d))
        active = np.zeros(d, bool)
        active[np.argsort(-np.abs(linear / count[:, None]).max(0))[:start]] = True
        in_train = M.any(0)
        while True:
            index = np.flatnonzero(active)
            cols = A[:, index]
            full = (cols * in_train[:, None]).T @ cols
            for k in range(n_k):
                out = in_train & (M[k] == 0)
                gram = (full - cols[out].T @ cols[out]
                        - count[k] * np.outer(mean_x[k, index], mean_x[k, index]))
                w = np.ascontiguousarray(W[k, index])
                w, *_ = enet_coordinate_descent_gram(
                    w, alpha * count[k], 0.0, np.ascontiguousarray(gram),
                    np.ascontiguousarray(linear[k, index]), y_c[k][M[k] > 0], 1000, tol, rng,
                    False, False, True)
                W[k] = 0
                W[k, index] = w
            fitted = W @ A.T - (mean_x * W).sum(1, keepdims=True)
            gradient = ((y_c - fitted * M) @ A) / count[:, None]
            violation = np.where((np.abs(gradient) > alpha * (1 + 1e-3)) & (W == 0),
                                 np.abs(gradient), 0).max(0)
            violation[active] = 0
            if not (violation > 0).any():
                break
            active[np.argsort(-violation)[:grow]] = True
        coef[f], intercept[f] = W, mean_y - (mean_x * W).sum(1)
    return torch.as_tensor(coef, dtype=torch.float32), torch.as_tensor(intercept,
                                                                       dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranker", default="minilm-cross-encoder")
    parser.add_argument("--queries", type=int, default=120)
    parser.add_argument("--layers", type=int, default=None, help="first N layers (all)")
    parser.add_argument("--store", default=str(DEFAULT_PATH))
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    ranker = load_ranker(args.ranker)
    collection = load_collection("demo")
    store = Store(args.store)
    extraction = ExtractionConfig(limit_queries=args.queries)
    run = extract(ranker, collection, extraction, store)
    features, _, _ = ensure_features(store, collection, extraction, run.run_key)
    config = ProbeConfig(features=tuple(f for f in FEATURES if f in features))
    plan = make_plan(features[list(config.features)], config)
    seconds = {"design": 0.0, "working_set": 0.0, "sklearn": 0.0}
    max_diff = 0.0
    for layer in range(args.layers or ranker.n_layers):
        acts = store.activations(run.run_key, "resid", layer, "mean")
        started = time.perf_counter()
        design = build_design(acts, plan, config.folds)
        seconds["design"] += time.perf_counter() - started
        started = time.perf_counter()
        coef, intercept = working_set_lasso(design, config.lasso_alpha)
        ours, _ = _r2(design, coef, intercept, design.test)
        seconds["working_set"] += time.perf_counter() - started
        started = time.perf_counter()
        coef, intercept = fit_lasso_sklearn(design.X.double(), design.y.double(), design.train,
                                            config.lasso_alpha)
        theirs, _ = _r2(design, coef.float(), intercept.float(), design.test)
        seconds["sklearn"] += time.perf_counter() - started
        max_diff = max(max_diff, float((ours - theirs).abs().max()))
        print(f"  layer {layer + 1:2d}: " + "  ".join(f"{k} {v:6.2f}s" for k, v in
                                                      seconds.items()), flush=True)
    print(f"RESULT working_set_speedup={seconds['sklearn'] / seconds['working_set']:.2f}")
    print("RESULT working_set_speedup_with_design="
          f"{seconds['sklearn'] / (seconds['working_set'] + seconds['design']):.2f}")
    print(f"RESULT working_set_max_abs_r2_diff={max_diff:.2e}")


if __name__ == "__main__":
    main()
