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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from core.analysis import Analysis, Job, Progress, StopCheck, Stopped, option, register
from core.constants import ABSENT_R2, ENCODED_R2
from core.features import FEATURES
from core.errors import InputError, RankScopeError
from core.solvers import (LassoProblems, fit_lasso, fit_lasso_sklearn, fit_ridge,
                          solve_layer)

SOLVERS = ("auto", "working_set", "batched", "sklearn")
PROBE_VERSION = 3  # 2: the CPU's Lasso solver is core.solvers (was scikit-learn's loop);
#                   3: one split of the pairs shared by every feature (was one per feature)
ESTIMATORS = ("lasso", "ridge")


@dataclass(frozen=True)
class ProbeConfig:
    """A probing sweep of one ranker on one collection. Defaults follow *Understanding
    Ranking LLMs* unless noted; each field's help is its CLI flag's and page widget's.

    ``shares``: one split of all pairs shared by every feature (see ``split_pairs``); "split"
    means a query split everywhere else. ``min_bin`` / ``min_bin_share``: bins with fewer than
    max(min_bin, min_bin_share × pairs) pairs are merged into a neighbour (2 %: a value held by
    31 of 7,200 pairs would otherwise cut every bin, and the set, to 31 pairs each).
    ``solver``: ``working_set`` (``core.solvers``: shared products, working sets, numba
    coordinate descent, scikit-learn's duality-gap stop); ``batched`` (every feature × fold at
    once in torch, for a GPU); ``sklearn`` (scikit-learn's ``Lasso`` per feature and fold, the
    reference); ``auto``: batched on CUDA, working_set on the CPU (``bench/probe_sweep.py``).
    Ridge is always batched. ``limit`` and ``depth`` choose the extraction the probes read
    (the Workspace's: top-20 candidates of every query); they reach the key through it.
    """

    features: tuple[str, ...] = option(FEATURES, "IR features to probe (core/features.py)",
                                       choices=FEATURES, label="Features")
    groups: tuple[str, ...] = option((), "feature-group expressions probed like features, "
                                         "e.g. '(covered_query_term_ratio + sum_tf + "
                                         "variance_tfidf)^2'", label="Feature combinations",
                                    multiline=True)
    poolings: tuple[str, ...] = option(("mean",), "over the pair's tokens (the study's two)",
                                       choices=("mean", "max"), label="Pooling")
    estimators: tuple[str, ...] = option(("lasso",), "lasso (the study's probe) and/or ridge",
                                         choices=ESTIMATORS, label="Estimators")
    lasso_alpha: float = option(0.1, "Lasso α (the study: 0.1)", label="Lasso α")
    ridge_alpha: float = option(1.0, "ridge α (scikit-learn's default)", label="Ridge α")
    shares: tuple[float, ...] = option((0.6, 0.2, 0.2), "train / validation / test shares of "
                                                        "all pairs (the study: 60/20/20)",
                                       label="Train / validation / test shares")
    folds: int = option(5, "cross-validation folds on the train part", label="Folds",
                        minimum=2)
    bins: int = option(10, "quantile bins balancing each probing set", label="Bins",
                       minimum=1)
    min_bin: int = option(20, "smallest bin (pairs) before merging", label="Smallest bin",
                          minimum=1)
    min_bin_share: float = option(0.02, "smallest bin as a share of the pairs",
                                  label="Smallest bin share", minimum=0.0)
    max_set_size: int = option(4000, "pairs per balanced set at most (0: no cap)",
                               label="Set size (max)", minimum=0)
    seed: int = option(0, "sampling and splitting seed", label="Seed",
                       minimum=0)
    tol: float = option(1e-3, "KKT tolerance of the Lasso solvers, relative to α",
                        label="Tolerance")
    solver: str = option("auto", "Lasso solver: working_set (CPU), batched (CUDA), sklearn "
                                 "(the reference), auto", choices=SOLVERS, label="Solver")
    limit: int = option(0, "only the first N queries of the collection (0: all)",
                        label="Queries (0 = all)", minimum=0)
    depth: int = option(20, "candidates per query extracted (top-k of the first stage)",
                        label="Candidates per query", minimum=1)

    def validate(self) -> None:
        """What the field metadata cannot say."""
        if not self.features and not self.groups:
            raise InputError("choose at least one feature or feature group to probe")
        if not self.poolings or not self.estimators:
            raise InputError("choose at least one pooling and one estimator")
        for label, alpha in (("Lasso α", self.lasso_alpha), ("Ridge α", self.ridge_alpha)):
            if not alpha > 0:
                raise InputError(f"{label} must be positive, got {alpha}")
        if len(self.shares) != 3 or min(self.shares) <= 0 or abs(sum(self.shares) - 1) > 1e-6:
            raise InputError(f"Train / validation / test shares must be three positive shares "
                             f"summing to 1, got {list(self.shares)}")
        if not 0 <= self.min_bin_share < 0.5:
            raise InputError(f"Smallest bin share must be below 0.5, got {self.min_bin_share}")
        if self.max_set_size and self.max_set_size < 10 * self.folds:
            raise InputError(f"Set size (max) {self.max_set_size} is too small for "
                             f"{self.folds} folds; use at least {10 * self.folds} (0: no cap)")
        if not self.tol > 0:
            raise InputError(f"Tolerance must be positive, got {self.tol}")
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
        rows = balanced_indices(values, config.bins, min_bin, config.max_set_size or None, rng)
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
PROBE_COLUMNS = ["layer", "pooling", "feature", "estimator", "r2_mean", "r2_sd", "r2_val", "mse",
                 "n_nonzero", "set_size", "neurons"]


