"""Every probe solver in one place: the CPU Lasso of a probe sweep (below: shared Gram
matrices, working sets, numba coordinate descent), the batched torch Lasso (FISTA, for a GPU),
the closed-form batched ridge, and scikit-learn's Lasso as the tested reference.

The CPU solver (many Lasso problems on one activation matrix):

Context:
    A probe sweep fits, on every layer, one Lasso per (feature, fold): 22–26 features × 5
    folds = 110–130 problems whose rows all come from the same activations ``[n_pairs, d]``,
    with 20–60 non-zero neurons each. Looping scikit-learn's ``Lasso`` solves each from
    scratch with ~40 sweeps over its ``[rows, d]`` copy. ``core.probing.make_plan`` splits the
    pairs once for every feature (each pair has one part — a train fold, validation or test —
    whatever feature it serves), so a fold's rows are the same for every feature but for the
    pairs a feature's balanced set leaves out. The layer's matrix products are then shared by
    every problem, and each problem only touches a few columns of them.

Method (per layer; the problem is scikit-learn's ``Lasso(alpha, fit_intercept=True)`` on
``core.probing.build_design``'s standardised arrays):
    1. Standardising the activations by one scalar s per feature is folded into α (a Lasso on
       X / s with α equals a Lasso on X with α·s), so the raw activations are used directly,
       centred once per layer (the intercept absorbs any shift).
    2. One Gram matrix per train fold chunk, ``C_j = A_jᵀ A_j`` (``[d, d]``), and one product
       ``A_jᵀ [targets | membership]`` per chunk: every problem's means, ``X_cᵀ y_c`` and each
       feature's scale s follow from them. Each ``C_k`` is then replaced by ``Σ_{j≠k} C_j``,
       the Gram of every train row outside chunk k.
    3. Fold k's Gram for feature f is ``Σ_{j≠k} C_j`` minus the Gram of the train rows f
       leaves out — or, for a small set, the Gram of its own rows: whichever takes fewer rows
       (the target's *block rows*). Each feature keeps a *working set* of neurons (at first
       the 16 with the largest correlations) and, per fold, its Gram on the working set.
    4. Coordinate descent (compiled with numba) solves each fold problem on the working set,
       with an exact solve whenever an epoch leaves the support and signs unchanged (its
       Cholesky factor kept from solve to solve and updated as neurons leave or enter).
    5. The gradient ``X_cᵀ r / m = b − G w`` over all d neurons comes from the shared Gram's
       rows at the non-zero neurons and one pass over the block rows, so each problem's
       duality gap (scikit-learn's formula and stopping rule: gap ≤ ``tol`` · ‖y_c‖², ``tol``
       = 1e-4 as ``Lasso``'s default) needs no pass over the other activations. Features with
       an open gap add their worst optimality (KKT) violators (at most 16) to the working set
       and go again, warm started; typically four rounds.
    6. Test and validation R² of every fold model: one product of both parts' activations with
       all coefficients (in blocks of 256 rows), then each problem's squared errors over its
       target's pairs.

Everything runs on as many threads as numpy's BLAS may use, with BLAS itself held to one
thread (``_Threads``): steps 3–5 feature by feature, each feature in one numba call (the
kernels release the GIL), the products of steps 2 and 6 chunk by chunk and row block by row
block (numpy releases the GIL in them). Each product is one BLAS call whichever thread makes
it, so the number of threads does not change the result. Memory: (folds + 1) Gram matrices of
d² float32, the centred train part and its squares, and the test and validation rows, kept
from layer to layer (``_Workspace``). The result meets the same optimality certificate as
scikit-learn's; ``bench/probe_sweep.py`` compares both on the same data (test R² and speed).
"""

from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
import torch
from threadpoolctl import ThreadpoolController


@numba.njit(cache=True, nogil=True)
def _factor_remove(factor, order, size, p):  # pragma: no cover
    """Drop entry ``p`` of a support from its Cholesky factor ``factor[:size, :size]`` (the
    Gram restricted to ``order[:size]``, in that order): the rows below move up, and Givens
    rotations of columns ``i, i + 1`` make the factor triangular again. O(size²)."""
    for i in range(p, size - 1):
        order[i] = order[i + 1]
        for t in range(i + 2):
            factor[i, t] = factor[i + 1, t]
    for i in range(p, size - 1):
        a, b = factor[i, i], factor[i, i + 1]
        r = np.sqrt(a * a + b * b)
        c, s = a / r, b / r
        factor[i, i], factor[i, i + 1] = r, 0.0
        for t in range(i + 1, size - 1):
            x, y = factor[t, i], factor[t, i + 1]
            factor[t, i] = c * x + s * y
            factor[t, i + 1] = c * y - s * x


@numba.njit(cache=True, nogil=True)
def _factor_append(factor, order, size, gram, j):  # pragma: no cover
    """Append neuron ``j`` to the Cholesky factor of ``gram`` on ``order[:size]`` (one row,
    O(size²)); False when the Gram on the larger support is not (numerically) positive
    definite (then its first ``size`` rows are left as they were)."""
    norm = 0.0
    for i in range(size):
        value = gram[order[i], j]
        for t in range(i):
            value -= factor[size, t] * factor[i, t]
        value /= factor[i, i]
        factor[size, i] = value
        norm += value * value
    value = gram[j, j] - norm
    if value <= 1e-10 * gram[j, j]:
        return False
    factor[size, size] = np.sqrt(value)
    order[size] = j
    return True


