"""Many Lasso problems on one activation matrix: the CPU solver of the probe sweep.

Context:
    A probe sweep fits, on every layer, one Lasso per (feature, fold): 22–26 features × 5
    folds = 110–130 problems whose rows all come from the same activations ``[n_pairs, d]``
    (each feature's balanced set, minus one fold), with 20–60 non-zero neurons each. Looping
    scikit-learn's ``Lasso`` solves each from scratch with ~40 sweeps over its ``[rows, d]``
    copy. Here the work that can be shared is done once per layer in a few matrix products,
    and coordinate descent only runs on small Gram matrices.

Method (per layer; the problem is scikit-learn's ``Lasso(alpha, fit_intercept=True)`` on
``core.probing.build_design``'s standardised arrays):
    1. Standardising the activations by one scalar s per feature is folded into α (a Lasso on
       X / s with α equals a Lasso on X with α·s), so the raw activations are used directly,
       centred once per layer (the intercept absorbs any shift).
    2. One product ``Aᵀ [masks | targets]`` gives every problem's neuron means and its
       correlations ``X_cᵀ y_c / m``.
    3. Each feature keeps one *working set* of neurons for its folds: at first the 48 largest
       correlations. Its Gram matrix is computed per fold chunk and downdated per fold (fold k's
       Gram = all chunks − chunk k), so five fold problems cost one Gram.
    4. Coordinate descent (compiled with numba) solves each problem on its working set.
    5. Two products over all neurons of all problems — fits, then gradients ``X_cᵀ r / m`` —
       give each problem's duality gap with scikit-learn's formula and stopping rule
       (gap ≤ ``tol`` · ‖y_c‖², ``tol`` = 1e-4 as ``Lasso``'s default). Features with an open
       gap add their worst optimality (KKT) violators to the working set and go again, warm
       started; typically three rounds.

The result meets the same optimality certificate as scikit-learn's; ``bench/probe_sweep.py``
compares both on the same data (test R² and speed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numba
import numpy as np


@numba.njit(cache=True)
def _coordinate_descent(gram, linear, coef, sizes, alpha, tol, max_epochs):  # pragma: no cover
    """``argmin ½ vᵀ G v − bᵀ v + α ‖v‖₁`` for each problem p, in place.

    ``gram [P, w, w]``, ``linear [P, w]``, ``coef [P, w]`` (warm start, updated), ``sizes [P]``
    (problem p uses its first sizes[p] entries), ``alpha [P]``. Stops when no coordinate violates
    its optimality condition by more than ``tol · α``.
    """
    for p in range(gram.shape[0]):
        n = sizes[p]
        a = alpha[p]
        q = np.zeros(n)  # G v
        for i in range(n):
            for j in range(n):
                q[i] += gram[p, i, j] * coef[p, j]
        for _ in range(max_epochs):
            for j in range(n):
                diagonal = gram[p, j, j]
                if diagonal <= 0.0:  # a constant neuron: never enters
                    continue
                old = coef[p, j]
                z = linear[p, j] - q[j] + diagonal * old
                if z > a:
                    new = (z - a) / diagonal
                elif z < -a:
                    new = (z + a) / diagonal
                else:
                    new = 0.0
                if new != old:
                    for i in range(n):
                        q[i] += gram[p, j, i] * (new - old)
                    coef[p, j] = new
            worst = 0.0
            for j in range(n):
                g = linear[p, j] - q[j]
                if coef[p, j] > 0:
                    violation = abs(g - a)
                elif coef[p, j] < 0:
                    violation = abs(g + a)
                else:
                    violation = abs(g) - a
                worst = max(worst, violation)
            if worst <= tol * a:
                break


@numba.njit(cache=True)
def _gather(activations_t, rows, neurons, out):  # pragma: no cover
    """``out[a, i] = activations_t[neurons[a], rows[i]]`` (a row of Aᵀ stays in cache)."""
    for a in range(neurons.shape[0]):
        source = activations_t[neurons[a]]
        for i in range(rows.shape[0]):
            out[a, i] = source[rows[i]]


@numba.njit(cache=True)
def _fold_grams(chunks, counts, means, first, gram):  # pragma: no cover
    """Centred Gram of fold problems ``first … first+K−1``: (Σ chunks − chunk k) / m − x̄ x̄ᵀ.

    ``chunks [K, w, w]`` (each fold chunk's uncentred Gram), ``counts [P]``, ``means [K, w]``
    (each problem's working-set means), ``gram [P, w_max, w_max]`` (written).
    """
    folds, w = chunks.shape[0], chunks.shape[1]
    for a in range(w):
        for b in range(a, w):
            total = 0.0
            for k in range(folds):
                total += chunks[k, a, b]
            for k in range(folds):
                value = (total - chunks[k, a, b]) / counts[first + k] - means[k, a] * means[k, b]
                gram[first + k, a, b] = value
                gram[first + k, b, a] = value


@dataclass
class LassoFit:
    """One layer's fold models (F targets × K folds) and their scores."""

    coef: np.ndarray  # [F, K, d], on the standardised design's scale
    r2_test: np.ndarray  # [F, K]
    r2_val: np.ndarray  # [F, K]
    mse: np.ndarray  # [F, K], test part, standardised target
    rounds: int  # working-set rounds
    converged: bool  # every problem's duality gap closed (else a warning was issued)


class LassoProblems:
    """The layer-independent part of a sweep: rows, folds and targets of every problem.

    Built once per probing plan (``core.probing.ProbePlan``: each target's rows in split order,
    train/validation sizes, fold of each train row, raw target values) and reused by every
    layer and pooling.
    """

    def __init__(self, plan, n_pairs: int, folds: int):
        n_targets = len(plan.names)
        self.n_targets, self.folds, self.n_pairs = n_targets, folds, n_pairs
        problems = n_targets * folds
        self.train_rows: list[np.ndarray] = []  # per target: train rows sorted by fold
        self.chunk_bounds = np.zeros((n_targets, folds + 1), np.int64)
        masks = np.zeros((n_pairs, problems), np.float32)  # row in problem p's training part
        centred = np.zeros((n_pairs, problems), np.float32)  # y − ȳ_p there, else 0
        self.target_rows = np.zeros((n_targets, n_pairs), np.float32)  # the whole train part
        self.counts = np.zeros(problems)
        self.target_means = np.zeros(problems)
        self.evaluation = []  # per target: (test rows, test y, validation rows, validation y)
        for f in range(n_targets):
            rows, n_train, n_val = plan.rows[f], plan.n_train[f], plan.n_val[f]
            raw = np.asarray(plan.targets[f], np.float64)
            sd = raw[:n_train].std(ddof=1)  # build_design's z-score (torch's unbiased std)
            y = (raw - raw[:n_train].mean()) / (sd if sd > 0 else 1.0)
            fold = np.asarray(plan.fold[f])
            order = np.argsort(fold, kind="stable")
            self.train_rows.append(np.ascontiguousarray(rows[:n_train][order], dtype=np.int64))
            self.chunk_bounds[f] = np.searchsorted(fold[order], np.arange(folds + 1))
            self.target_rows[f, rows[:n_train]] = 1
            for k in range(folds):
                p, keep = f * folds + k, fold != k
                self.counts[p] = keep.sum()
                self.target_means[p] = y[:n_train][keep].mean()
                masks[rows[:n_train][keep], p] = 1
                centred[rows[:n_train][keep], p] = y[:n_train][keep] - self.target_means[p]
            self.evaluation.append((rows[n_train + n_val:], y[n_train + n_val:],
                                    rows[n_train:n_train + n_val], y[n_train:n_train + n_val]))
        # one array for the product of step 2; masks and targets are views of it
        self.stacked = np.concatenate([masks, centred], axis=1)
        self.masks, self.centred = self.stacked[:, :problems], self.stacked[:, problems:]
        self.train_counts = self.target_rows.sum(1).astype(np.float64)
        self.y_norms = (centred.astype(np.float64) ** 2).sum(0)  # ‖y_c‖² per problem


def solve_layer(activations: np.ndarray, problems: LassoProblems, alpha: float,
                tol: float = 1e-4, start: int = 48, grow: int = 64,
                max_rounds: int = 100) -> LassoFit:
    """Fit every (target, fold) Lasso of one layer's activations ``[n_pairs, d]``.

    Args:
        alpha: the Lasso's α on the standardised design (scikit-learn's objective
            ``1/(2m) ‖y_c − X_c w‖² + α ‖w‖₁``).
        tol: duality-gap tolerance relative to ‖y_c‖² (scikit-learn's ``tol``). The products
            over all neurons run in float32, which resolves gaps down to about 1e-6.
        start, grow: first working-set size per target, and most neurons added per round.
    """
    A = np.asarray(activations, dtype=np.float32)
    if A.ndim != 2 or len(A) != problems.n_pairs:
        raise ValueError(f"activations of shape {A.shape} do not fit problems built for "
                         f"{problems.n_pairs} pairs")
    A = A - A.mean(0)
    A_t = np.ascontiguousarray(A.T)  # [d, n_pairs]
    d = A.shape[1]
    F, K, m = problems.n_targets, problems.folds, problems.counts
    P = F * K
    sums = (A_t @ problems.stacked).T.astype(np.float64)  # [2P, d]
    means, linear = sums[:P] / m[:, None], sums[P:] / m[:, None]  # x̄_p, X_cᵀ y_c / m
    first = (problems.target_rows @ A).astype(np.float64)
    second = (problems.target_rows @ (A * A)).astype(np.float64)
    n = problems.train_counts[:, None]
    variance = np.maximum((second - first * first / n) / (n - 1), 0)
    # build_design's one scalar per target: torch's median, the lower middle value
    scale = np.sort(np.sqrt(variance), axis=1)[:, (d - 1) // 2]
    scale[scale <= 0] = 1.0
    alphas = np.repeat(alpha * scale, K)  # α on the raw activations
    coef = np.zeros((P, d))
    order = np.argsort(-np.abs(linear).reshape(F, K, d).max(1), axis=1)
    working = [np.sort(order[f, :start]) for f in range(F)]
    open_targets = np.ones(F, dtype=bool)
    cd_tol = 1e-4
    for rounds in range(1, max_rounds + 1):
        width = max(len(w) for w in working)
        gram = np.zeros((P, width, width))
        lin = np.zeros((P, width))
        warm = np.zeros((P, width))
        sizes = np.zeros(P, dtype=np.int64)
        for f in np.flatnonzero(open_targets):
            neurons, span = working[f], slice(f * K, (f + 1) * K)
            block = np.empty((len(neurons), len(problems.train_rows[f])), np.float32)
            _gather(A_t, problems.train_rows[f], neurons, block)
            bounds = problems.chunk_bounds[f]
            chunks = np.empty((K, len(neurons), len(neurons)))
            for k in range(K):
                part = block[:, bounds[k]:bounds[k + 1]]
                chunks[k] = part @ part.T
            _fold_grams(chunks, m, np.ascontiguousarray(means[span][:, neurons]), f * K, gram)
            lin[span, :len(neurons)] = linear[span][:, neurons]
            warm[span, :len(neurons)] = coef[span][:, neurons]
            sizes[span] = len(neurons)
        _coordinate_descent(gram, lin, warm, sizes, alphas, cd_tol, 100_000)
        for f in np.flatnonzero(open_targets):
            span = slice(f * K, (f + 1) * K)
            coef[span] = 0
            coef[span, working[f]] = warm[span, :len(working[f])]
        offsets = (means * coef).sum(1)
        fitted = A @ coef.T.astype(np.float32) - offsets.astype(np.float32)[None, :]  # [n, P]
        residual = problems.centred - fitted * problems.masks
        gradient = (A_t @ residual).T.astype(np.float64)  # X_cᵀ r (the residual sums to 0)
        # scikit-learn's duality gap (enet_coordinate_descent, no l2 term)
        r = residual.astype(np.float64)
        r_norm, r_y = (r * r).sum(0), (r * problems.centred).sum(0)
        alpha_n = alphas * m
        dual_norm = np.abs(gradient).max(1)
        const = np.where(dual_norm > alpha_n, alpha_n / np.maximum(dual_norm, 1e-300), 1.0)
        gap = 0.5 * r_norm * (1 + const ** 2) + alpha_n * np.abs(coef).sum(1) - const * r_y
        open_targets = (gap > tol * problems.y_norms).reshape(F, K).any(1)
        if not open_targets.any():
            break
        violation = (np.abs(gradient) / m[:, None] - alphas[:, None]).reshape(F, K, d).max(1)
        stalled = False
        for f in np.flatnonzero(open_targets):
            violation[f, working[f]] = 0
            new = np.flatnonzero(violation[f] > cd_tol * alphas[f * K])
            if len(new):
                working[f] = np.sort(np.concatenate(
                    [working[f], new[np.argsort(-violation[f, new])[:grow]]]))
            else:
                stalled = True
        if stalled:  # the gap is open only inside the working set: solve it more tightly
            cd_tol = max(cd_tol / 10, 1e-10)
    else:
        warnings.warn(f"the Lasso probes of {int(open_targets.sum())} target(s) did not reach "
                      f"the duality-gap tolerance {tol:g} in {max_rounds} rounds",
                      RuntimeWarning, stacklevel=2)
    intercepts = problems.target_means - offsets
    r2_test, r2_val, mse = np.zeros((F, K)), np.zeros((F, K)), np.zeros((F, K))
    for f in range(F):
        span = slice(f * K, (f + 1) * K)
        used = np.flatnonzero((coef[span] != 0).any(0))
        test_rows, test_y, val_rows, val_y = problems.evaluation[f]
        for rows, y, out in ((test_rows, test_y, r2_test), (val_rows, val_y, r2_val)):
            prediction = A[np.ix_(rows, used)].astype(np.float64) @ coef[span][:, used].T
            prediction += intercepts[span]
            residual_ss = ((y[:, None] - prediction) ** 2).sum(0)
            out[f] = 1 - residual_ss / max(((y - y.mean()) ** 2).sum(), 1e-12)
            if out is r2_test:
                mse[f] = residual_ss / len(y)
    return LassoFit((coef * np.repeat(scale, K)[:, None]).reshape(F, K, d), r2_test, r2_val,
                    mse, rounds, not open_targets.any())


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernels, on a problem too small to matter."""
    coef = np.zeros((1, 1))
    _coordinate_descent(np.ones((1, 1, 1)), np.ones((1, 1)), coef, np.ones(1, np.int64),
                        np.full(1, 0.1), 1e-4, 1)
    _gather(np.ones((1, 1), np.float32), np.zeros(1, np.int64), np.zeros(1, np.int64),
            np.empty((1, 1), np.float32))
    _fold_grams(np.ones((2, 1, 1)), np.ones(2), np.zeros((2, 1)), 0, np.empty((2, 1, 1)))
