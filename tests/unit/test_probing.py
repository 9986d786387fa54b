"""Probes on planted signals, against scikit-learn, and through the store (cache, resume)."""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

from core.errors import InputError
from core.probing import (ProbeConfig, balanced_indices, build_design, collection_gaps,
                          make_plan, neuron_histogram, positives_negatives, probe_layer,
                          split_pairs)
from core.solvers import LassoProblems, _Threads, fit_lasso, fit_ridge, solve_layer

N_PAIRS, D = 1200, 48


@pytest.fixture(scope="module")
def planted():
    """Layer 0: noise. Layer 1: neuron 7 equals the feature ``bm25`` (the planted signal);
    ``stream_length`` is in no neuron. Both spread widely."""
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"bm25": rng.gamma(2.0, 2.0, N_PAIRS),
                             "stream_length": rng.normal(size=N_PAIRS)})
    layer0 = rng.normal(size=(N_PAIRS, D)).astype(np.float32)
    layer1 = rng.normal(size=(N_PAIRS, D)).astype(np.float32)
    layer1[:, 7] = features.bm25
    return features, [layer0, layer1]


def test_planted_neuron_gives_r2_near_one_and_noise_gives_zero(planted):
    features, layers = planted
    config = ProbeConfig(features=("bm25", "stream_length"), estimators=("lasso", "ridge"))
    plan = make_plan(features, config)
    noise = probe_layer(layers[0], plan, config).set_index(["feature", "estimator"])
    signal = probe_layer(layers[1], plan, config).set_index(["feature", "estimator"])
    assert signal.loc[("bm25", "lasso"), "r2_mean"] > 0.99
    assert signal.loc[("bm25", "ridge"), "r2_mean"] > 0.99
    assert abs(noise.loc[("bm25", "lasso"), "r2_mean"]) < 0.05
    assert signal.loc[("bm25", "lasso"), "n_nonzero"] == 1  # only the planted neuron
    assert json.loads(signal.loc[("bm25", "lasso"), "neurons"])[0][0] == 7
    assert abs(signal.loc[("stream_length", "lasso"), "r2_mean"]) < 0.05


@pytest.fixture(scope="module")
def correlated_design():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(900, 6))
    acts = latent @ rng.normal(size=(6, 40)) + 0.4 * rng.normal(size=(900, 40))
    targets = pd.DataFrame({f"t{i}": latent[:, i] + 0.3 * latent[:, (i + 1) % 6] ** 2
                            + 0.5 * rng.normal(size=900) for i in range(4)})
    config = ProbeConfig(groups=tuple(targets.columns))
    plan = make_plan(targets, config)
    return build_design(acts, plan, 5, dtype=torch.float64), plan


@pytest.mark.parametrize("estimator", ["lasso", "ridge"])
def test_batched_probes_match_scikit_learn(correlated_design, estimator):
    from sklearn.linear_model import Lasso, Ridge
    from sklearn.metrics import r2_score

    design, plan = correlated_design
    if estimator == "lasso":
        coef, intercept = fit_lasso(design.X, design.y, design.train, 0.1, tol=1e-4)
    else:
        coef, intercept = fit_ridge(design.X, design.y, design.train, 1.0)
    X, y = design.X.numpy(), design.y.numpy()
    for f in range(len(plan.names)):
        test = design.test[f].numpy()
        for k in range(5):
            train = design.train[f, k].numpy()
            reference = (Lasso(alpha=0.1, tol=1e-8, max_iter=100_000) if estimator == "lasso"
                         else Ridge(alpha=1.0)).fit(X[f][train], y[f][train])
            ours = X[f][test] @ coef[f, k].numpy() + float(intercept[f, k])
            assert abs(r2_score(y[f][test], ours)
                       - r2_score(y[f][test], reference.predict(X[f][test]))) < 1e-4
            np.testing.assert_allclose(coef[f, k].numpy(), reference.coef_, atol=2e-3)
            if estimator == "lasso":
                assert set(np.flatnonzero(coef[f, k].numpy())) == set(np.flatnonzero(reference.coef_))