@numba.njit(cache=True, nogil=True)
def _factor_solve(factor, size, rhs, out):  # pragma: no cover
    """Solve ``L Lᵀ x = rhs[:size]`` into ``out`` for the factor ``L = factor[:size, :size]``."""
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
def _coordinate_descent(grams, n, neurons, linear, first, coef, alpha, tol, max_epochs, factors,
                        orders, sizes):  # pragma: no cover
    """Coordinate descent for the K fold problems ``first … first + K − 1`` of one feature on
    its working set ``neurons[:n]``, warm-started from and written back to ``coef [P, d]``.

    Fold k's problem is ``argmin ½ vᵀ G_k v − b_kᵀ v + α_k ‖v‖₁`` on the working set, with
    the centred Gram ``G_k`` of the fold's rows on the working set in ``grams [K, ≥n, ≥n]``;
    ``linear [K, d]`` holds the fold's b_k = X_cᵀ y_c / m_k and ``alpha`` ``[P]`` α_k
    (problem ``first + k`` for fold k). Stops when no coordinate violates its optimality
    condition by more than ``tol · α``.

    Once an epoch leaves the support and signs unchanged, the problem restricted to them is a
    linear system, ``G_SS v_S = b_S − α sign(v_S)``: it is solved exactly (once per support)
    and taken when its solution keeps the signs, which ends most problems in a few epochs
    instead of dozens (the epochs still decide optimality). Fold k's Cholesky factor of
    ``G_SS`` is kept from solve to solve and from call to call (``factors [K, ≥n, ≥n]`` on
    the working-set positions ``orders[k, :sizes[k]]``): a new support only removes and
    appends its rows, O(|S|²) each instead of O(|S|³) for a new factor.
    """
    folds = grams.shape[0]
    q = np.empty(n)  # G v
    v, b = np.empty(n), np.empty(n)
    support = np.empty(n, np.int64)
    rhs, solution = np.empty(n), np.empty(n)
    present = np.empty(n, np.bool_)
    for k in range(folds):
        p, gram = first + k, grams[k]
        a = alpha[p]
        for i in range(n):
            v[i] = coef[p, neurons[i]]
            b[i] = linear[k, neurons[i]]
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
            factor, order, size = factors[k], orders[k], sizes[k]
            removed = 0
            for s in range(size):
                if v[order[s]] == 0.0:
                    removed += 1
            if 4 * removed > size:  # many neurons left: a new factor costs less than rotations
                size = 0
            for s in range(size - 1, -1, -1):
                if v[order[s]] == 0.0:
                    _factor_remove(factor, order, size, s)
                    size -= 1
            present[:] = False
            for s in range(size):
                present[order[s]] = True
            complete = True
            for j in range(n):
                if v[j] != 0.0 and not present[j]:
                    if not _factor_append(factor, order, size, gram, j):
                        complete = False
                        break
                    size += 1
            sizes[k] = size
            if not complete:
                continue
            for s in range(size):
                rhs[s] = b[order[s]] - (a if v[order[s]] > 0 else -a)
            _factor_solve(factor, size, rhs, solution)
            keeps_signs = True
            for s in range(size):
                if solution[s] == 0.0 or (solution[s] > 0) != (v[order[s]] > 0):
                    keeps_signs = False
            if not keeps_signs:
                continue
            for s in range(size):
                v[order[s]] = solution[s]
            _product_on_support(gram, order, size, solution, q)
        for i in range(n):
            coef[p, neurons[i]] = v[i]


@numba.njit(cache=True, nogil=True)
def _duality_gaps(shared, own, corrections, n, neurons, means, linear, counts, first,
                  coef, alpha, y_norms, tol, member, violation):  # pragma: no cover
    """Check the K fold problems of one target (arguments as :func:`_coordinate_descent`;
    ``means [K, d]`` the folds' x̄_k, ``counts`` m_k per problem; ``shared``, ``own`` as
    :func:`_solve_target`; ``corrections [K, d]``: Eᵀ (E w) over the rows the block sums,
    outside chunk k; ``y_norms`` ‖y_c‖² per problem; ``member [d]`` marks the working set).
    Returns how many have a duality gap above ``tol · ‖y_c‖²`` — scikit-learn's gap, from the
    gradient ``g = b − G w = X_cᵀ r / m`` over all d neurons — and writes ``violation [d]``,
    each neuron's worst optimality violation ``|g| − α`` over the folds (0 inside the working
    set).
    """
    folds, d = means.shape
    q = np.empty(d)
    for t in range(d):
        violation[t] = 0.0
    still_open = 0
    for k in range(folds):
        p = first + k
        a, m = alpha[p], counts[p]
        x_v, l1 = 0.0, 0.0
        for t in range(d):
            q[t] = corrections[k, t] if own else -corrections[k, t]
        for i in range(n):
            value = coef[p, neurons[i]]
            if value == 0.0:
                continue
            x_v += means[k, neurons[i]] * value
            l1 += abs(value)
            if not own:
                row = shared[k, neurons[i]]
                for t in range(d):
                    q[t] += row[t] * value
        dual = 0.0
        for t in range(d):
            q[t] = q[t] / m - means[k, t] * x_v  # (G w)_t
            g = abs(linear[k, t] - q[t])
            dual = max(dual, g)
            if not member[t]:
                violation[t] = max(violation[t], g - a)
        b_w, w_g_w = 0.0, 0.0
        for i in range(n):
            value = coef[p, neurons[i]]
            b_w += linear[k, neurons[i]] * value
            w_g_w += q[neurons[i]] * value
        # scikit-learn's gap (enet_coordinate_descent, no l2 term) with R = y_c − X_c w:
        # ‖R‖² = ‖y_c‖² − 2 m bᵀw + m wᵀGw, Rᵀy_c = ‖y_c‖² − m bᵀw, ‖X_cᵀR‖_∞ = m ‖g‖_∞
        r_norm = max(y_norms[p] - 2 * m * b_w + m * w_g_w, 0.0)
        r_y = y_norms[p] - m * b_w
        const = a / dual if dual > a else 1.0
        gap = 0.5 * r_norm * (1 + const * const) + a * m * l1 - const * r_y
        if gap > tol * y_norms[p]:
            still_open += 1
    return still_open


