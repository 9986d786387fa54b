"""The patching sweep as an analysis of the contract (:mod:`core.analysis`), and its tables.

One unit is one candidate prompt pair (:func:`core.patching.prompt_pairs`): its clean and
corrupted runs and every patched run of it (:mod:`core.patching` is the engine). Candidates are
tried in order until ``pairs`` of them are usable (:meth:`PatchingSweep.enough`); a pair the
model gets wrong, or whose LD gap is below ``min_gap``, is kept as a unit with its reason, so
a resumed sweep never tries it again and the notes say why it was left out.

A unit's rows are its per-patch rows (``pair, target, layer (1-based), group, head, value =
LD_patched — or S for target ``interaction`` — , ie``) with the pair's own fields (LD_clean,
LD_corr, status, tokens …) beside them as categorical columns (stored once per unit); a pair
left out has one row with an empty target. :class:`PatchResult` splits them back into the
per-pair and per-patch tables the pages and the knock-out read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.analysis import Analysis, Job, Progress, StopCheck, config_from, register
from core.constants import PATCH_COMPONENTS
from core.data import Collection
from core.models import Ranker
from core.patching import (PATCH_VERSION, RESULT_COLUMNS, PatchConfig, _tokens, encode_pair,
                           interaction_scores, patch_pair, plan_patches, prepare_pair,
                           prompt_pairs)
from core.store import content_key

PATCH_PAIR_COLUMNS = ["pair", "qid", "positive_docno", "negative_docno", "doc_tokens",
                      "n_tokens", "ld_clean", "ld_corr", "status", "tokens"]


def patch_key(ranker: Ranker, collection: Collection, config: PatchConfig) -> str:
    """The sweep's store key (the formula of the sweeps stored before the contract, so they
    are found again)."""
    return content_key("patching", prefix="patch-", length=16, ranker=ranker.spec.key(),
                       collection=collection.content_hash, config=config.key_fields(),
                       version=PATCH_VERSION)


@dataclass
class PatchResult:
    """A sweep as its readers use it: one row per candidate pair tried (``pairs``: LD_clean,
    LD_corr, status, tokens) and one per patched run (``results``)."""

    key: str
    pairs: pd.DataFrame
    results: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0
    config: PatchConfig | None = None  # the sweep's settings (read back with a stored run)

    @property
    def used(self) -> pd.DataFrame:
        """Per-patch rows of the pairs kept (IE present)."""
        keep = set(self.pairs[self.pairs.status == "used"].pair)
        return self.results[self.results.pair.isin(keep)]


def _unit_frame(pair_row: dict, results: pd.DataFrame) -> pd.DataFrame:
    """One pair's rows: its patched runs with the pair's fields beside them (one categorical
    value each); a pair left out has one row with an empty target."""
    if results.empty:
        results = pd.DataFrame([{"pair": pair_row["pair"], "target": "", "layer": 0,
                                 "group": "", "head": -1, "value": np.nan, "ie": np.nan}])
    frame = results[RESULT_COLUMNS].astype({"pair": "int32", "layer": "int32", "head": "int32",
                                            "value": "float64", "ie": "float64"})
    for column in PATCH_PAIR_COLUMNS[1:]:
        value = pair_row[column]
        frame[column] = (pd.Categorical([value] * len(frame)) if isinstance(value, str)
                         else value)
    return frame.reset_index(drop=True)


def split_rows(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's unit rows → (per-pair rows, per-patch rows), in pair order."""
    if rows is None or rows.empty:
        return (pd.DataFrame(columns=PATCH_PAIR_COLUMNS), pd.DataFrame(columns=RESULT_COLUMNS))
    pairs = rows.drop_duplicates("pair")[PATCH_PAIR_COLUMNS].reset_index(drop=True)
    pairs = pairs.astype({c: object for c in PATCH_PAIR_COLUMNS
                          if isinstance(pairs[c].dtype, pd.CategoricalDtype)})
    results = rows[rows.target != ""][RESULT_COLUMNS].reset_index(drop=True)
    return pairs, results.astype({"target": object, "group": object})