def test_balanced_sets_have_equal_bins_and_merge_rare_values():
    rng = np.random.default_rng(0)
    values = rng.exponential(size=5000)
    rows = balanced_indices(values, bins=10, min_bin=20, max_size=None, rng=rng)
    edges = np.quantile(values, np.linspace(0, 1, 11))
    counts = np.bincount(np.clip(np.searchsorted(edges, values[rows], side="right") - 1, 0, 9))
    assert len(set(counts)) == 1 and counts[0] == 500
    # a discrete feature with one rare value: the rare value is merged, not the set shrunk to it
    discrete = np.r_[np.zeros(5), np.ones(600), np.full(600, 2.0)]
    rows = balanced_indices(discrete, bins=10, min_bin=20, max_size=None, rng=rng)
    assert len(rows) >= 1000
    assert len(balanced_indices(np.ones(100), 10, 20, None, rng)) == 0  # constant: nothing


@pytest.mark.parametrize("changes,message", [
    ({"folds": 0}, "Folds must be at least 2"), ({"lasso_alpha": -0.1}, "positive"),
    ({"shares": (0.5, 0.5, 0.5)}, "summing to 1"),
    ({"features": ("bm42",)}, "Features: 'bm42' is not one of"),
    ({"poolings": ("last",)}, "Pooling: 'last' is not one of"),
    ({"features": (), "groups": ()}, "at least one"),
    ({"solver": "magic"}, "Solver: 'magic' is not one of"),
    ({"groups": ("bm25 +",)}, "cannot read feature group"),
    ({"max_set_size": 20}, "too small for 5 folds"),
])
def test_impossible_configs_are_refused(changes, message):
    """Each is one sentence naming the field as the page labels it (the CLI says the same)."""
    from core.analysis import registered

    settings = {"features": ("bm25",), **changes}
    with pytest.raises(InputError, match=message):
        registered()["probe"].validate(ProbeConfig(**settings))


def test_summaries(planted):
    features, layers = planted
    config = ProbeConfig(features=("bm25", "stream_length"))
    plan = make_plan(features, config)
    frames = []
    for layer, acts in enumerate(layers, start=1):
        frame = probe_layer(acts, plan, config)
        frames.append(frame.assign(layer=layer, pooling="mean", ranker="toy", collection="c"))
    frame = pd.concat(frames)
    summary = positives_negatives(frame).set_index("feature")
    assert summary.loc["bm25", "verdict"].startswith("encoded")
    assert summary.loc["bm25", "best_layer"] == 2
    assert summary.loc["stream_length", "verdict"].startswith("absent")
    histogram = neuron_histogram(frame)
    assert histogram[(histogram.layer == 2) & (histogram.neurons == "1")].probes.item() == 1


def test_batched_and_sklearn_solvers_give_the_same_probes(planted):
    features, layers = planted
    mixed = layers[1] + 0.5 * layers[0]  # the planted neuron among correlated noise
    results = {}
    for solver in ("working_set", "batched", "sklearn"):
        config = ProbeConfig(features=("bm25", "stream_length"), solver=solver)
        plan = make_plan(features, config)
        results[solver] = probe_layer(mixed, plan, config).set_index("feature")
    for solver in ("working_set", "batched"):
        np.testing.assert_allclose(results[solver].r2_mean, results["sklearn"].r2_mean, atol=1e-3)
        assert (results[solver].n_nonzero - results["sklearn"].n_nonzero).abs().max() <= 1
    for name in ("bm25", "stream_length"):  # the same strongest neurons
        ours, theirs = (json.loads(results[solver].loc[name, "neurons"])[:3]
                        for solver in ("working_set", "sklearn"))
        assert [i for i, _ in ours] == [i for i, _ in theirs]
        np.testing.assert_allclose([c for _, c in ours], [c for _, c in theirs], atol=2e-3)


def test_collection_gaps_compare_every_layer():
    frame = pd.DataFrame({"feature": ["bm25"] * 4, "layer": [1, 2, 1, 2],
                          "collection": ["demo", "demo", "cranfield", "cranfield"],
                          "r2_mean": [0.8, 0.9, 0.5, 0.2]})
    table = collection_gaps(frame).set_index("layer")
    assert list(table.columns) == ["feature", "cranfield", "demo", "demo − cranfield"]
    np.testing.assert_allclose(table["demo − cranfield"], [0.3, 0.7])