@numba.njit(cache=True, nogil=True, fastmath=True)
def _chunk_products(working, bounds, n, width, partial):  # pragma: no cover
    """``partial[c, j, i] = Σ_r working[r, i] working[r, j]`` over chunk c's rows
    ``bounds[c] … bounds[c + 1] − 1``, for the new columns ``n ≤ j < width`` and ``i ≤ j``."""
    for c in range(bounds.shape[0] - 1):
        for j in range(n, width):
            for i in range(j + 1):
                partial[c, j, i] = 0.0
        for r in range(bounds[c], bounds[c + 1]):
            for j in range(n, width):
                x = working[r, j]
                for i in range(j + 1):
                    partial[c, j, i] += working[r, i] * x


@numba.njit(cache=True, nogil=True, fastmath=True)
def _corrections(train, rows, chunk, working, weights, n, e_w, corrections):  # pragma: no cover
    """``corrections[k] = Σ_r (working[r] · weights[k]) train[rows[r]]`` over the block rows r
    outside chunk k (``chunk[r]``): the block rows' part of ``U_k w_k`` over all d neurons."""
    e, folds = e_w.shape
    d = train.shape[1]
    for r in range(e):
        for k in range(folds):
            value = 0.0
            if chunk[r] != k:
                for i in range(n):
                    value += working[r, i] * weights[k, i]
            e_w[r, k] = value
    corrections[:, :] = 0.0
    for r in range(0, e - 3, 4):  # four rows at a time: one pass over each fold's sum
        x0, x1, x2, x3 = train[rows[r]], train[rows[r + 1]], train[rows[r + 2]], train[rows[r + 3]]
        for k in range(folds):
            a0, a1, a2, a3 = e_w[r, k], e_w[r + 1, k], e_w[r + 2, k], e_w[r + 3, k]
            out = corrections[k]
            for t in range(d):
                out[t] += x0[t] * a0 + x1[t] * a1 + x2[t] * a2 + x3[t] * a3
    for r in range(e - e % 4, e):
        x0 = train[rows[r]]
        for k in range(folds):
            a0, out = e_w[r, k], corrections[k]
            for t in range(d):
                out[t] += x0[t] * a0


@numba.njit(cache=True, nogil=True)
def _solve_target(train, rows, bounds, own, shared, means, linear, counts, first, coef,
                  alpha, y_norms, tol, pending, grow, max_rounds, outcome):  # pragma: no cover
    """Solve one target's K fold problems (``first … first + K − 1``) into ``coef [P, d]``:
    working-set rounds from the neurons ``pending`` until every duality gap is closed.

    ``train [n, d]``: the layer's centred train part, by fold chunk; ``shared [K, d, d]``: the
    Gram matrix of every train row outside chunk k (float32); ``rows``: the train rows the
    target's block sums — its own rows, or when ``own`` is False the rows it leaves out (then
    ``shared[k]`` minus them is fold k's Gram) — ``bounds[j] … bounds[j + 1] − 1`` in chunk j;
    the rest as :func:`_coordinate_descent` and :func:`_duality_gaps`. Writes the rounds and
    the folds left open to ``outcome``.
    """
    folds, d = means.shape
    e = rows.shape[0]
    room = min(d, max(2 * pending.shape[0], 64))
    neurons = np.empty(room, np.int64)
    working = np.empty((e, room), np.float32)  # the rows at the working set's neurons
    grams = np.empty((folds, room, room))  # each fold's centred Gram on the working set
    member = np.zeros(d, np.bool_)
    violation = np.empty(d)
    corrections = np.empty((folds, d), np.float32)
    partial = np.empty((folds + 1, room, room), np.float32)
    factors = np.empty((folds, room, room))  # each fold's Cholesky factor on its support
    orders, sizes = np.empty((folds, room), np.int64), np.zeros(folds, np.int64)
    chunk = np.empty(e, np.int64)  # each block row's chunk
    for c in range(folds):
        chunk[bounds[c]:bounds[c + 1]] = c
    weights = np.empty((folds, d), np.float32)
    e_w = np.empty((e, folds), np.float32)
    n, cd_tol, still_open, rounds = 0, 1e-4, folds, 0
    for rounds in range(1, max_rounds + 1):
        width = n + pending.shape[0]
        if width > room:  # grow (doubling: a set grown often is copied rarely)
            room = min(d, max(width, 2 * room))
            grown_neurons, grown_working = np.empty(room, np.int64), np.empty((e, room), np.float32)
            grown_grams = np.empty((folds, room, room))
            grown_neurons[:n], grown_working[:, :n] = neurons[:n], working[:, :n]
            grown_grams[:, :n, :n] = grams[:, :n, :n]
            neurons, working, grams = grown_neurons, grown_working, grown_grams
            grown_factors = np.empty((folds, room, room))
            grown_orders = np.empty((folds, room), np.int64)
            grown_factors[:, :n, :n], grown_orders[:, :n] = factors[:, :n, :n], orders[:, :n]
            factors, orders = grown_factors, grown_orders
            partial = np.empty((folds + 1, room, room), np.float32)
        for a in range(pending.shape[0]):
            neurons[n + a] = pending[a]
            member[pending[a]] = True
        for r in range(e):
            row = rows[r]
            for a in range(pending.shape[0]):
                working[r, n + a] = train[row, pending[a]]
        _chunk_products(working, bounds, n, width, partial)
        for j in range(n, width):  # the new neurons' products over the whole block
            for i in range(j + 1):
                everywhere = 0.0
                for c in range(folds):
                    everywhere += partial[c, j, i]
                partial[folds, j, i] = everywhere
        for k in range(folds):  # the new neurons' rows and columns of G_k
            scale, mean = 1.0 / counts[first + k], means[k]
            for j in range(n, width):
                row, mean_j = shared[k, neurons[j]], mean[neurons[j]]
                for i in range(j + 1):
                    value = partial[folds, j, i] - partial[k, j, i]  # block rows outside k
                    if not own:
                        value = row[neurons[i]] - value
                    # U_k / m_k − x̄_k x̄_kᵀ
                    value = value * scale - mean[neurons[i]] * mean_j
                    grams[k, j, i] = value
                    grams[k, i, j] = value
        n = width
        _coordinate_descent(grams, n, neurons, linear, first, coef, alpha, cd_tol, 100_000,
                            factors, orders, sizes)
        # the block's part of U_k w: Eᵀ (E w) over its rows outside chunk k
        for k in range(folds):
            for i in range(n):
                weights[k, i] = coef[first + k, neurons[i]]
        _corrections(train, rows, chunk, working, weights, n, e_w, corrections)
        still_open = _duality_gaps(shared, own, corrections, n, neurons, means, linear,
                                   counts, first, coef, alpha, y_norms, tol, member, violation)
        if still_open == 0:
            break
        threshold = 0.0
        for k in range(folds):
            threshold = max(threshold, cd_tol * alpha[first + k])
        candidates = np.flatnonzero(violation > threshold)
        pending = candidates[np.argsort(-violation[candidates])[:grow]]
        if pending.shape[0] == 0:  # the gap is open only inside the working set: solve tighter
            cd_tol = max(cd_tol / 10, 1e-10)
    outcome[0], outcome[1] = rounds, still_open


