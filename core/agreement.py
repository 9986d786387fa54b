"""Agreement of the three studies per layer: probe neurons (study 1), the top-X% NIG neurons
(study 2) and patching's indirect effects (study 3) — do they point at the same places?"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.analysis import Analysis, Job, option, register
from core.attribution import LABELS, top_set
from core.constants import ENCODED_R2
from core.errors import InputError

# Linear layers whose output units are residual-stream dimensions (they write the block's
# attention / MLP contribution), so their units compare with probe neurons one to one.
RESIDUAL_WRITERS = {"attention.output.dense": "attn", "self_attn.o_proj": "attn",
                    "output.dense": "mlp", "mlp.down_proj": "mlp"}


def part_of(component: str) -> str:
    """``attn`` or ``mlp`` for a linear layer's component name."""
    return "attn" if component.startswith(("attention", "self_attn")) else "mlp"


def agreement(neurons: pd.DataFrame, column: str, percent: float, probe: pd.DataFrame | None,
              patch: pd.DataFrame | None, d_model: int, threshold: float = ENCODED_R2
              ) -> pd.DataFrame:
    """Per layer, what three methods single out (none of the three studies compares them):

    - probe neurons: residual dimensions after the block with a non-zero Lasso coefficient
      (the stored top neurons) for a feature with test R² > ``threshold``;
    - top-``percent`` % neurons by conductance ``column``, per attention / MLP part, and those
      among the residual writers (attention output / FFN output units = residual dimensions);
    - patching (``patch``: :func:`core.sweep.mean_effects` rows): the largest |mean IE| of
      the block's attention and MLP output over position groups.

    ``probe ∩ NIG`` counts residual dimensions in both sets, next to the count expected by
    chance (|P| · |N| / d) and a hypergeometric tail p-value.
    """
    from scipy.stats import hypergeom

    chosen = neurons.iloc[top_set(neurons[column].to_numpy(), percent)]
    layers = sorted(neurons.layer.unique())
    rows = []
    for layer in layers:
        here = chosen[chosen.layer == layer]
        writers = here[here.component.isin(list(RESIDUAL_WRITERS))]
        dims = set(writers.neuron.tolist())
        row = {"layer": int(layer), "nig_attn": int((here.component.map(part_of) == "attn").sum()),
               "nig_mlp": int((here.component.map(part_of) == "mlp").sum()),
               "nig_residual_dims": len(dims)}
        probe_dims, features = set(), []
        if probe is not None and len(probe):
            passing = probe[(probe.layer == layer) & (probe.r2_mean > threshold)]
            for item in passing.itertuples(index=False):
                listed = [int(n) for n, _ in json.loads(item.neurons or "[]")]
                probe_dims.update(listed)
                features.append(item.feature)
        both = len(probe_dims & dims)
        expected = len(probe_dims) * len(dims) / d_model
        row.update({"probe_features": ", ".join(sorted(set(features))),
                    "probe_dims": len(probe_dims), "probe_and_nig": both,
                    "expected_by_chance": expected,
                    "p_value": (float(hypergeom.sf(both - 1, d_model, len(probe_dims), len(dims)))
                                if probe_dims and dims else np.nan)})
        if patch is not None and len(patch):
            for part in ("attn", "mlp"):
                ie = patch[(patch.layer == layer) & (patch.target == part)].ie_mean
                row[f"patch_{part}_ie"] = float(ie.abs().max()) if len(ie) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class AgreementConfig:
    """What three stored runs single out, layer by layer."""

    attribution: str = option("", "store key of the attribution run ('' = the newest of this "
                                  "ranker on this collection)", label="Attribution run",
                              builds_on="attribute")
    probe: str = option("", "store key of the probe run ('' = the newest of this ranker on "
                            "this collection, left out when there is none; 'none' = leave out)",
                        label="Probe run", builds_on="probe", same_collection=False,
                        optional=True)
    patch: str = option("", "store key of the patching sweep ('' = the newest of this ranker "
                            "on this collection, left out when there is none; 'none' = leave "
                            "out)", label="Patching run", builds_on="patch",
                        same_collection=False, optional=True)
    scheme: str = option("fused", "whose conductances rank the neurons",
                         choices=(*LABELS, "fused"), label="Scheme")
    percent: float = option(1.0, "the top X % NIG neurons", label="Top X %")
    threshold: float = option(ENCODED_R2, "probe neurons: those of features with test R² above "
                                          "this (study 1: 0.85)", label="Probe R² >")


@register
class Agreement(Analysis):
    """:func:`agreement` over three stored runs: one unit (the whole table), read back from
    the store once computed."""

    name = "agreement"
    title = "Agreement"
    summary = "probe neurons vs NIG top-X % vs patching, per layer"
    unit = "table"
    Config = AgreementConfig

    def validate(self, config: AgreementConfig) -> None:
        super().validate(config)
        if not 0 < config.percent <= 100:
            raise InputError(f"Top X % must lie in (0, 100], got {config.percent}")
        if not 0 <= config.threshold < 1:
            raise InputError(f"Probe R² > must be in [0, 1), got {config.threshold}")

    def units(self, job: Job) -> list[str]:
        return ["all layers"]

    def compute(self, job: Job, unit: str) -> pd.DataFrame:
        from core.sweep import mean_effects

        config, attribution = job.config, job.inputs["attribution"]
        probe, patch = job.inputs.get("probe"), job.inputs.get("patch")
        if probe is not None:
            probe = probe[(probe.estimator == "lasso") & (probe.pooling == "mean")]
        return agreement(attribution.frame, config.scheme, config.percent, probe,
                         mean_effects(patch.used) if patch is not None else None,
                         attribution.counts["config"]["layout"]["d_model"], config.threshold)

    def charts(self, result) -> dict:
        from core.charts import agreement_chart

        return {"agreement": agreement_chart(result.frame)} if len(result.frame) else {}

    def notes(self, frame: pd.DataFrame, config: AgreementConfig) -> list[str]:
        notes = [f"no {name} run was used: its columns are left out"
                 for name, key in (("probe", config.probe), ("patching", config.patch))
                 if key == "none"]
        correlation = agreement_correlation(frame)
        if correlation:
            notes.append(f"NIG top-{config.percent}% neurons per (layer, attention/MLP) vs "
                         f"patching |IE|: Spearman {correlation['spearman']:.3f} (p = "
                         f"{correlation['p_value']:.3g}, n = {correlation['n']})")
        return notes


def agreement_correlation(table: pd.DataFrame) -> dict:
    """Spearman ρ across (layer, part) between the NIG top-set counts and patching |IE|."""
    from scipy.stats import spearmanr

    if "patch_attn_ie" not in table:
        return {}
    counts = np.concatenate([table.nig_attn, table.nig_mlp]).astype(float)
    effects = np.concatenate([table.patch_attn_ie, table.patch_mlp_ie]).astype(float)
    keep = np.isfinite(effects)
    if keep.sum() < 3 or np.ptp(counts[keep]) == 0 or np.ptp(effects[keep]) == 0:
        return {"spearman": float("nan"), "p_value": float("nan"), "n": int(keep.sum())}
    rho = spearmanr(counts[keep], effects[keep])
    return {"spearman": float(rho.statistic), "p_value": float(rho.pvalue), "n": int(keep.sum())}