@pytest.fixture(scope="module")
def wide_problem():
    """Activations with 160 neurons from 12 latent factors; targets need many neurons, so the
    working sets must grow over several rounds."""
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(1500, 12))
    acts = (latent @ rng.normal(size=(12, 160)) + 0.5 * rng.normal(size=(1500, 160))
            + rng.normal(size=160) * 5).astype(np.float32)  # large means: centring matters
    acts[:, 11] = 0.0  # a constant neuron never enters
    targets = pd.DataFrame({f"t{i}": latent[:, i] - 0.4 * latent[:, i + 1] * latent[:, i + 2]
                            + 0.3 * rng.normal(size=1500) for i in range(5)})
    # a target known on 450 pairs only: its small set is solved from its own rows' Gram, the
    # others from the shared Gram minus the few pairs their sets leave out
    targets["small"] = np.where(np.arange(1500) < 450,
                                latent[:, 5] + 0.3 * rng.normal(size=1500), np.nan)
    config = ProbeConfig(groups=tuple(targets.columns))
    return acts, make_plan(targets, config)


def test_every_feature_is_split_as_its_pairs_fall_in_one_shared_split(wide_problem):
    _, plan = wide_problem
    assert len(plan.part) == 1500 and np.bincount(plan.part).tolist() == [180] * 5 + [300, 300]
    for f, rows in enumerate(plan.rows):
        n_train, n_val = plan.n_train[f], plan.n_val[f]
        assert (plan.part[rows[:n_train]] == plan.fold[f]).all()
        assert (plan.part[rows[n_train:n_train + n_val]] == 5).all()
        assert (plan.part[rows[n_train + n_val:]] == 6).all()
        assert abs(n_train / len(rows) - 0.6) < 0.06 and abs(n_val / len(rows) - 0.2) < 0.06
    assert len(plan.rows[plan.names.index("small")]) <= 450
    # the same seed splits the same way; another seed differently
    targets = pd.DataFrame({"t": np.arange(1500.0)})
    again = make_plan(targets, ProbeConfig(groups=("t",)))
    np.testing.assert_array_equal(again.part, plan.part)
    assert (make_plan(targets, ProbeConfig(groups=("t",), seed=1)).part != plan.part).any()


def test_a_set_that_leaves_a_part_almost_empty_is_skipped_with_its_reason():
    config = ProbeConfig(groups=("rare",), min_bin=2)
    known = np.flatnonzero(split_pairs(300, config) < 5)[:40]  # 40 pairs, all in train folds
    values = np.full(300, np.nan)
    values[known] = np.arange(40.0)
    plan = make_plan(pd.DataFrame({"rare": values}), config)
    assert plan.names == [] and "fewer than 2 in a fold" in plan.skipped["rare"]


def test_working_set_solver_matches_scikit_learn_on_every_fold(wide_problem):
    from sklearn.linear_model import Lasso
    from sklearn.metrics import mean_squared_error, r2_score

    acts, plan = wide_problem
    problems = LassoProblems(plan, len(acts), 5)
    assert set(problems.own_rows) == {True, False}  # both ways of forming a fold's Gram
    fit = solve_layer(acts, problems, 0.05, tol=1e-6, start=4, grow=3)
    assert fit.converged and fit.rounds > 3  # grown from 4 neurons, 3 at a time
    design = build_design(acts, plan, 5, dtype=torch.float64)
    X, y = design.X.numpy(), design.y.numpy()
    for f in range(len(plan.names)):
        test, val = design.test[f].numpy(), design.val[f].numpy()
        for k in range(5):
            train = design.train[f, k].numpy()
            reference = Lasso(alpha=0.05, tol=1e-10, max_iter=100_000).fit(X[f][train],
                                                                           y[f][train])
            Xc, yc = X[f][train] - X[f][train].mean(0), y[f][train] - y[f][train].mean()

            def objective(w):
                return ((yc - Xc @ w) ** 2).mean() / 2 + 0.05 * np.abs(w).sum()

            # the same optimum: objectives within the gap tolerance; collinear neurons
            # leave the coefficients themselves less determined
            assert objective(fit.coef[f, k]) <= objective(reference.coef_) + 1e-6 * (yc @ yc) / len(yc)
            np.testing.assert_allclose(fit.coef[f, k], reference.coef_, atol=1e-3)
            assert (fit.coef[f, k] != 0).sum() >= 8
            assert fit.coef[f, k, 11] == 0
            for rows, ours in ((test, fit.r2_test), (val, fit.r2_val)):
                expected = r2_score(y[f][rows], reference.predict(X[f][rows]))
                assert abs(ours[f, k] - expected) < 1e-4
            assert fit.mse[f, k] == pytest.approx(
                mean_squared_error(y[f][test], reference.predict(X[f][test])), rel=1e-3)