@numba.njit(cache=True, nogil=True)
def _squared_errors(predicted, intercepts, y, member, n_test, sse):  # pragma: no cover
    """``sse[part, p]``: Σ (y − prediction)² of problem p (target ``p // K``) over its pairs in
    the test part (rows ``< n_test`` of ``predicted [rows, P]``) and the validation part."""
    rows, targets = member.shape
    folds = predicted.shape[1] // targets
    for r in range(rows):
        which = 0 if r < n_test else 1
        for f in range(targets):
            if member[r, f]:
                for k in range(folds):
                    p = f * folds + k
                    error = y[r, f] - predicted[r, p] - intercepts[p]
                    sse[which, p] += error * error


@lru_cache(maxsize=1)
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="rankscope-lasso")


class _Threads:
    """A layer's work on as many threads as numpy's BLAS may use, BLAS itself held to one
    thread meanwhile (``with _Threads() as threads``): the products are split among the
    threads as the per-feature kernels are. Idle BLAS threads spin for a while after each
    product, on the cores the kernels need (on two cores, one of them); held to one thread,
    BLAS wakes none.

    The hold is threadpoolctl's, so its rule applies: one thread at a time controls OpenBLAS,
    the others' limits are ignored. An overlapping solve from another thread keeps the first
    one's thread count (BLAS was held when it looked) and shares its hold while it lasts."""

    _lock = threading.Lock()
    _holders = 0
    _workers = 1

    def __enter__(self):
        with _Threads._lock:
            if _Threads._holders == 0:
                libraries = _blas().select(user_api="blas").lib_controllers
                _Threads._workers = min((lib.num_threads for lib in libraries), default=1)
            _Threads._holders += 1
            self.workers = _Threads._workers
        self._hold = _blas().limit(limits=1, user_api="blas").__enter__()
        return self

    def __exit__(self, *exc):
        self._hold.__exit__(*exc)
        with _Threads._lock:
            _Threads._holders -= 1

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
    """The layer-independent part of a sweep: the shared split, and every problem's rows and
    targets.

    Built once per probing plan (``core.probing.ProbePlan``: the part of every pair, each
    target's rows in split order, train/validation sizes, fold of each train row, raw target
    values) and reused by every layer and pooling.
    """

    def __init__(self, plan, n_pairs: int, folds: int):
        part = np.asarray(plan.part)
        if len(part) != n_pairs:
            raise ValueError(f"the plan splits {len(part)} pairs, not {n_pairs}")
        F, K = len(plan.names), folds
        self.n_targets, self.folds, self.n_pairs = F, K, n_pairs
        problems = F * K
        # train pairs by fold chunk, then pair; validation and test pairs ascending
        self.train_pairs = np.flatnonzero(part < K)
        self.train_pairs = self.train_pairs[np.argsort(part[self.train_pairs], kind="stable")]
        self.bounds = np.searchsorted(part[self.train_pairs], np.arange(K + 1))
        position = np.full(n_pairs, -1)
        position[self.train_pairs] = np.arange(len(self.train_pairs))
        n_train_pairs = len(self.train_pairs)
        # the products of step 2: each target's standardised y on its train pairs (else 0),
        # then its membership (1 there, else 0)
        self.products = np.zeros((n_train_pairs, 2 * F), np.float32)
        self.counts = np.zeros(problems)  # m per problem
        self.target_means = np.zeros(problems)  # ȳ per problem
        self.y_norms = np.zeros(problems)  # ‖y_c‖² per problem
        self.train_counts = np.zeros(F)
        self.train_means = np.zeros(F)
        # per target: the train positions its block sums (its own when its set is small, else
        # the ones it leaves out), their chunk bounds, and which of the two
        self.block_rows, self.block_bounds, self.own_rows = [], [], []
        evaluation = []  # per target: its test and validation y, in its rows' order
        for f in range(F):
            rows, n_train, n_val = plan.rows[f], plan.n_train[f], plan.n_val[f]
            fold = np.asarray(plan.fold[f])
            if not (np.array_equal(part[rows[:n_train]], fold)
                    and (part[rows[n_train:n_train + n_val]] == K).all()
                    and (part[rows[n_train + n_val:]] == K + 1).all()):
                raise ValueError(f"target {plan.names[f]!r} is not split as the plan's pairs")
            raw = np.asarray(plan.targets[f], np.float64)
            sd = raw[:n_train].std(ddof=1)  # build_design's z-score (torch's unbiased std)
            y = (raw - raw[:n_train].mean()) / (sd if sd > 0 else 1.0)
            at = position[rows[:n_train]]
            self.products[at, f] = y[:n_train]
            self.products[at, F + f] = 1
            self.train_counts[f], self.train_means[f] = n_train, y[:n_train].mean()
            small = n_train <= n_train_pairs - n_train
            inside = np.zeros(n_train_pairs, bool)
            inside[at] = True
            correction = np.flatnonzero(inside if small else ~inside)
            self.block_rows.append(correction)
            self.block_bounds.append(np.searchsorted(correction, self.bounds))
            self.own_rows.append(small)
            # fold k's train rows: all but chunk k's
            kept = n_train - np.bincount(fold, minlength=K)
            means = (y[:n_train].sum() - np.bincount(fold, y[:n_train], K)) / kept
            squares = np.square(y[:n_train]).sum() - np.bincount(fold, np.square(y[:n_train]), K)
            self.counts[f * K:(f + 1) * K] = kept
            self.target_means[f * K:(f + 1) * K] = means
            self.y_norms[f * K:(f + 1) * K] = squares - kept * means * means
            evaluation.append((y[n_train + n_val:], y[n_train:n_train + n_val]))
        # test and validation parts: each target's y on the part's pairs, and its membership
        parts, pairs = [], []
        for which, index in ((K + 1, 0), (K, 1)):
            pairs.append(np.flatnonzero(part == which))
            at = np.full(n_pairs, -1)
            at[pairs[-1]] = np.arange(len(pairs[-1]))
            y, member = np.zeros((len(pairs[-1]), F)), np.zeros((len(pairs[-1]), F), bool)
            for f in range(F):
                n_train, n_val = plan.n_train[f], plan.n_val[f]
                rows = plan.rows[f][n_train + n_val:] if index == 0 else \
                    plan.rows[f][n_train:n_train + n_val]
                y[at[rows], f], member[at[rows], f] = evaluation[f][index], True
            parts.append((y, member))
        self.evaluation_pairs = np.concatenate(pairs)  # test pairs, then validation pairs
        self.n_test_pairs = len(pairs[0])
        # per target: its test pairs' count; per part and target: Σ (y − ȳ)², R²'s denominator
        self.evaluation_y = np.concatenate([y for y, _ in parts])
        self.evaluation_member = np.concatenate([member for _, member in parts])
        self.test_sizes = parts[0][1].sum(0)  # [F]
        self.spreads = np.array([
            np.maximum((np.square(y - (y * member).sum(0) / np.maximum(member.sum(0), 1))
                        * member).sum(0), 1e-12) for y, member in parts])
        self._spare: list[_Workspace] = []  # kept between layers (see _Workspace)