def probe_key(run_key: str, features_key: str, config: ProbeConfig) -> str:
    """A sweep's store key: the extraction run and feature set it reads (which cover the
    ranker, the collection, ``limit`` and ``depth``) and the probe settings."""
    from core.store import content_key

    return content_key("probing", run=run_key, features=features_key,
                       config=stored_settings(config), version=PROBE_VERSION)


def stored_settings(config: ProbeConfig) -> dict:
    """The probe settings as keys have held them since version 1: ``shares`` under its
    earlier name ``split``, no cap as None, and without the extraction's ``limit`` / ``depth``
    (the run key covers them) — so the keys of runs stored before find them."""
    settings = asdict(config)
    settings["split"] = settings.pop("shares")
    settings["max_set_size"] = config.max_set_size or None
    del settings["limit"], settings["depth"]
    return settings


def config_from_stored(settings: dict, limit: int | None = None, depth: int = 20
                       ) -> ProbeConfig:
    """A config back from :func:`stored_settings` and the extraction it read."""
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    settings["shares"] = settings.pop("split")
    settings["max_set_size"] = settings["max_set_size"] or 0
    return ProbeConfig(**settings, limit=limit or 0, depth=depth)


def extraction_of(config: ProbeConfig):
    """The extraction a sweep reads (the Workspace's settings but ``limit`` and ``depth``)."""
    from core.extract import ExtractionConfig

    return ExtractionConfig(limit_queries=config.limit or None, depth=config.depth)


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