def sweep_pair(ranker: Ranker, config: PatchConfig, unit: dict) -> tuple[dict, pd.DataFrame]:
    """One candidate pair: its row (LD_clean, LD_corr, status …) and every patched run."""
    index = unit["pair"]
    enc, reason, doc_tokens = encode_pair(ranker, unit["query"], unit["positive"],
                                          unit["negative"], config)
    pair_row = {"pair": index, "qid": unit["qid"], "positive_docno": unit["positive_docno"],
                "negative_docno": unit["negative_docno"], "doc_tokens": doc_tokens,
                "n_tokens": 0, "ld_clean": float("nan"), "ld_corr": float("nan"),
                "status": reason or "used", "tokens": "[]"}
    empty = pd.DataFrame(columns=RESULT_COLUMNS)
    if enc is None:
        return pair_row, empty
    prepared = prepare_pair(ranker, enc)
    pair_row.update(n_tokens=prepared.n_positions, ld_clean=prepared.ld_clean,
                    ld_corr=prepared.ld_corr, tokens=json.dumps(_tokens(ranker, enc),
                                                                ensure_ascii=False))
    if config.correct_only and prepared.gap < config.min_gap:
        pair_row["status"] = (f"LD_clean − LD_corr = {prepared.gap:.3f} is below min_gap "
                              f"{config.min_gap}" + (" (the model prefers the negative document)"
                                                     if prepared.gap < 0 else ""))
        return pair_row, empty
    if abs(prepared.gap) < config.min_gap:
        pair_row["status"] = (f"|LD_clean − LD_corr| = {abs(prepared.gap):.3f} is below "
                              f"min_gap {config.min_gap}")
        return pair_row, empty
    patches = plan_patches(ranker, prepared, config)
    patched = patch_pair(ranker, prepared, patches, config.method, config.batch_rows)
    frame = pd.DataFrame({
        "pair": index, "target": [p.target for p in patches],
        "layer": [p.layer + 1 for p in patches], "group": [p.group for p in patches],
        "head": [p.head for p in patches], "value": patched,
        "ie": (patched - prepared.ld_corr) / prepared.gap})
    interaction = interaction_scores(prepared)
    frame = pd.concat([frame, pd.DataFrame({
        "pair": index, "target": "interaction", "layer": interaction.layer + 1,
        "group": f"{prepared.direction[0]}→{prepared.direction[1]}", "head": interaction["head"],
        "value": interaction.interaction, "ie": np.nan})], ignore_index=True)
    return pair_row, frame[RESULT_COLUMNS]


