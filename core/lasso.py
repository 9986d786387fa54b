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
       centred once per layer (the intercept absorbs any shift) and transposed, so that a
       neuron's activations are one contiguous row.
    2. One product ``Aᵀ [targets | train rows]`` gives each feature's correlations (which
       neurons start its working set) and its scale s.
    3. Each feature keeps one *working set* of neurons for its folds: at first the 48 largest
       correlations. Its neurons' rows are gathered once, with their sums and target products
       per fold chunk (each fold problem's means and ``X_cᵀ y_c``), and their Gram matrix is
       kept per fold chunk and downdated per fold (fold k's Gram = all chunks − chunk k), so
       five fold problems cost one Gram; a growing set only adds the new neurons' columns.
    4. Coordinate descent (compiled with numba) solves each problem on its working set, with
       an exact solve whenever an epoch leaves the support and signs unchanged.
    5. One product over all neurons of the open problems — the gradients ``X_cᵀ r / m`` of
       their residuals — gives each problem's duality gap with scikit-learn's formula and
       stopping rule (gap ≤ ``tol`` · ‖y_c‖², ``tol`` = 1e-4 as ``Lasso``'s default). Features
       with an open gap add their worst optimality (KKT) violators to the working set and go
       again, warm started; typically three rounds.

Steps 3–4 and the scoring run feature by feature on as many threads as numpy's BLAS may use
(the kernels release the GIL; BLAS runs single-threaded inside them), the products of steps 2
and 5 on BLAS's own threads; the number of threads changes the result only by BLAS's float32
rounding. Working-set arrays are kept in the ``LassoProblems`` for the next layer. The result
meets the same optimality certificate as scikit-learn's; ``bench/probe_sweep.py`` compares
both on the same data (test R² and speed).
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from threadpoolctl import ThreadpoolController


@numba.njit(cache=True, nogil=True)
def _cholesky_solve(matrix, rhs, size, factor, out):  # pragma: no cover
    """Solve ``matrix[:size, :size] x = rhs[:size]`` into ``out`` by Cholesky; False when the
    matrix is not (numerically) positive definite."""
    for i in range(size):
        for j in range(i + 1):
            value = matrix[i, j]
            for t in range(j):
                value -= factor[i, t] * factor[j, t]
            if i == j:
                if value <= 1e-10 * matrix[i, i]:
                    return False
                factor[i, i] = np.sqrt(value)
            else:
                factor[i, j] = value / factor[j, j]
    for i in range(size):  # L z = rhs
        value = rhs[i]
        for t in range(i):
            value -= factor[i, t] * out[t]
        out[i] = value / factor[i, i]
    for i in range(size - 1, -1, -1):  # Lᵀ x = z
        value = out[i]
        for t in range(i + 1, size):
            value -= factor[t, i] * out[t]
        out[i] = value / factor[i, i]
    return True


@numba.njit(cache=True, nogil=True)
def _support(v, out):  # pragma: no cover
    """Indices of the non-zero entries of ``v`` into ``out``; returns their count."""
    size = 0
    for j in range(v.shape[0]):
        if v[j] != 0.0:
            out[size] = j
            size += 1
    return size


@numba.njit(cache=True, nogil=True)
def _product_on_support(gram, support, size, values, q):  # pragma: no cover
    """``q = G[:, S] values[:size]`` for the support ``S = support[:size]``."""
    for i in range(q.shape[0]):
        value = 0.0
        for t in range(size):
            value += gram[i, support[t]] * values[t]
        q[i] = value


@numba.njit(cache=True, nogil=True)
def _coordinate_descent(chunks, sums, products, n, neurons, first, counts, target_means, coef,
                        alpha, tol, max_epochs, weights, offsets):  # pragma: no cover
    """Coordinate descent for the K fold problems ``first … first + K − 1`` of one target on its
    working set ``neurons[:n]``, warm-started from and written back to ``coef [P, d]``.

    Fold k's problem is ``argmin ½ vᵀ G_k v − b_kᵀ v + α_k ‖v‖₁`` with the centred Gram
    ``G_k = (Σ_j C_j − C_k) / m_k − x̄_k x̄_kᵀ``, from the chunk Grams ``chunks [K, ≥n, ≥n]``
    (uncentred, one per fold chunk; the upper triangles of their first n rows and columns are
    read), chunk sums of x and x·y ``sums``, ``products [K, ≥n]`` (x̄_k = (Σ_j s_j − s_k) / m_k,
    b_k = X_cᵀ y_c / m_k = ((Σ_j p_j − p_k) − ȳ_k (Σ_j s_j − s_k)) / m_k), ``counts``,
    ``target_means`` (ȳ) and ``alpha`` ``[P]`` (problem ``first + k`` for fold k). Stops
    when no coordinate violates its optimality condition by more than ``tol · α``. Also
    writes ``weights [n, K]`` (the solution, float32) and ``offsets[first + k]`` = x̄_kᵀ v.

    Once an epoch leaves the support and signs unchanged, the problem restricted to them is a
    linear system, ``G_SS v_S = b_S − α sign(v_S)``: it is solved exactly (once per support)
    and taken when its solution keeps the signs, which ends most problems in a few epochs
    instead of dozens (the epochs still decide optimality).
    """
    folds = chunks.shape[0]
    total = np.zeros((n, n))
    for k in range(folds):
        for i in range(n):
            for j in range(i, n):
                total[i, j] += chunks[k, i, j]
    sum_all, product_all = np.zeros(n), np.zeros(n)
    for k in range(folds):
        for i in range(n):
            sum_all[i] += sums[k, i]
            product_all[i] += products[k, i]
    gram = np.empty((n, n))
    q = np.empty(n)  # G v
    v, b, mean = np.empty(n), np.empty(n), np.empty(n)
    support = np.empty(n, np.int64)
    system, factor = np.empty((n, n)), np.empty((n, n))
    rhs, solution = np.empty(n), np.empty(n)
    for k in range(folds):
        p = first + k
        a, inverse = alpha[p], 1.0 / counts[p]
        for i in range(n):
            v[i] = coef[p, neurons[i]]
            mean[i] = (sum_all[i] - sums[k, i]) * inverse
            b[i] = (product_all[i] - products[k, i]) * inverse - target_means[p] * mean[i]
        for i in range(n):
            for j in range(i, n):
                value = (total[i, j] - chunks[k, i, j]) * inverse - mean[i] * mean[j]
                gram[i, j] = value
                gram[j, i] = value
        size = _support(v, support)
        for t in range(size):
            solution[t] = v[support[t]]
        _product_on_support(gram, support, size, solution, q)
        tried = False  # the exact solve on the current support
        for _ in range(max_epochs):
            stable = True
            for j in range(n):
                diagonal = gram[j, j]
                if diagonal <= 0.0:  # a constant neuron: never enters
                    continue
                old = v[j]
                z = b[j] - q[j] + diagonal * old
                if z > a:
                    new = (z - a) / diagonal
                elif z < -a:
                    new = (z + a) / diagonal
                else:
                    new = 0.0
                if new != old:
                    if (new > 0) != (old > 0) or (new < 0) != (old < 0):
                        stable = False
                    delta = new - old
                    for i in range(n):
                        q[i] += gram[j, i] * delta
                    v[j] = new
            worst = 0.0
            for j in range(n):
                g = b[j] - q[j]
                if v[j] > 0:
                    violation = abs(g - a)
                elif v[j] < 0:
                    violation = abs(g + a)
                else:
                    violation = abs(g) - a
                worst = max(worst, violation)
            if worst <= tol * a:
                break
            if not stable:
                tried = False
                continue
            if tried:
                continue
            tried = True
            size = _support(v, support)
            for s in range(size):
                for t in range(size):
                    system[s, t] = gram[support[s], support[t]]
                rhs[s] = b[support[s]] - (a if v[support[s]] > 0 else -a)
            if not _cholesky_solve(system, rhs, size, factor, solution):
                continue
            keeps_signs = True
            for s in range(size):
                if solution[s] == 0.0 or (solution[s] > 0) != (v[support[s]] > 0):
                    keeps_signs = False
            if not keeps_signs:
                continue
            for s in range(size):
                v[support[s]] = solution[s]
            _product_on_support(gram, support, size, solution, q)
        offset = 0.0
        for i in range(n):
            coef[p, neurons[i]] = v[i]
            weights[i, k] = v[i]
            offset += mean[i] * v[i]
        offsets[p] = offset


@numba.njit(cache=True, nogil=True)
def _centre_transpose(activations, mean, out, first, last):  # pragma: no cover
    """``out[j, i] = activations[i, j] − mean[j]`` for the neurons ``first … last − 1``."""
    n = activations.shape[0]
    for start in range(0, n, 64):  # 64 rows at a time stay in cache
        stop = min(start + 64, n)
        for j in range(first, last):
            shift = mean[j]
            for i in range(start, stop):
                out[j, i] = activations[i, j] - shift


@numba.njit(cache=True, nogil=True)
def _gather(activations_t, neurons, rows, y, bounds, out, sums, products):  # pragma: no cover
    """``out[a, i] = activations_t[neurons[a], rows[i]]``, with ``sums[k, a]`` and
    ``products[k, a]``, the sums of x and of x·y over fold chunk k's rows (float64). Rows
    ascend within each chunk: a neuron is read front to back."""
    for a in range(neurons.shape[0]):
        source = activations_t[neurons[a]]
        for k in range(bounds.shape[0] - 1):
            total, weighted = 0.0, 0.0
            for i in range(bounds[k], bounds[k + 1]):
                value = source[rows[i]]
                out[a, i] = value
                total += value
                weighted += value * y[i]
            sums[k, a] = total
            products[k, a] = weighted


@numba.njit(cache=True, nogil=True)
def _score(activations_t, neurons, coef, first, intercepts, rows, y, r2, mse):  # pragma: no cover
    """R² and MSE on ``rows`` (ascending) of the K fold models ``first … first + K − 1``,
    whose non-zero coefficients lie in ``neurons``; written to ``r2[k]`` and ``mse[k]``."""
    folds = r2.shape[0]
    prediction = np.empty((rows.shape[0], folds))
    for i in range(rows.shape[0]):
        for k in range(folds):
            prediction[i, k] = intercepts[first + k]
    for a in range(neurons.shape[0]):
        used = False
        for k in range(folds):
            used |= coef[first + k, neurons[a]] != 0.0
        if not used:
            continue
        source = activations_t[neurons[a]]
        for i in range(rows.shape[0]):
            value = source[rows[i]]
            for k in range(folds):
                prediction[i, k] += value * coef[first + k, neurons[a]]
    mean = 0.0
    for i in range(rows.shape[0]):
        mean += y[i]
    mean /= rows.shape[0]
    spread = 0.0
    for i in range(rows.shape[0]):
        spread += (y[i] - mean) ** 2
    for k in range(folds):
        error = 0.0
        for i in range(rows.shape[0]):
            error += (y[i] - prediction[i, k]) ** 2
        r2[k] = 1.0 - error / max(spread, 1e-12)
        mse[k] = error / rows.shape[0]


@numba.njit(cache=True, nogil=True)
def _residuals(fitted, offsets, y, target_means, bounds, rows, residual, r_norm, r_y):  # pragma: no cover
    """The K fold problems' residuals of one target on its training rows (fold k's own chunk
    excluded) written to ``residual[k, rows]``, with ‖r‖² and rᵀy_c (float64) per problem."""
    for k in range(fitted.shape[1]):
        norm, dot = 0.0, 0.0
        for i in range(rows.shape[0]):
            if bounds[k] <= i < bounds[k + 1]:
                residual[k, rows[i]] = 0.0
                continue
            centred = y[i] - target_means[k]
            value = centred - (fitted[i, k] - offsets[k])
            residual[k, rows[i]] = value
            norm += value * value
            dot += value * centred
        r_norm[k] = norm
        r_y[k] = dot


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="rankscope-lasso")


class _Threads:
    """Per-feature work of a layer on as many threads as numpy's BLAS may use (the kernels
    release the GIL); BLAS runs single-threaded inside that work, so the threads do not
    oversubscribe the cores, and on all its threads for the large products in between."""

    def __init__(self):
        libraries = _blas().select(user_api="blas").lib_controllers
        self.workers = min((lib.num_threads for lib in libraries), default=1)

    def each(self, work, items) -> None:
        """``work(item)`` for every item, the threads taking the next item when free."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                work(item)
            return
        queue = iter(items)  # next() on a list iterator is atomic under the GIL

        def drain():
            for item in queue:
                work(item)

        with _blas().limit(limits=1, user_api="blas"):
            futures = [_pool(self.workers).submit(drain) for _ in range(self.workers)]
            wait(futures)  # all threads done before an error is raised
        for future in futures:
            future.result()


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
        self.train_rows: list[np.ndarray] = []  # per target: train rows by fold, then row
        self.train_y: list[np.ndarray] = []  # per target: their standardised targets
        self.chunk_bounds = np.zeros((n_targets, folds + 1), np.int64)
        # the product of step 2: each target's y − ȳ on its training part (else 0), then its
        # training part (1 there, else 0)
        self.products = np.zeros((n_pairs, 2 * n_targets), np.float32)
        self.y_norms = np.zeros(problems)  # ‖y_c‖² per problem
        self.counts = np.zeros(problems)
        self.target_means = np.zeros(problems)
        self.evaluation = []  # per target: (test rows, test y, validation rows, validation y)
        for f in range(n_targets):
            rows, n_train, n_val = plan.rows[f], plan.n_train[f], plan.n_val[f]
            raw = np.asarray(plan.targets[f], np.float64)
            sd = raw[:n_train].std(ddof=1)  # build_design's z-score (torch's unbiased std)
            y = (raw - raw[:n_train].mean()) / (sd if sd > 0 else 1.0)
            fold = np.asarray(plan.fold[f])
            order = np.lexsort((rows[:n_train], fold))  # by fold, then row
            self.train_rows.append(np.ascontiguousarray(rows[:n_train][order], dtype=np.int64))
            self.chunk_bounds[f] = np.searchsorted(fold[order], np.arange(folds + 1))
            self.train_y.append(y[:n_train][order])
            self.products[rows[:n_train], f] = y[:n_train] - y[:n_train].mean()
            self.products[rows[:n_train], n_targets + f] = 1
            for k in range(folds):
                p, keep = f * folds + k, fold != k
                self.counts[p] = keep.sum()
                self.target_means[p] = y[:n_train][keep].mean()
                self.y_norms[p] = ((y[:n_train][keep] - self.target_means[p]) ** 2).sum()
            evaluation = []
            for part in (slice(n_train + n_val, None), slice(n_train, n_train + n_val)):
                ascending = np.argsort(rows[part])
                evaluation += [np.ascontiguousarray(rows[part][ascending], dtype=np.int64),
                               y[part][ascending]]
            self.evaluation.append(tuple(evaluation))
        self.train_counts = np.array([len(rows) for rows in self.train_rows], np.float64)
        self._spare: list[list[_Target]] = []  # working sets' arrays, for the next layer

    def _take_targets(self) -> list[_Target]:
        try:
            targets = self._spare.pop()  # atomic: concurrent layers never share arrays
        except IndexError:
            targets = [_Target(len(rows), self.folds) for rows in self.train_rows]
        for target in targets:
            target.neurons = np.zeros(0, np.int64)
        return targets


class _Target:
    """One target's working set and what is kept of it between rounds, in arrays with room to
    grow (the first ``len(neurons)`` rows/columns are used) that later layers reuse."""

    def __init__(self, n_rows: int, folds: int):
        self.neurons = np.zeros(0, np.int64)  # in the order they entered
        self.pending = np.zeros(0, np.int64)  # to enter next round
        self.block = np.empty((0, n_rows), np.float32)  # activations[neurons, train rows]
        self.chunks = np.empty((folds, 0, 0), np.float32)  # each fold chunk's uncentred Gram
        self.sums = np.empty((folds, 0))  # column sums of each fold chunk
        self.products = np.empty((folds, 0))  # and of column × target

    def grow(self, width: int) -> None:
        """Make room for ``width`` neurons (doubling, so a set grown often is copied rarely)."""
        room = len(self.block)
        if width <= room:
            return
        room, used = max(width, 2 * room), len(self.neurons)
        block = np.empty((room, self.block.shape[1]), np.float32)
        block[:used] = self.block[:used]
        chunks = np.empty((len(self.chunks), room, room), np.float32)
        chunks[:, :used, :used] = self.chunks[:, :used, :used]
        sums, products = np.empty((2, len(self.sums), room))
        sums[:, :used], products[:, :used] = self.sums[:, :used], self.products[:, :used]
        self.block, self.chunks, self.sums, self.products = block, chunks, sums, products


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
    raw = np.asarray(activations, dtype=np.float32)
    if raw.ndim != 2 or len(raw) != problems.n_pairs:
        raise ValueError(f"activations of shape {raw.shape} do not fit problems built for "
                         f"{problems.n_pairs} pairs")
    threads = _Threads()
    n_pairs, d = raw.shape
    F, K, m = problems.n_targets, problems.folds, problems.counts
    P = F * K
    # centred (the intercepts absorb the shift) and transposed, split by neurons between
    # the threads; then step 2: each target's Σ a·y_c, Σ a and Σ a² over its training part
    A_t = np.empty((d, n_pairs), np.float32)
    mean = raw.mean(0)
    split = np.linspace(0, d, threads.workers + 1).astype(int)
    threads.each(lambda i: _centre_transpose(raw, mean, A_t, split[i], split[i + 1]),
                 range(threads.workers))
    sums = (A_t @ problems.products).T.astype(np.float64)
    correlation, first = sums[:F], sums[F:]
    second = (np.square(A_t) @ problems.products[:, F:]).T.astype(np.float64)
    n = problems.train_counts[:, None]
    variance = np.maximum((second - first * first / n) / (n - 1), 0)
    # build_design's one scalar per target: torch's median, the lower middle value
    scale = np.sort(np.sqrt(variance), axis=1)[:, (d - 1) // 2]
    scale[scale <= 0] = 1.0
    alphas = np.repeat(alpha * scale, K)  # α on the raw activations
    coef, offsets = np.zeros((P, d)), np.zeros(P)
    order = np.argsort(-np.abs(correlation), axis=1)
    targets = problems._take_targets()
    for f, target in enumerate(targets):
        target.pending = order[f, :start]
    residual = np.zeros((P, n_pairs), np.float32)  # on each problem's training rows
    r_norm, r_y = np.zeros(P), np.zeros(P)
    gradient = np.zeros((P, d))
    cd_tol = 1e-4

    def advance(f: int) -> None:
        """Grow target f's working set by its pending neurons, then solve its K problems."""
        target, span = targets[f], slice(f * K, (f + 1) * K)
        rows, bounds = problems.train_rows[f], problems.chunk_bounds[f]
        old, width = len(target.neurons), len(target.neurons) + len(target.pending)
        if width > old:  # gather the new neurons; Gram columns only for them
            target.grow(width)
            _gather(A_t, target.pending, rows, problems.train_y[f], bounds,
                    target.block[old:width], target.sums[:, old:width],
                    target.products[:, old:width])
            for k in range(K):  # the upper triangle's new columns
                part = target.block[:width, bounds[k]:bounds[k + 1]]
                np.matmul(part, part[old:].T, out=target.chunks[k, :width, old:width])
            target.neurons = np.concatenate([target.neurons, target.pending])
        weights = np.empty((width, K), np.float32)
        _coordinate_descent(target.chunks, target.sums, target.products, width, target.neurons,
                            f * K, m, problems.target_means, coef, alphas, cd_tol, 100_000,
                            weights, offsets)
        fitted = target.block[:width].T @ weights  # [train rows, K]
        _residuals(fitted, offsets[span], problems.train_y[f], problems.target_means[span],
                   bounds, rows, residual[span], r_norm[span], r_y[span])

    open_targets = np.ones(F, dtype=bool)
    for rounds in range(1, max_rounds + 1):
        todo = np.flatnonzero(open_targets)
        # the largest first, so the threads finish together
        threads.each(advance, todo[np.argsort([-len(problems.train_rows[f]) *
                                            (len(targets[f].neurons) + len(targets[f].pending))
                                            for f in todo], kind="stable")])
        columns = np.flatnonzero(np.repeat(open_targets, K))
        gradient[columns] = residual[columns] @ A_t.T  # X_cᵀ r (Σ r = 0)
        # scikit-learn's duality gap (enet_coordinate_descent, no l2 term)
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
            violation[f, targets[f].neurons] = 0
            new = np.flatnonzero(violation[f] > cd_tol * alphas[f * K])
            targets[f].pending = new[np.argsort(-violation[f, new])[:grow]]
            stalled |= not len(new)
        if stalled:  # the gap is open only inside a working set: solve it more tightly
            cd_tol = max(cd_tol / 10, 1e-10)
    else:
        warnings.warn(f"the Lasso probes of {int(open_targets.sum())} target(s) did not reach "
                      f"the duality-gap tolerance {tol:g} in {max_rounds} rounds",
                      RuntimeWarning, stacklevel=2)
    intercepts = problems.target_means - offsets
    r2_test, r2_val, mse, unused = (np.zeros((F, K)) for _ in range(4))

    def score(f: int) -> None:
        test_rows, test_y, val_rows, val_y = problems.evaluation[f]
        _score(A_t, targets[f].neurons, coef, f * K, intercepts, test_rows, test_y, r2_test[f],
               mse[f])
        _score(A_t, targets[f].neurons, coef, f * K, intercepts, val_rows, val_y, r2_val[f],
               unused[f])

    threads.each(score, range(F))
    problems._spare.append(targets)
    return LassoFit((coef * np.repeat(scale, K)[:, None]).reshape(F, K, d), r2_test, r2_val,
                    mse, rounds, not open_targets.any())


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernels, on a problem too small to matter."""
    index, ones = np.zeros(1, np.int64), np.ones((2, 1))
    _coordinate_descent(np.ones((2, 2, 2), np.float32), ones, ones, 1, index, 0, np.ones(2),
                        np.zeros(2), np.zeros((2, 1)), np.full(2, 0.1), 1e-4, 1,
                        np.empty((1, 2), np.float32), np.zeros(2))
    activations = np.ones((2, 2), np.float32)
    _centre_transpose(activations, np.zeros(2, np.float32), np.empty((2, 2), np.float32), 0, 2)
    _gather(activations, index, np.arange(2), np.ones(2), np.arange(3), activations[:1],
            np.zeros((2, 2))[:, :1], np.zeros((2, 2))[:, :1])
    _score(activations, index, np.ones((2, 2)), 0, np.zeros(2), np.arange(2), np.ones(2),
           np.zeros((2, 2))[0], np.zeros((2, 2))[0])
    residual = np.zeros((3, 2), np.float32)
    _residuals(np.ones((2, 2), np.float32), np.zeros(2), np.ones(2), np.zeros(2),
               np.arange(3), np.arange(2), residual[1:], np.zeros(2), np.zeros(2))