def test_exact_solves_keep_their_cholesky_factor_through_support_changes():
    """The coordinate descent's exact solves remove and append support neurons in a kept
    factor; after any sequence of changes it must still factor the Gram on the support."""
    from core.solvers import _factor_append, _factor_remove, _factor_solve

    rng = np.random.default_rng(3)
    A = rng.standard_normal((60, 12))
    gram = A.T @ A / 60
    factor, order, size = np.zeros((12, 12)), np.zeros(12, np.int64), 0
    for step, neuron in enumerate([4, 0, 9, 2, 7, 11, 5, 1]):
        assert _factor_append(factor, order, size, gram, neuron)
        size += 1
        if step in (3, 5, 7):  # drop one from the front, the middle, the end
            _factor_remove(factor, order, size, {3: 0, 5: size // 2, 7: size - 1}[step])
            size -= 1
        support = order[:size]
        L = factor[:size, :size]
        np.testing.assert_allclose(L @ L.T, gram[np.ix_(support, support)], atol=1e-12)
        assert np.allclose(L, np.tril(L)) and (np.diag(L) > 0).all()
    rhs, solution = rng.standard_normal(size), np.zeros(size)
    _factor_solve(factor, size, rhs, solution)
    np.testing.assert_allclose(gram[np.ix_(support, support)] @ solution, rhs, atol=1e-10)
    # neuron 12 duplicates one in the support, so the Gram with it is singular: refused, and
    # the factor's rows so far are left as they were
    A = np.c_[A, A[:, support[0]]]
    padded = np.zeros((13, 13))
    padded[:12, :12] = factor
    assert not _factor_append(padded, np.r_[order, 0], size, A.T @ A / 60, 12)
    np.testing.assert_array_equal(padded[:size, :size], factor[:size, :size])


def test_working_set_solver_stops_where_scikit_learn_does(wide_problem):
    """Default tolerance: scikit-learn's duality-gap rule; R² agrees with its default fit."""
    from sklearn.linear_model import Lasso
    from sklearn.metrics import r2_score

    acts, plan = wide_problem
    fit = solve_layer(acts, LassoProblems(plan, len(acts), 5), 0.1)
    design = build_design(acts, plan, 5, dtype=torch.float64)
    X, y = design.X.numpy(), design.y.numpy()
    for f in range(len(plan.names)):
        test = design.test[f].numpy()
        for k in range(5):
            train = design.train[f, k].numpy()
            reference = Lasso(alpha=0.1).fit(X[f][train], y[f][train])
            expected = r2_score(y[f][test], reference.predict(X[f][test]))
            assert abs(fit.r2_test[f, k] - expected) < 1e-3


def test_working_set_solver_gives_the_same_probes_on_one_thread_or_two(wide_problem):
    """Features and products are shared out among as many threads as BLAS may use; the
    result must not depend on how, nor on the working-set arrays kept from the last layer."""
    from threadpoolctl import threadpool_limits

    acts, plan = wide_problem
    problems = LassoProblems(plan, len(acts), 5)
    with threadpool_limits(2):
        with _Threads() as threads:
            assert threads.workers == 2
        two = solve_layer(acts, problems, 0.05, start=4, grow=3)
    with threadpool_limits(1):
        with _Threads() as threads:
            assert threads.workers == 1
        one = solve_layer(acts, problems, 0.05, start=4, grow=3)
    for name in ("coef", "r2_test", "r2_val", "mse"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    assert one.rounds == two.rounds > 3


def test_blas_is_held_to_one_thread_while_a_layer_solves_then_restored(wide_problem):
    """Idle BLAS threads would spin on the cores the solver's own threads use; the user's
    BLAS setting must come back afterwards, also after an error and when solves overlap."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return min(lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas")

    acts, plan = wide_problem
    problems = LassoProblems(plan, len(acts), 5)
    with threadpool_limits(2):
        with _Threads() as outer:
            assert outer.workers == 2 and blas_threads() == 1
            with _Threads() as inner:  # an overlapping solve: same workers, same hold
                assert inner.workers == 2 and blas_threads() == 1
            assert blas_threads() == 1  # the outer solve still holds it
        assert blas_threads() == 2
        with pytest.raises(RuntimeError, match="failed"), _Threads():
            raise RuntimeError("failed")
        assert blas_threads() == 2
        # two layers solved at once from two threads: each gets its own working arrays (the
        # main thread controls OpenBLAS here, so their holds are ignored and BLAS runs on its
        # own threads: float32 rounding apart, the same result)
        layers = [acts, acts[:, ::-1].copy()]
        alone = [solve_layer(layer, problems, 0.05, start=4, grow=3) for layer in layers]
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda layer: solve_layer(layer, problems, 0.05, start=4,
                                                               grow=3), layers))
        assert blas_threads() == 2
    for one, other in zip(alone, together):
        np.testing.assert_allclose(one.coef, other.coef, rtol=0, atol=1e-5)
        np.testing.assert_allclose(one.r2_test, other.r2_test, rtol=0, atol=1e-6)
    # the app solves in its script thread, which no thread has limited BLAS from before
    before = blas_threads()

    def held_in_a_thread():
        with _Threads():
            return blas_threads()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(held_in_a_thread).result() == 1
    assert blas_threads() == before


def test_an_error_in_a_solver_thread_reaches_the_caller():
    from threadpoolctl import threadpool_limits

    done = []

    def work(item):
        if item == 3:
            raise RuntimeError("feature 3 failed")
        done.append(item)

    with threadpool_limits(2), _Threads() as threads:
        with pytest.raises(RuntimeError, match="feature 3 failed"):
            threads.each(work, range(8))
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7]  # the other thread finished the rest


def test_working_set_solver_refuses_activations_of_other_pairs(wide_problem):
    acts, plan = wide_problem
    with pytest.raises(ValueError, match="do not fit problems built for 1500 pairs"):
        solve_layer(acts[:-1], LassoProblems(plan, len(acts), 5), 0.1)


def test_working_set_solver_warns_when_it_runs_out_of_rounds(wide_problem):
    acts, plan = wide_problem
    with pytest.warns(RuntimeWarning, match="did not reach the duality-gap tolerance"):
        fit = solve_layer(acts, LassoProblems(plan, len(acts), 5), 0.05, start=2, grow=1,
                          max_rounds=2)
    assert not fit.converged


def test_ridge_on_wide_layers_with_two_threads_matches_scikit_learn():
    """torch's batched LU failed ("Pivots given to lu_solve…") at d = 384 on 2 threads."""
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(5)
    acts = rng.normal(size=(1200, 384)).astype(np.float32)
    targets = pd.DataFrame({f"t{i}": acts[:, i] + rng.normal(size=1200) for i in range(8)})
    config = ProbeConfig(groups=tuple(targets.columns))
    plan = make_plan(targets, config)
    design = build_design(acts, plan, 5, dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        coef, _ = fit_ridge(design.X, design.y, design.train, 1.0)
    finally:
        torch.set_num_threads(threads)
    for f in (0, 7):
        train = design.train[f, 0].numpy()
        reference = Ridge(alpha=1.0).fit(design.X[f].numpy()[train], design.y[f].numpy()[train])
        np.testing.assert_allclose(coef[f, 0].numpy(), reference.coef_, atol=1e-6)


def test_renaming_split_to_shares_keeps_every_stored_probe_key():
    """``ProbeConfig.shares`` was called ``split``; a probe run stored before the rename is
    found under the same key (and its stored settings read back into the same config)."""
    from dataclasses import asdict

    from core.probing import PROBE_VERSION, ProbeConfig, config_from_stored, probe_key, \
        stored_settings
    from core.store import content_key

    config = ProbeConfig(features=("bm25",), shares=(0.7, 0.15, 0.15), limit=30, depth=20)
    # as keyed before: split for shares, no extraction settings (the run key covers them)
    before = {("split" if k == "shares" else k): v for k, v in asdict(config).items()
              if k not in ("limit", "depth")}
    assert probe_key("run", "features", config) == content_key(
        "probing", run="run", features="features", config=before, version=PROBE_VERSION)
    import json

    assert config_from_stored(json.loads(json.dumps(stored_settings(config))), 30, 20) == config