@register
class PatchingSweep(Analysis):
    """Activation patching of every target for each usable prompt pair (study 3)."""

    name = "patch"
    title = "Activation patching"
    summary = "activation patching: IE per layer × position group, heads"
    unit = "candidate pair"
    version = PATCH_VERSION
    Config = PatchConfig

    def validate(self, config: PatchConfig) -> None:
        super().validate(config)
        config.validate()

    def key(self, ranker, collection, config: PatchConfig) -> str:
        return patch_key(ranker, collection, config)

    def units(self, job: Job) -> list[dict]:
        job.config.validate(job.ranker)  # pairwise prompts need a judge
        pairs = prompt_pairs(job.collection, job.config, limit=job.config.candidates)
        return [{"pair": i, "qid": str(r.qid), "query": r.query, "positive": r.positive,
                 "negative": r.negative, "positive_docno": str(r.positive_docno),
                 "negative_docno": str(r.negative_docno)}
                for i, r in enumerate(pairs.itertuples(index=False))]

    def compute(self, job: Job, unit: dict) -> pd.DataFrame:
        return _unit_frame(*sweep_pair(job.ranker, job.config, unit))

    def enough(self, job: Job, frames: list[pd.DataFrame]) -> bool:
        """Done once ``pairs`` candidates were usable."""
        used = sum(int((f.drop_duplicates("pair").status == "used").sum())
                   for f in frames if len(f))
        return used >= job.config.pairs

    def summarise(self, frame: pd.DataFrame, collection, config) -> pd.DataFrame:
        pairs, results = split_rows(frame)
        keep = set(pairs[pairs.status == "used"].pair)
        return mean_effects(results[results.pair.isin(keep)])

    def display(self, table: pd.DataFrame) -> pd.DataFrame:
        """Per target and position group: the three layers (or heads) of highest mean IE —
        the table in short; every row goes to the CSV."""
        rows = []
        for (target, group), part in table.groupby(["target", "group"], sort=True):
            best = part.sort_values(["ie_mean", "layer", "head"],
                                    ascending=[False, True, True]).head(3)
            where = [f"L{r.layer}" + (f"H{r.head}" if r.head >= 0 else "") + f" {r.ie_mean:.2f}"
                     for r in best.itertuples()]
            rows.append({"target": target, "group": group, "pairs": int(part.pairs.max()),
                         "highest mean IE": ", ".join(where)})
        return pd.DataFrame(rows)

    def notes(self, frame: pd.DataFrame, config: PatchConfig) -> list[str]:
        pairs, _ = split_rows(frame)
        used = int((pairs.status == "used").sum())
        notes = []
        if used < config.pairs:
            notes.append(f"{used} of the {config.pairs} pairs asked for could be used "
                         f"({len(pairs)} candidate pairs of a relevant document and a hard "
                         "negative were tried; more candidate pairs tried or more pairs per "
                         "query offer more)")
        for item in pairs[pairs.status != "used"].itertuples(index=False):
            notes.append(f"pair {int(item.pair) + 1} (query {item.qid}) excluded: {item.status}")
        return notes

    def charts(self, result) -> dict:
        from core.charts import ie_heatmap

        return {f"ie-{target}": ie_heatmap(result.frame, target)
                for target in PATCH_COMPONENTS
                if len(result.frame) and (result.frame.target == target).any()}


def _as_patch_result(result, config: PatchConfig) -> PatchResult:
    pairs, results = split_rows(result.rows)
    return PatchResult(result.key, pairs, results, result.notes, result.stopped,
                       result.seconds, config)


def run_patching(ranker: Ranker, collection: Collection, config: PatchConfig, store=None, *,
                 progress: Progress | None = None,
                 should_stop: StopCheck | None = None) -> PatchResult:
    """:class:`PatchingSweep` on ``ranker`` × ``collection``: resumable per candidate pair
    through ``store``; a finished sweep is read back without loading anything."""
    from core.analysis import registered, run

    result = run(registered()["patch"], ranker, collection, config, store, progress=progress,
                 should_stop=should_stop)
    return _as_patch_result(result, config)


def load_patching(store, key: str) -> PatchResult | None:
    """A stored sweep with its settings, without loading the model (None: no such run)."""
    from core.analysis import load, registered

    info = store.analysis_run(key)
    if info is None or info["analysis"] != "patch":
        return None
    config = config_from(PatchConfig, json.loads(info["config"]))
    return _as_patch_result(load(registered()["patch"], store, key, None, config), config)


def with_twin(store, result: PatchResult, ranker: str, collection: str
              ) -> dict[str, PatchResult]:
    """``{prompt: sweep}``: a stored sweep and, when the store holds it finished, its
    pointwise / pairwise twin (the same settings but the prompt) — the RBO table's pair."""
    import dataclasses

    found = {result.config.prompt: result}
    other = "pairwise" if result.config.prompt == "pointwise" else "pointwise"
    twin_config = dataclasses.asdict(dataclasses.replace(result.config, prompt=other))
    runs = store.analysis_runs("patch")
    runs = runs[(runs.status == "done") & (runs.ranker == ranker)
                & (runs.collection == collection)]
    for run in runs.itertuples():
        if json.loads(run.config) == json.loads(json.dumps(twin_config)):
            found[other] = load_patching(store, run.key)
            break
    return dict(sorted(found.items(), key=lambda item: item[0], reverse=True))


def command_line(ranker: str, collection: str, config: PatchConfig,
                 store: str | None = None) -> str:
    """The ``python -m core patch`` line that reruns a sweep of ``config`` on the same store
    key (generated from the config, as every analysis' command)."""
    from dataclasses import asdict

    from core.cli import reproduce

    return reproduce("patch", ranker=ranker, collection=collection, store=store,
                     **{k: list(v) if isinstance(v, tuple) else v
                        for k, v in asdict(config).items()})


