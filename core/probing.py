"""Layer-wise linear probes: which IR features does each layer of a ranker encode?

Context:
    *Understanding Ranking LLMs* (Chowdhury, Nijasure, Allan) fits a Lasso probe (α = 0.1) from
    the mean- or max-pooled hidden state after each block to each IR feature, on a probing set
    balanced over the feature's range, split 60/20/20 with 5-fold cross-validation on the
    training part, and reads the test R² per layer. A feature is *encoded* where R² > 0.85 and
    *absent* where R² < 0.1.

Method (per feature, shared by every layer):
    1. Balanced set: equal counts from each quantile bin of the feature (bins holding fewer
       than max(``min_bin``, ``min_bin_share`` of the pairs) are merged into a neighbour first,
       so a rare value cannot shrink the whole set), at most ``max_set_size`` pairs.
    2. One seeded split of all pairs, shared by every feature (so that a layer's Gram
       matrices serve every feature's probes): 60/20/20 into train / validation / test, the
       train part cut into 5 folds. A feature's set is split as its pairs fall (about
       60/20/20; a set that leaves fewer than 2 pairs in a fold, the validation or the test
       part is reported and left out). Fold model k is fitted on the set's train part without
       fold k; its R² and MSE are measured on the set's test part, so "R² mean ± sd" is over
       the 5 fold models.
    3. The feature is z-scored with the train part's statistics (so α means the same for every
       feature); activations are centred and divided by one number, the median neuron
       standard deviation of the layer, so neurons keep their relative scales as in the
       study's raw-activation probes while α means the same for models whose activations
       differ in scale. Each fit has an intercept (scikit-learn's ``Lasso(alpha)`` /
       ``Ridge(alpha)`` objectives exactly). A neuron equal to a feature then reaches
       R² = 1 − (α / s)², s its scaled standard deviation.

Speed (``bench/probe_sweep.py``): on the CPU the Lasso probes of a layer are solved by
``core.solvers`` (``solver="working_set"``): every (feature, fold) problem shares the layer's
Gram matrix per fold chunk, corrected by the few pairs a feature's set leaves out, and
coordinate descent (numba) runs on small per-feature working sets of neurons until each
problem's duality gap meets scikit-learn's own stopping rule. On CUDA, ``solver="batched"``
solves all problems at once in torch over the padded ``[features, pairs, d]`` design (working
sets, batched feature-sign search, KKT-checked). ``solver="sklearn"`` loops scikit-learn's
``Lasso`` (the reference).
Ridge solves one Cholesky system per problem from each feature's train Gram, downdated per fold.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from core.analysis import drive
from core.constants import ABSENT_R2, ENCODED_R2
from core.errors import InputError, RankScopeError
from core.solvers import (LassoProblems, fit_lasso, fit_lasso_sklearn, fit_ridge,
                          solve_layer)

SOLVERS = ("auto", "working_set", "batched", "sklearn")
PROBE_VERSION = 3  # 2: the CPU's Lasso solver is core.solvers (was scikit-learn's loop);
#                   3: one split of the pairs shared by every feature (was one per feature)
ESTIMATORS = ("lasso", "ridge")


@dataclass(frozen=True)
class ProbeConfig:
    """A probing sweep. Defaults follow *Understanding Ranking LLMs* unless noted.

    Attributes:
        features: target feature names (see ``core.features.FEATURES``).
        groups: feature-group expressions probed like features, e.g.
            ``(covered_query_term_ratio + sum_tf + variance_tfidf)^2``.
        poolings: ``mean`` and/or ``max`` over the pair's tokens (the study's two poolings).
        estimators: ``lasso`` (the study's probe) and/or ``ridge``.
        lasso_alpha: 0.1, the study's default.
        ridge_alpha: 1.0, scikit-learn's default (the study has no ridge probe).
        shares: train / validation / test shares of all pairs, 60/20/20 as the study; one
            split of the pairs shared by every feature (see ``split_pairs``). ("split" means a
            query split everywhere else.)
        folds: 5-fold CV on the training part, as the study.
        bins: quantile bins used to balance each probing set.
        min_bin, min_bin_share: bins with fewer than max(min_bin, min_bin_share × pairs) pairs
            are merged into a neighbour (2 %: a value held by 31 of 7,200 pairs would otherwise
            cut every bin, and the set, to 31 pairs each).
        max_set_size: cap on each balanced set (None = no cap).
        seed: sampling and splitting seed.
        tol: KKT tolerance of the batched Lasso solver, relative to α.
        solver: Lasso solver. ``working_set``: ``core.solvers`` (shared products, working sets,
            numba coordinate descent, scikit-learn's duality-gap stop); ``batched``: every
            feature × fold at once in torch (for a GPU); ``sklearn``: scikit-learn's ``Lasso``
            per feature and fold (the reference). ``auto``: batched on CUDA, working_set on the
            CPU. ``bench/probe_sweep.py`` measures them against the scikit-learn loop (README,
            *Measured figures*). Ridge is always batched (one Cholesky solve per problem).
    """

    features: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    poolings: tuple[str, ...] = ("mean",)
    estimators: tuple[str, ...] = ("lasso",)
    lasso_alpha: float = 0.1
    ridge_alpha: float = 1.0
    shares: tuple[float, float, float] = (0.6, 0.2, 0.2)
    folds: int = 5
    bins: int = 10
    min_bin: int = 20
    min_bin_share: float = 0.02
    max_set_size: int | None = 4000
    seed: int = 0
    tol: float = 1e-3
    solver: str = "auto"

    def validate(self) -> None:
        from core.features import FEATURES

        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise InputError(f"unknown feature(s) {', '.join(unknown)}; choose from "
                             f"{', '.join(FEATURES)}")
        if not self.features and not self.groups:
            raise InputError("choose at least one feature or feature group to probe")
        if not self.poolings or set(self.poolings) - {"mean", "max"}:
            raise InputError(f"pooling must be mean and/or max, got {list(self.poolings)}")
        if not self.estimators or set(self.estimators) - set(ESTIMATORS):
            raise InputError(f"estimator must be lasso and/or ridge, got {list(self.estimators)}")
        if not (self.lasso_alpha > 0 and self.ridge_alpha > 0):
            raise InputError(f"α must be positive (lasso {self.lasso_alpha}, ridge "
                             f"{self.ridge_alpha})")
        if self.folds < 2:
            raise InputError(f"cross-validation needs at least 2 folds, got {self.folds}")
        if len(self.shares) != 3 or min(self.shares) <= 0 or abs(sum(self.shares) - 1) > 1e-6:
            raise InputError(f"shares must be three positive train / validation / test shares "
                             f"summing to 1, got {list(self.shares)}")
        if self.bins < 1 or self.min_bin < 1 or not 0 <= self.min_bin_share < 0.5:
            raise InputError(f"bins and min_bin must be at least 1 ({self.bins}, {self.min_bin})")
        if self.max_set_size is not None and self.max_set_size < 10 * self.folds:
            raise InputError(f"max_set_size {self.max_set_size} is too small for "
                             f"{self.folds} folds; use at least {10 * self.folds}")
        if not self.tol > 0:
            raise InputError(f"tol must be positive, got {self.tol}")
        if self.solver not in SOLVERS:
            raise InputError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        from core.features import combine

        probe_frame = pd.DataFrame({name: [0.0, 1.0] for name in FEATURES})
        for expression in self.groups:  # syntax and names, before any model loads
            if expression not in FEATURES:
                combine(probe_frame, expression)


# --------------------------------------------------------------------------- probing sets
def balanced_indices(values: np.ndarray, bins: int, min_bin: int, max_size: int | None,
                     rng: np.random.Generator) -> np.ndarray:
    """Indices of a probing set with equal counts from each quantile bin of ``values``.

    Returns sorted indices; empty when the feature is constant or too rare to balance.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(values))
    if len(finite) == 0 or np.ptp(values[finite]) == 0:
        return np.zeros(0, dtype=np.int64)
    distinct = np.unique(values[finite])
    if len(distinct) <= bins:  # a discrete feature: one bin per value
        labels = np.searchsorted(distinct, values[finite])
        n_bins = len(distinct)
    else:
        edges = np.unique(np.quantile(values[finite], np.linspace(0, 1, bins + 1)))
        n_bins = max(len(edges) - 1, 1)
        labels = np.clip(np.searchsorted(edges, values[finite], side="right") - 1, 0, n_bins - 1)
    members = [finite[labels == b] for b in range(n_bins)]
    members = [m for m in members if len(m)]
    while len(members) > 1 and min(len(m) for m in members) < min_bin:
        i = int(np.argmin([len(m) for m in members]))
        j = i - 1 if i == len(members) - 1 or (i > 0 and len(members[i - 1]) <= len(members[i + 1])) else i + 1
        members[min(i, j)] = np.concatenate([members[i], members[j]])
        del members[max(i, j)]
    if len(members) < 2:
        return np.zeros(0, dtype=np.int64)
    per_bin = min(len(m) for m in members)
    if max_size is not None:
        per_bin = min(per_bin, max_size // len(members))
    chosen = [rng.choice(m, size=per_bin, replace=False) for m in members]
    return np.sort(np.concatenate(chosen))


@dataclass
class ProbePlan:
    """The balanced set and split of each target (the same for every layer)."""

    names: list[str]
    rows: list[np.ndarray]  # pair indices of each target's set, in split order
    n_train: list[int]
    n_val: list[int]
    fold: list[np.ndarray]  # fold id of each train row
    targets: list[np.ndarray]  # raw target values of the set's rows
    skipped: dict[str, str] = field(default_factory=dict)
    # every pair's part, shared by all targets: train fold 0 … K − 1, K validation, K + 1 test
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    _problems: dict = field(default_factory=dict, repr=False, compare=False)

    def lasso_problems(self, n_pairs: int, folds: int) -> LassoProblems:
        """The working-set solver's per-plan arrays, built once and shared by every layer."""
        if (n_pairs, folds) not in self._problems:
            self._problems[(n_pairs, folds)] = LassoProblems(self, n_pairs, folds)
        return self._problems[(n_pairs, folds)]


def split_pairs(n_pairs: int, config: ProbeConfig) -> np.ndarray:
    """Every pair's part, one seeded shuffle for all targets: the first ``split[0]`` share of
    the shuffled pairs is the train part (fold = position mod K), then validation (K), then
    test (K + 1)."""
    rng = np.random.default_rng([config.seed, _stable_hash("split")])
    position = np.empty(n_pairs, np.int64)
    position[rng.permutation(n_pairs)] = np.arange(n_pairs)
    n_train = int(round(config.shares[0] * n_pairs))
    n_val = int(round(config.shares[1] * n_pairs))
    return np.where(position < n_train, position % config.folds,
                    np.where(position < n_train + n_val, config.folds, config.folds + 1))


def make_plan(targets: pd.DataFrame, config: ProbeConfig) -> ProbePlan:
    """Balanced sets for every target column, split as their pairs fall in the shared split
    (:func:`split_pairs`: about 60/20/20 of each set, and 5 train folds)."""
    part = split_pairs(len(targets), config)
    plan = ProbePlan([], [], [], [], [], [], part=part)
    minimum = 5 * config.folds
    for column in targets.columns:
        rng = np.random.default_rng([config.seed, _stable_hash(column)])
        values = targets[column].to_numpy(dtype=np.float64)
        min_bin = max(config.min_bin, int(config.min_bin_share * np.isfinite(values).sum()))
        rows = balanced_indices(values, config.bins, min_bin, config.max_set_size, rng)
        if len(rows) < minimum:
            plan.skipped[column] = (f"only {len(rows)} pairs after balancing (constant or too "
                                    f"rare a feature); need at least {minimum}")
            continue
        sizes = np.bincount(part[rows], minlength=config.folds + 2)
        if sizes.min() < 2:
            plan.skipped[column] = (f"its {len(rows)} pairs leave fewer than 2 in a fold, the "
                                    f"validation or the test part ({sizes.tolist()})")
            continue
        rows = rows[np.argsort(part[rows], kind="stable")]  # train by fold, validation, test
        n_train = int(sizes[:config.folds].sum())
        plan.names.append(column)
        plan.rows.append(rows)
        plan.n_train.append(n_train)
        plan.n_val.append(int(sizes[config.folds]))
        plan.fold.append(part[rows[:n_train]])
        plan.targets.append(values[rows])
    return plan


def _stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


# --------------------------------------------------------------------------- batched design
@dataclass
class Design:
    """Padded, z-scored design of all targets for one layer.

    Shapes: ``X [F, n, d]``, ``y [F, n]``; masks ``train [F, K, n]`` (train part minus fold k),
    ``val [F, n]``, ``test [F, n]`` (padded rows are False everywhere).
    """

    X: torch.Tensor
    y: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def build_design(activations: np.ndarray, plan: ProbePlan, folds: int,
                 device: torch.device | str = "cpu", dtype=torch.float32) -> Design:
    """Gather each target's rows of ``activations [n_pairs, d]`` and z-score them (train part)."""
    acts = torch.as_tensor(activations, dtype=dtype, device=device)
    n_targets = len(plan.names)
    n_max = max(len(r) for r in plan.rows)
    d = acts.shape[1]
    X = torch.zeros(n_targets, n_max, d, dtype=dtype, device=device)
    y = torch.zeros(n_targets, n_max, dtype=dtype, device=device)
    train = torch.zeros(n_targets, folds, n_max, dtype=torch.bool, device=device)
    val = torch.zeros(n_targets, n_max, dtype=torch.bool, device=device)
    test = torch.zeros(n_targets, n_max, dtype=torch.bool, device=device)
    for f, rows in enumerate(plan.rows):
        n, n_train, n_val = len(rows), plan.n_train[f], plan.n_val[f]
        block = acts[torch.as_tensor(rows, device=device)]
        scale = block[:n_train].std(0).median()  # one scalar per layer (see the module doc)
        X[f, :n] = (block - block[:n_train].mean(0)) / (scale if scale > 0 else 1.0)
        target = torch.as_tensor(plan.targets[f], dtype=dtype, device=device)
        t_sd = target[:n_train].std()
        y[f, :n] = (target - target[:n_train].mean()) / (t_sd if t_sd > 0 else 1.0)
        fold = torch.as_tensor(plan.fold[f], device=device)
        for k in range(folds):
            train[f, k, :n_train] = fold != k
        val[f, n_train:n_train + n_val] = True
        test[f, n_train + n_val:n] = True
    return Design(X, y, train, val, test)


# --------------------------------------------------------------------------- solvers
def _r2(design: Design, coef: torch.Tensor, intercept: torch.Tensor, which: torch.Tensor):
    """R² and MSE ``[F, K]`` of each fold model on rows ``which [F, n]``."""
    prediction = torch.bmm(coef, design.X.transpose(1, 2)) + intercept[..., None]  # [F, K, n]
    weights = which.to(design.X.dtype)[:, None, :]
    count = weights.sum(-1).clamp(min=1)
    truth = design.y[:, None, :]
    mean = (truth * weights).sum(-1) / count
    residual = (((truth - prediction) ** 2) * weights).sum(-1)
    total = (((truth - mean[..., None]) ** 2) * weights).sum(-1)
    return 1 - residual / total.clamp(min=1e-12), residual / count


def probe_layer(activations: np.ndarray, plan: ProbePlan, config: ProbeConfig,
                device: torch.device | str = "cpu") -> pd.DataFrame:
    """Fit every target's probes on one layer's activations ``[n_pairs, d]``.

    Returns one row per (target, estimator): r2_mean, r2_sd (over fold models, on the test
    part), r2_val, mse, n_nonzero (median over folds), set_size, neurons (JSON: the 16 neurons
    with the largest fold-mean |coefficient|, as [index, coefficient]).
    """
    device = torch.device(device)
    design = None
    rows = []
    for estimator in config.estimators:
        solver = "ridge"  # closed form (fit_ridge)
        if estimator == "lasso":
            solver = config.solver
            if solver == "auto":
                solver = "batched" if device.type == "cuda" else "working_set"
        if solver == "working_set":
            fit = solve_layer(activations, plan.lasso_problems(len(activations), config.folds),
                              config.lasso_alpha)
            coef, r2_test, r2_val, mse = (torch.as_tensor(a) for a in
                                          (fit.coef, fit.r2_test, fit.r2_val, fit.mse))
        else:
            if design is None:
                design = build_design(activations, plan, config.folds, device)
            if solver == "batched":
                coef, intercept = fit_lasso(design.X, design.y, design.train, config.lasso_alpha,
                                            config.tol)
            elif solver == "sklearn":
                coef, intercept = fit_lasso_sklearn(design.X, design.y, design.train,
                                                    config.lasso_alpha)
            else:
                coef, intercept = fit_ridge(design.X, design.y, design.train, config.ridge_alpha)
            r2_test, mse = _r2(design, coef, intercept, design.test)
            r2_val, _ = _r2(design, coef, intercept, design.val)
        nonzero = (coef != 0).sum(-1).float()
        mean_coef = coef.mean(1).cpu().numpy()
        r2_test, mse, r2_val = (t.double().cpu().numpy() for t in (r2_test, mse, r2_val))
        nonzero = nonzero.cpu().numpy()
        for f, name in enumerate(plan.names):
            top = np.argsort(-np.abs(mean_coef[f]))[:16]
            top = [[int(i), round(float(mean_coef[f, i]), 5)] for i in top if mean_coef[f, i] != 0]
            rows.append({"feature": name, "estimator": estimator,
                         "r2_mean": float(r2_test[f].mean()),
                         "r2_sd": float(r2_test[f].std(ddof=1)),
                         "r2_val": float(r2_val[f].mean()), "mse": float(mse[f].mean()),
                         "n_nonzero": int(np.median(nonzero[f])),
                         "set_size": int(len(plan.rows[f])), "neurons": json.dumps(top)})
    return pd.DataFrame(rows)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- whole sweeps
RESULT_COLUMNS = ["ranker", "collection", "feature", "layer", "pooling", "estimator", "r2_mean",
                  "r2_sd", "r2_val", "mse", "n_nonzero", "set_size", "neurons"]


def probe_key(run_key: str, features_key: str, config: ProbeConfig) -> str:
    from core.store import content_key

    return content_key("probing", run=run_key, features=features_key,
                       config=stored_settings(config), version=PROBE_VERSION)


def stored_settings(config: ProbeConfig) -> dict:
    """The config as keys and probe_runs hold it: ``shares`` under its earlier name
    ``split``, so the keys of runs stored before the rename still find them."""
    settings = asdict(config)
    settings["split"] = settings.pop("shares")
    return settings


def config_from_stored(settings: dict) -> ProbeConfig:
    """A config back from ``stored_settings`` (JSON lists become tuples)."""
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    settings["shares"] = settings.pop("split")
    return ProbeConfig(**settings)


@dataclass
class ProbeResult:
    key: str
    frame: pd.DataFrame  # RESULT_COLUMNS, layer 1-based (the state after block ℓ)
    notes: list[str]
    computed_now: int
    units: int
    stopped: bool
    seconds: float


def target_frame(features: pd.DataFrame, config: ProbeConfig) -> pd.DataFrame:
    """The probe targets: chosen features plus evaluated feature groups."""
    from core.features import combine

    missing = [f for f in config.features if f not in features]
    frame = features[[f for f in config.features if f in features]].copy()
    for expression in config.groups:
        frame[expression] = combine(features, expression)
    if missing and frame.empty:
        raise InputError(f"none of the chosen features is available ({', '.join(missing)})")
    return frame


def run_probe(store, ranker_name: str, collection_name: str, run_key: str,
              features: pd.DataFrame, features_key: str, n_layers: int, config: ProbeConfig,
              progress: Callable[[int, int, str], None] | None = None,
              should_stop: Callable[[], bool] | None = None,
              device: torch.device | str | None = None) -> ProbeResult:
    """Probe every layer × pooling of a finished extraction run; resumable and cached.

    Each (layer, pooling) unit is written in one transaction, so an interrupted sweep keeps its
    finished units and asking again for the same key is served from the store.
    """
    config.validate()
    started = time.perf_counter()
    key = probe_key(run_key, features_key, config)
    device = device or default_device()
    units = [(layer, pooling) for pooling in config.poolings for layer in range(n_layers)]
    done = store.probe_units_done(key)
    targets = target_frame(features, config)
    plan = make_plan(targets, config)
    notes = [f"{name} not probed: {why}" for name, why in plan.skipped.items()]
    notes += [f"{f} not probed: not computed for this collection"
              for f in config.features if f not in features]
    if not plan.names:
        raise InputError("no feature has enough spread to probe; " + "; ".join(notes))
    store.begin_probe(key, ranker=ranker_name, collection=collection_name, run_key=run_key,
                      features_key=features_key, config=stored_settings(config),
                      n_units=len(units))
    def compute(index, unit):
        layer, pooling = unit
        frame = probe_layer(store.activations(run_key, "resid", layer, pooling), plan, config,
                            device)
        frame.insert(0, "pooling", pooling)
        frame.insert(0, "layer", layer + 1)
        return frame

    def write(index, unit, frame):
        store.write_probe_unit(key, unit[0], unit[1], frame)
        done.add(unit)

    computed, stopped = drive(units, compute, done={i for i, u in enumerate(units) if u in done},
                              write=write, progress=progress, should_stop=should_stop)
    computed = len(computed)
    if len(done) == len(units):
        store.finish_probe(key, notes)
    frame = store.probe_results(key)
    frame.insert(0, "collection", collection_name)
    frame.insert(0, "ranker", ranker_name)
    return ProbeResult(key, frame[RESULT_COLUMNS], notes, computed, len(units), stopped,
                       time.perf_counter() - started)


def stored_probes(store, ranker: str, collection: str) -> list[dict]:
    """The finished probe runs of ``ranker`` on ``collection``, newest first, as the Probing
    page draws them after a restart: ``key``, ``frame`` (``RESULT_COLUMNS``), ``notes``,
    ``config`` (:class:`ProbeConfig`) and the ``limit`` / ``depth`` of the extraction read."""
    runs = store.probe_runs()
    runs = runs[(runs.status == "done") & (runs.ranker == ranker)
                & (runs.collection == collection)].iloc[::-1]
    found = []
    for run in runs.itertuples():
        frame = store.probe_results(run.probe_key)
        frame.insert(0, "collection", collection)
        frame.insert(0, "ranker", ranker)
        extraction = json.loads((store.run_info(run.run_key) or {}).get("config") or "{}")
        found.append({"key": run.probe_key, "frame": frame[RESULT_COLUMNS],
                      "notes": json.loads(run.notes or "[]"),
                      "config": config_from_stored(json.loads(run.config)),
                      "limit": extraction.get("limit_queries"),
                      "depth": extraction.get("depth", 20), "created": run.created})
    return found


def probe_ranker(ranker, collection, store, config: ProbeConfig, *,
                 limit_queries: int | None = None, depth: int = 20,
                 progress: Callable[[int, int, str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 device: torch.device | str | None = None) -> ProbeResult:
    """Extract (or reuse) a ranker's activations on a collection, then probe every layer.

    ``progress(done, total, stage)`` is called with stage ``extract`` then ``probe``. The
    extraction uses the Workspace's default configuration (top-20 candidates, mean/max/last
    pooling, residual stream), so runs started there are reused here; ``depth`` takes more
    candidates per query (e.g. the whole TREC DL top-100: more pairs to balance probe sets).
    """
    from core.extract import ExtractionConfig, extract
    from core.features import stored_features

    config.validate()
    extraction = ExtractionConfig(limit_queries=limit_queries, depth=depth)
    started = time.perf_counter()
    result = extract(ranker, collection, extraction, store,
                     progress=None if progress is None else
                     lambda d, t, _="": progress(d, t, "extract"),
                     should_stop=should_stop)
    if not result.complete:
        return ProbeResult("", pd.DataFrame(columns=RESULT_COLUMNS), [], 0, 0, True,
                           time.perf_counter() - started)
    features, key, feature_notes = stored_features(store, collection, extraction, result.run_key)
    probed = run_probe(store, ranker.spec.name, collection.name, result.run_key, features, key,
                       ranker.n_layers, config,
                       progress=None if progress is None else
                       lambda d, t, _="": progress(d, t, "probe"),
                       should_stop=should_stop, device=device)
    left_out = [n.split(" ", 1)[0] for n in feature_notes]
    probed.notes = feature_notes + [n for n in probed.notes if n.split(" ", 1)[0] not in left_out]
    probed.seconds = time.perf_counter() - started
    return probed


def probe_grid(jobs: list[tuple[str, str]], store, config: ProbeConfig, *,
               load_ranker: Callable[[str], object], load_collection: Callable[[str], object],
               limit_queries: int | None = None,
               progress: Callable[[int, int, str], None] | None = None,
               should_stop: Callable[[], bool] | None = None
               ) -> tuple[pd.DataFrame, list[str], list[str], list]:
    """:func:`probe_ranker` for every (ranker name, collection source) job, one at a time.

    A job whose ranker or collection cannot be loaded, or whose probes fail on bad input, is
    reported in the notes and skipped; the others still run.

    Returns:
        (every finished job's rows, notes prefixed ``ranker × collection:``, one message per
        failed job, the jobs that finished as ``(ranker name, collection source, collection)``).
    """
    config.validate()
    if not jobs:
        raise InputError("pick at least one ranker and one collection")
    frames, notes, failures, finished = [], [], [], []
    for number, (name, source) in enumerate(jobs, start=1):
        label = f"{name} × {source} ({number}/{len(jobs)})"
        try:
            ranker, collection = load_ranker(name), load_collection(source)
            label = f"{name} × {collection.name} ({number}/{len(jobs)})"
            result = probe_ranker(
                ranker, collection, store, config, limit_queries=limit_queries,
                should_stop=should_stop,
                progress=None if progress is None else
                lambda done, total, stage, label=label: progress(
                    done, total, f"{label}: " + ("extracting batches" if stage == "extract"
                                                 else "probing layers")))
        except RankScopeError as error:
            failures.append(f"{label}: {error}")
            continue
        frames.append(result.frame)
        notes += [f"{name} × {collection.name}: {n}" for n in result.notes]
        finished.append((name, source, collection))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_COLUMNS)
    return frame, notes, failures, finished


# --------------------------------------------------------------------------- summaries
def positives_negatives(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (ranker, collection, pooling, estimator, feature): best layer, max R², verdict."""
    keys = ["ranker", "collection", "pooling", "estimator", "feature"]
    frame = frame.reset_index(drop=True)
    best = frame.loc[frame.groupby(keys)["r2_mean"].idxmax()]
    best = best[keys + ["layer", "r2_mean"]].rename(columns={"layer": "best_layer",
                                                             "r2_mean": "max_r2"})
    last = frame[frame.layer == frame.groupby(keys)["layer"].transform("max")]
    best = best.merge(last[keys + ["r2_mean"]].rename(columns={"r2_mean": "last_layer_r2"}),
                      on=keys)
    best["verdict"] = np.where(best.max_r2 > ENCODED_R2, f"encoded (R² > {ENCODED_R2})",
                               np.where(best.max_r2 < ABSENT_R2, f"absent (R² < {ABSENT_R2})",
                                        "partly"))
    return best.sort_values("max_r2", ascending=False).reset_index(drop=True)


def neuron_histogram(frame: pd.DataFrame) -> pd.DataFrame:
    """The study's count of features by non-zero probe neurons: 1 / 2–3 / ≥ 4 (0 = none)."""
    lasso = frame[frame.estimator == "lasso"]
    bucket = pd.cut(lasso.n_nonzero, [-1, 0, 1, 3, np.inf], labels=["0", "1", "2–3", "≥4"])
    return (lasso.assign(neurons=bucket).groupby(["ranker", "layer", "neurons"], observed=False)
            .size().rename("probes").reset_index())


def collection_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """R² per (feature, layer) for each collection of one ranker, and each later collection's
    gap to the first (alphabetical): the in- vs out-of-distribution comparison at every layer."""
    table = frame.pivot_table(index=["feature", "layer"], columns="collection",
                              values="r2_mean").reset_index()
    table.columns.name = None
    names = sorted(frame.collection.unique())
    for other in names[1:]:
        table[f"{other} − {names[0]}"] = table[other] - table[names[0]]
    return table