class _Workspace:
    """The large arrays of one layer's solve, kept for the next layer: fresh arrays of a few
    MiB are paid again in page faults on first touch (on a virtual machine, milliseconds per
    layer), kept ones are not. One per concurrent solve (``solve_layer`` takes one from
    ``LassoProblems._spare`` and puts it back); the first layer still pays for it, so it
    holds no more than the solve needs at once."""

    def __init__(self, problems: LassoProblems, d: int):
        K, F = problems.folds, problems.n_targets
        self.d = d
        self.train = np.empty((len(problems.train_pairs), d), np.float32)
        self.squared = np.empty((len(problems.train_pairs), d), np.float32)
        self.evaluation = np.empty((len(problems.evaluation_pairs), d), np.float32)
        self.chunks = np.empty((K, d, d), np.float32)
        self.total = np.empty((d, d), np.float32)
        self.sums = np.empty((K, d, 2 * F), np.float32)
        self.predicted = np.empty((len(problems.evaluation_pairs), F * K), np.float32)


def solve_layer(activations: np.ndarray, problems: LassoProblems, alpha: float,
                tol: float = 1e-4, start: int = 16, grow: int = 16,
                max_rounds: int = 100) -> LassoFit:
    """Fit every (target, fold) Lasso of one layer's activations ``[n_pairs, d]``.

    Args:
        alpha: the Lasso's α on the standardised design (scikit-learn's objective
            ``1/(2m) ‖y_c − X_c w‖² + α ‖w‖₁``).
        tol: duality-gap tolerance relative to ‖y_c‖² (scikit-learn's ``tol``). The Gram
            matrices are float32, which resolves gaps down to about 1e-6.
        start, grow: first working-set size per target, and most neurons added per round.
    """
    raw = np.asarray(activations, dtype=np.float32)
    if raw.ndim != 2 or len(raw) != problems.n_pairs:
        raise ValueError(f"activations of shape {raw.shape} do not fit problems built for "
                         f"{problems.n_pairs} pairs")
    d = raw.shape[1]
    try:
        work = problems._spare.pop()  # atomic: concurrent solves each get their own
    except IndexError:
        work = None
    if work is None or work.d != d:
        work = _Workspace(problems, d)
    try:
        with _Threads() as threads:
            return _solve_layer(raw, problems, alpha, tol, start, grow, max_rounds, work,
                                threads)
    finally:
        problems._spare.append(work)