def mean_effects(results: pd.DataFrame) -> pd.DataFrame:
    """Mean / sd / count of IE per (target, layer, group, head) over the pairs kept."""
    data = results[results.target != "interaction"]
    grouped = data.groupby(["target", "layer", "group", "head"], as_index=False).ie
    return grouped.agg(ie_mean="mean", ie_sd="std", pairs="count").fillna({"ie_sd": 0.0})


def layer_rankings(effects: pd.DataFrame) -> dict[tuple[str, str], list[int]]:
    """(component, group) → layers ordered by mean IE, highest first (ties: lower layer);
    a component whose IE is the same at every layer (e.g. 0 everywhere) has no ranking."""
    out = {}
    for (target, group), frame in effects[effects.target.isin(PATCH_COMPONENTS)].groupby(["target", "group"]):
        if frame.ie_mean.nunique() < 2:
            continue
        ordered = frame.sort_values(["ie_mean", "layer"], ascending=[False, True])
        out[(target, group)] = ordered.layer.astype(int).tolist()
    return out


def rbo_table(pointwise: pd.DataFrame, pairwise: pd.DataFrame, p: float = 0.7) -> pd.DataFrame:
    """RBO (Webber et al. 2010, p = 0.7 as the study) of pointwise vs pairwise layer rankings
    per component and position group, from two :func:`mean_effects` frames."""
    from core.metrics import rank_biased_overlap

    left, right = layer_rankings(pointwise), layer_rankings(pairwise)
    keys = {tuple(k) for k in pd.concat([pointwise, pairwise])[["target", "group"]]
            .drop_duplicates().itertuples(index=False) if k[0] in PATCH_COMPONENTS}
    rows = [(target, group, rank_biased_overlap(left[(target, group)], right[(target, group)], p)
             if (target, group) in left and (target, group) in right else float("nan"),
             left.get((target, group), [])[:3], right.get((target, group), [])[:3])
            for target, group in sorted(keys)]
    return pd.DataFrame(rows, columns=["component", "group", "rbo", "top layers (pointwise)",
                                       "top layers (pairwise)"])


def head_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head): mean IE of its output at each head group, of its attention scores,
    and mean interaction S — the scatter's data."""
    data = results[results.target.isin(["head", "attn_scores", "interaction"])]
    if data.empty:
        return pd.DataFrame(columns=["layer", "head"])
    data = data.assign(column=np.where(data.target == "head", "head IE @ " + data.group,
                                       np.where(data.target == "attn_scores", "attention-score IE",
                                                "interaction S")),
                       measure=np.where(data.target == "interaction", data.value, data.ie))
    table = data.pivot_table(index=["layer", "head"], columns="column", values="measure",
                             aggfunc="mean").reset_index()
    table.columns.name = None
    return table


def correlations(table: pd.DataFrame, x: str, ys: list[str]) -> pd.DataFrame:
    """Pearson and Spearman correlation of column ``x`` with each of ``ys`` over heads."""
    rows = []
    for y in ys:
        if x not in table or y not in table:
            continue
        pair = table[[x, y]].dropna()
        if len(pair) < 3 or pair[x].std() == 0 or pair[y].std() == 0:
            continue
        rows.append((x, y, len(pair), float(pair[x].corr(pair[y])),
                     float(pair[x].corr(pair[y], method="spearman"))))
    return pd.DataFrame(rows, columns=["x", "y", "heads", "pearson", "spearman"])


def top_heads(effects: pd.DataFrame, group: str | None, k: int) -> list[tuple[int, int, str]]:
    """The ``k`` heads with the highest mean IE at ``group`` (None: every group mixed) as
    (layer 0-based, head, group)."""
    heads = effects[effects.target == "head"]
    if group is not None:
        heads = heads[heads.group == group]
    heads = heads.sort_values(["ie_mean", "layer", "head"], ascending=[False, True, True])
    heads = heads.drop_duplicates(["layer", "head"]).head(k)
    return [(int(r.layer) - 1, int(r.head), str(r.group)) for r in heads.itertuples()]