@register
class Probing(Analysis):
    """Probe every layer × pooling of a ranker's extracted residual stream (study 1). The
    extraction runs first (resumable, shared with the Workspace and every analysis that reads
    it); one unit is one (layer, pooling): every feature's probes, in one transaction."""

    name = "probe"
    title = "Probing"
    summary = "layer-wise Lasso / ridge probes for IR features"
    unit = "layer"
    version = PROBE_VERSION
    Config = ProbeConfig

    def validate(self, config: ProbeConfig) -> None:
        super().validate(config)
        config.validate()

    def key(self, ranker, collection, config: ProbeConfig) -> str:
        from core.extract import extraction_key
        from core.features import FeatureConfig, features_key, pairs_key

        extraction = extraction_of(config)
        return probe_key(extraction_key(ranker, collection, extraction),
                         features_key(pairs_key(collection, extraction), FeatureConfig()),
                         config)

    def units(self, job: Job) -> list[dict]:
        from core.extract import extract
        from core.features import stored_features

        if job.store is None:
            raise InputError("probing reads the extracted activations from the store: give "
                             "it a store")
        config, extraction = job.config, extraction_of(job.config)
        progress = job.progress
        extracted = extract(job.ranker, job.collection, extraction, job.store,
                            progress=None if progress is None else
                            lambda d, t, _="": progress(d, t, "extracting batches"),
                            should_stop=job.should_stop)
        if not extracted.complete:
            raise Stopped
        if progress is not None:  # the IR features and the balanced sets: seconds, said so
            progress(0, 1, "computing IR features and probing sets")
        features, _, feature_notes = stored_features(job.store, job.collection, extraction,
                                                     extracted.run_key)
        plan = make_plan(target_frame(features, config), config)
        if progress is not None:
            progress(1, 1, "computing IR features and probing sets")
        notes = [f"{name} not probed: {why}" for name, why in plan.skipped.items()]
        notes += [f"{f} not probed: not computed for this collection"
                  for f in config.features if f not in features]
        if not plan.names:
            raise InputError("no feature has enough spread to probe; " + "; ".join(notes))
        left_out = [n.split(" ", 1)[0] for n in feature_notes]
        notes = feature_notes + [n for n in notes if n.split(" ", 1)[0] not in left_out]
        job.memo.update(run_key=extracted.run_key, plan=plan, notes=json.dumps(notes))
        return [{"layer": layer, "pooling": pooling} for pooling in config.poolings
                for layer in range(job.ranker.n_layers)]

    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        activations = job.store.activations(job.memo["run_key"], "resid", unit["layer"],
                                            unit["pooling"])
        frame = probe_layer(activations, job.memo["plan"], job.config, default_device())
        frame.insert(0, "pooling", unit["pooling"])
        frame.insert(0, "layer", unit["layer"] + 1)  # the state after block ℓ (1-based)
        frame["notes"] = pd.Categorical([job.memo["notes"]] * len(frame))
        return frame

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        return (frame[PROBE_COLUMNS].sort_values(["pooling", "estimator", "feature", "layer"])
                .reset_index(drop=True))

    def notes(self, frame: pd.DataFrame, config) -> list[str]:
        return json.loads(str(frame.notes.iloc[0])) if len(frame) else []

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per (pooling, estimator, feature): its best layer, max R² and verdict (every
        layer's rows go to the CSV)."""
        summary = positives_negatives(table.assign(ranker="", collection=""))
        return summary.drop(columns=["ranker", "collection"])

    def charts(self, result) -> dict:
        """One R² curve chart per (pooling, estimator)."""
        from core.charts import r2_curve_chart

        return {f"r2-{pooling}-{estimator}": r2_curve_chart(part, f"R² per layer · {pooling} "
                                                                 f"pooling · {estimator}")
                for (pooling, estimator), part in result.frame.groupby(["pooling", "estimator"])}


@dataclass
class ProbeResult:
    key: str
    frame: pd.DataFrame  # RESULT_COLUMNS, layer 1-based (the state after block ℓ)
    notes: list[str]
    computed_now: int
    units: int
    stopped: bool
    seconds: float


def _with_names(table: pd.DataFrame, ranker: str, collection: str) -> pd.DataFrame:
    table = table.copy() if len(table) else pd.DataFrame(columns=PROBE_COLUMNS)
    table.insert(0, "collection", collection)
    table.insert(0, "ranker", ranker)
    return table[RESULT_COLUMNS]


def probe_ranker(ranker, collection, store, config: ProbeConfig, *,
                 limit_queries: int | None = None, depth: int | None = None,
                 progress: Progress | None = None,
                 should_stop: StopCheck | None = None) -> ProbeResult:
    """:class:`Probing` on ``ranker`` × ``collection`` (``limit_queries`` / ``depth``, when
    given, replace the config's): extract (or reuse) the activations, then probe every
    layer, resumable per layer; a finished sweep is read back without loading anything."""
    from dataclasses import replace

    from core.analysis import registered, run

    if limit_queries is not None:
        config = replace(config, limit=limit_queries)
    if depth is not None:
        config = replace(config, depth=depth)
    before = store.analysis_run(registered()["probe"].key(ranker, collection, config))
    result = run(registered()["probe"], ranker, collection, config, store, progress=progress,
                 should_stop=should_stop)
    stored = before["units_done"] if before is not None else 0
    return ProbeResult(result.key, _with_names(result.frame, ranker.spec.name, collection.name),
                       result.notes, max(0, result.done - stored), result.total,
                       result.stopped, result.seconds)


def load_probe(store, key: str) -> dict | None:
    """A stored sweep as the pages draw it: ``key``, ``frame`` (``RESULT_COLUMNS``),
    ``notes``, ``config`` and ``created`` — or None."""
    from core.analysis import config_from, load, registered

    info = store.analysis_run(key)
    if info is None or info["analysis"] != "probe":
        return None
    config = config_from(ProbeConfig, json.loads(info["config"]))
    result = load(registered()["probe"], store, key, None, config)
    return {"key": key, "frame": _with_names(result.frame, info["ranker"], info["collection"]),
            "notes": result.notes, "config": config}


def stored_probes(store, ranker: str, collection: str) -> list[dict]:
    """The finished probe runs of ``ranker`` on ``collection``, newest first (each as
    :func:`load_probe` gives it), as the Probing page draws them after a restart."""
    return [load_probe(store, key) for key, where, _ in store.finished("probe", ranker)
            if where == collection]


def probe_grid(jobs: list[tuple[str, str]], store, config: ProbeConfig, *,
               load_ranker: Callable[[str], object], load_collection: Callable[[str], object],
               progress: Progress | None = None, should_stop: StopCheck | None = None
               ) -> tuple[pd.DataFrame, list[str], list[str], list]:
    """:func:`probe_ranker` for every (ranker name, collection source) job, one at a time.

    A job whose ranker or collection cannot be loaded, or whose probes fail on bad input, is
    reported in the notes and skipped; the others still run.

    Returns:
        (every finished job's rows, notes prefixed ``ranker × collection:``, one message per
        failed job, the jobs that finished as ``(ranker name, collection source, collection,
        store key)``).
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
                ranker, collection, store, config, should_stop=should_stop,
                progress=None if progress is None else
                lambda done, total, what, label=label: progress(
                    done, total, f"{label}: " + (what or "probing layers")))
        except RankScopeError as error:
            failures.append(f"{label}: {error}")
            continue
        if result.stopped:
            break
        frames.append(result.frame)
        notes += [f"{name} × {collection.name}: {n}" for n in result.notes]
        finished.append((name, source, collection, result.key))
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