def _solve_layer(raw, problems, alpha, tol, start, grow, max_rounds, work, threads) -> LassoFit:
    d = raw.shape[1]
    F, K, m = problems.n_targets, problems.folds, problems.counts
    P = F * K
    # step 2: centred train pairs (the intercepts absorb the shift), chunk Grams and products
    mean = raw.mean(0)
    train, bounds = work.train, problems.bounds
    chunks, sums = work.chunks, work.sums  # per chunk: Σ x·y and Σ x of each target's rows
    squares = np.empty((K, d, F), np.float32)  # per chunk: Σ x² of each target's rows

    def chunk_products(j: int) -> None:
        lo, hi = bounds[j], bounds[j + 1]
        block = np.take(raw, problems.train_pairs[lo:hi], axis=0, out=train[lo:hi])
        block -= mean
        np.matmul(block.T, block, out=chunks[j])
        products = problems.products[lo:hi]
        np.matmul(block.T, products, out=sums[j])
        np.matmul(np.square(block, out=work.squared[lo:hi]).T, products[:, F:], out=squares[j])

    threads.each(chunk_products, range(K))
    total = np.sum(chunks, axis=0, out=work.total)
    shared = chunks  # from here on, fold k's shared Gram (every chunk's but k's) at k
    for j in range(K):
        np.subtract(total, chunks[j], out=shared[j])
    squares = squares.sum(0, dtype=np.float64).T  # [F, d]
    sums = sums.astype(np.float64)
    xy, x1 = sums[:, :, :F].transpose(2, 0, 1), sums[:, :, F:].transpose(2, 0, 1)  # [F, K, d]
    n = problems.train_counts[:, None]
    first = x1.sum(1)
    variance = np.maximum((squares - first * first / n) / (n - 1), 0)
    # build_design's one scalar per target: torch's median, the lower middle value
    scale = np.sort(np.sqrt(variance), axis=1)[:, (d - 1) // 2]
    scale[scale <= 0] = 1.0
    alphas = np.repeat(alpha * scale, K)  # α on the raw activations
    # fold k of target f: x̄ and b = X_cᵀ y_c / m over its train rows outside chunk k
    counts = m.reshape(F, K, 1)
    means = (first[:, None] - x1) / counts
    linear = (xy.sum(1)[:, None] - xy) / counts - problems.target_means.reshape(F, K, 1) * means
    correlation = xy.sum(1) - problems.train_means[:, None] * first
    coef = np.zeros((P, d))
    outcome = np.zeros((F, 2), np.int64)  # rounds and folds left open, per target

    def solve(f: int) -> None:
        _solve_target(train, problems.block_rows[f], problems.block_bounds[f],
                      problems.own_rows[f], shared, means[f], linear[f], m, f * K, coef,
                      alphas, problems.y_norms, tol, np.argsort(-np.abs(correlation[f]))[:start],
                      grow, max_rounds, outcome[f])

    # the largest corrections first, so the threads finish together
    threads.each(solve, np.argsort([-len(rows) for rows in problems.block_rows],
                                   kind="stable"))
    rounds, open_folds = outcome.T
    if open_folds.any():
        warnings.warn(f"the Lasso probes of {int((open_folds > 0).sum())} target(s) did not "
                      f"reach the duality-gap tolerance {tol:g} in {max_rounds} rounds",
                      RuntimeWarning, stacklevel=2)
    # step 6: every fold model on the test and validation parts, in row blocks
    intercepts = problems.target_means - np.einsum("pd,pd->p", means.reshape(P, d), coef)
    weights, predicted = coef.T.astype(np.float32), work.predicted
    step = 256  # rows per product (fixed: the same products on any number of threads)

    def predict(lo: int) -> None:
        rows = np.take(raw, problems.evaluation_pairs[lo:lo + step], axis=0,
                       out=work.evaluation[lo:lo + step])
        rows -= mean
        np.matmul(rows, weights, out=predicted[lo:lo + step])

    threads.each(predict, range(0, len(predicted), step))
    sse = np.zeros((2, P))  # test, validation
    _squared_errors(predicted, intercepts, problems.evaluation_y, problems.evaluation_member,
                    problems.n_test_pairs, sse)
    sse = sse.reshape(2, F, K)
    r2_test, r2_val = 1 - sse / problems.spreads[:, :, None]
    mse = sse[0] / np.maximum(problems.test_sizes, 1)[:, None]
    return LassoFit((coef * np.repeat(scale, K)[:, None]).reshape(F, K, d), r2_test, r2_val,
                    mse, int(rounds.max()), not open_folds.any())


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the kernels, on a problem too small to matter, and
    find numpy's BLAS (threadpoolctl's scan of the loaded libraries): the once-per-process
    set-up of the solver."""
    _blas()
    chunks, rows = np.ones((2, 1, 1), np.float32), np.zeros(1, np.int64)
    _solve_target(np.ones((2, 1), np.float32), rows, np.array([0, 1, 1]), False, chunks,
                  np.zeros((2, 1)), np.ones((2, 1)), np.full(2, 2.0), 0,
                  np.zeros((2, 1)), np.full(2, 0.1), np.ones(2), 1e-4, rows, 1, 1,
                  np.zeros(2, np.int64))
    _squared_errors(np.zeros((2, 2), np.float32), np.zeros(2), np.zeros((2, 1)),
                    np.ones((2, 1), bool), 1, np.zeros((2, 2)))


# --------------------------------------------------------------------------- torch solvers
def _training_view(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor):
    """Drop rows past the last training row and centre per problem.

    Returns X, y, mask (trimmed), weights ``[F, K, n]`` (mask as floats), train count
    ``[F, K]``, feature means ``[F, K, d]`` and target means ``[F, K]`` over each problem's
    training rows.
    """
    rows = int(mask.any(1).any(0).nonzero().max()) + 1
    X, y, mask = X[:, :rows], y[:, :rows], mask[..., :rows]
    weights = mask.to(X.dtype)
    count = weights.sum(-1).clamp(min=1)
    mean_x = torch.bmm(weights, X) / count[..., None]
    mean_y = (weights * y[:, None, :]).sum(-1) / count
    return X, y, mask, weights, count, mean_x, mean_y


def fit_lasso(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, alpha: float,
              tol: float = 1e-3, working_set: int = 32, max_outer: int = 50,
              max_inner: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve every problem ``min_w 1/(2n) ‖y_c − X_c w‖² + α ‖w‖₁`` at once (intercept fitted).

    Args:
        X: ``[F, n, d]`` designs; y: ``[F, n]`` targets; mask: ``[F, K, n]`` training rows of
            problem (f, k). X_c, y_c: centred on the problem's training rows (scikit-learn's
            ``Lasso(alpha, fit_intercept=True)`` objective).
        tol: stop when no coefficient violates the optimality (KKT) conditions by more than
            ``tol · α``.

    Returns:
        coefficients ``[F, K, d]`` and intercepts ``[F, K]``.
    """
    X, y, mask, weights, count, mean_x, mean_y = _training_view(X, y, mask)
    n_f, n_k, rows = mask.shape
    d = X.shape[-1]
    y_centred = (y[:, None, :] - mean_y[..., None]) * weights  # [F, K, n]
    linear_all = torch.bmm(y_centred, X) / count[..., None]  # X_cᵀ y_c / n  [F, K, d]
    by_neuron = X.transpose(1, 2).reshape(n_f * d, rows)  # row f·d + j: neuron j of target f
    owner = (torch.arange(n_f, device=X.device) * d)[:, None, None]
    W = torch.zeros(n_f, n_k, d, dtype=X.dtype, device=X.device)

    def gradient(W):
        # X_cᵀ (y_c − X_c w) / n; the residual sums to 0 on training rows, so X_cᵀ r = Xᵀ r
        fitted = torch.bmm(W, X.transpose(1, 2)) - (mean_x * W).sum(-1, keepdim=True)
        residual = y_centred - fitted * weights
        return torch.bmm(residual, X) / count[..., None]

    for outer in range(max_outer):
        g = linear_all if outer == 0 else gradient(W)  # at W = 0 the gradient is X_cᵀ y_c / n
        active = W != 0
        violation = torch.where(active, (g - alpha * torch.sign(W)).abs(),
                                (g.abs() - alpha).clamp(min=0))
        if float(violation.max()) <= tol * alpha:
            break
        size = min(d, max(working_set, int(active.sum(-1).max()) + working_set // 2))
        priority = torch.where(active, torch.full_like(g, math.inf), g.abs())
        index = priority.topk(size, dim=-1).indices  # [F, K, s]: active ∪ worst violators
        columns = by_neuron.index_select(0, (owner + index).reshape(-1)).view(n_f, n_k, size, rows)
        mean_ws = torch.gather(mean_x, 2, index)
        gram = (torch.matmul(columns * weights[:, :, None, :], columns.transpose(-1, -2))
                / count[..., None, None]) - mean_ws[..., :, None] * mean_ws[..., None, :]
        linear = torch.gather(linear_all, 2, index)
        start = torch.gather(W, 2, index)
        solved = _active_set_lasso(gram, linear, start, alpha, tol, max_inner)
        W = torch.zeros_like(W).scatter_(2, index, solved)
    intercept = mean_y - (mean_x * W).sum(-1)
    return W, intercept


def fit_lasso_sklearn(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, alpha: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same problems as :func:`fit_lasso`, one scikit-learn ``Lasso`` per feature and fold
    (coordinate descent; the faster choice on a CPU, see ``ProbeConfig.solver``)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import Lasso

    X_np, y_np, mask_np = X.cpu().numpy(), y.cpu().numpy(), mask.cpu().numpy()
    coef = np.zeros((mask.shape[0], mask.shape[1], X.shape[-1]), dtype=np.float32)
    intercept = np.zeros(mask.shape[:2], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for f in range(mask.shape[0]):
            for k in range(mask.shape[1]):
                rows = mask_np[f, k]
                model = Lasso(alpha=alpha).fit(X_np[f][rows], y_np[f][rows])
                coef[f, k], intercept[f, k] = model.coef_, model.intercept_
    return (torch.as_tensor(coef, device=X.device, dtype=X.dtype),
            torch.as_tensor(intercept, device=X.device, dtype=X.dtype))


def _active_set_lasso(gram: torch.Tensor, linear: torch.Tensor, start: torch.Tensor,
                      alpha: float, tol: float, max_iter: int, add_per_step: int = 8
                      ) -> torch.Tensor:
    """``argmin ½ vᵀ G v − bᵀ v + α ‖v‖₁`` for a batch ``[..., s, s]`` of small problems.

    Feature-sign search (Lee, Battle, Raina & Ng 2007), batched: fix a sign for every non-zero
    coefficient and for the worst optimality violators among the zeros, solve the sign-fixed
    system G_AA v_A = b_A − α θ_A exactly, and move towards its solution up to the first
    coefficient that would change sign (it becomes 0). A step that would not lower the true
    objective is replaced by a proximal-gradient step, so the objective never rises. Each step
    is one batched linear solve; a few dozen replace thousands of coordinate updates.
    """
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    jitter = 1e-6 * eye
    # Gershgorin bound on the largest eigenvalue: a valid (safe) step for the fallback
    lipschitz = gram.abs().sum(-1).amax(-1).clamp(min=1e-12)

    def objective(x):
        quad = 0.5 * (x * torch.matmul(gram, x.unsqueeze(-1)).squeeze(-1)).sum(-1)
        return quad - (linear * x).sum(-1) + alpha * x.abs().sum(-1)

    v = start.clone()
    value = objective(v)
    k = min(add_per_step, gram.shape[-1])
    for _ in range(max_iter):
        grad = torch.matmul(gram, v.unsqueeze(-1)).squeeze(-1) - linear
        zero = v == 0
        violation = torch.where(zero, (grad.abs() - alpha).clamp(min=0),
                                (grad + alpha * torch.sign(v)).abs())
        if float(violation.max()) <= tol * alpha:
            break
        entering = torch.zeros_like(zero)
        worst = torch.where(zero, violation, torch.zeros_like(violation)).topk(k, dim=-1)
        entering.scatter_(-1, worst.indices, worst.values > 0)
        theta = torch.where(zero, -torch.sign(grad) * entering, torch.sign(v))
        active = theta != 0
        pair = active[..., :, None] & active[..., None, :]
        system = torch.where(pair, gram + jitter, torch.zeros_like(gram)) + eye * (~active)[..., None, :]
        rhs = torch.where(active, linear - alpha * theta, torch.zeros_like(v))
        target = torch.linalg.solve_ex(system, rhs.unsqueeze(-1))[0].squeeze(-1)
        flips = active & (theta * target < 0) & ~zero
        crossing = torch.where(flips, v / (v - target), torch.full_like(v, math.inf))
        t = crossing.amin(-1, keepdim=True).clamp(max=1.0)
        step = v + t * (target - v)
        step = torch.where((crossing <= t) | (active & (theta * step < 0)), torch.zeros_like(step), step)
        step_value = objective(step)
        proximal = v - grad / lipschitz[..., None]
        proximal = torch.sign(proximal) * (proximal.abs() - alpha / lipschitz[..., None]).clamp(min=0)
        better = (step_value <= value)[..., None]
        v = torch.where(better, step, proximal)
        value = objective(v)
    return v


def fit_ridge(X: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, alpha: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve every problem ``min_w ‖y_c − X_c w‖² + α ‖w‖²`` (scikit-learn's ``Ridge``).

    Each feature's Gram over all its training rows is computed once; a fold's Gram is that
    minus the Gram of the rows it leaves out (exact, a fraction of the cost).
    """
    X, y, mask, weights, count, mean_x, mean_y = _training_view(X, y, mask)
    n_f, n_k, rows = mask.shape
    d = X.shape[-1]
    any_train = mask.any(1).to(X.dtype)  # [F, n]
    full = torch.bmm((X * any_train[..., None]).transpose(1, 2), X)  # [F, d, d]
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    coef = torch.zeros(n_f, n_k, d, dtype=X.dtype, device=X.device)
    for k in range(n_k):
        left_out = (any_train - weights[:, k]).clamp(min=0)
        # the left-out rows first, gathered: K× less work than a product over all rows
        size = int(left_out.sum(1).max())
        index = torch.argsort(left_out, dim=1, descending=True, stable=True)[:, :size]
        part = torch.gather(X, 1, index[..., None].expand(-1, -1, d))
        part_w = torch.gather(left_out, 1, index)
        gram = full - torch.bmm((part * part_w[..., None]).transpose(1, 2), part)
        gram = gram - count[:, k, None, None] * mean_x[:, k, :, None] * mean_x[:, k, None, :]
        rhs = torch.bmm(((y - mean_y[:, k, None]) * weights[:, k])[:, None, :], X)[:, 0]
        # Cholesky, not LU: the system is positive definite, and torch 2.13's batched LU
        # (MKL getrf) fails with "Pivots given to lu_solve…" on 2 threads at d = 384
        factor = torch.linalg.cholesky(gram + alpha * eye)
        coef[:, k] = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    intercept = mean_y - (mean_x * coef).sum(-1)
    return coef, intercept
