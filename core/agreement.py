"""Agreement of the three studies per layer: probe neurons (study 1), the top-X% NIG neurons
(study 2) and patching's indirect effects (study 3) — do they point at the same places?"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.attribution import AttributionResult, top_set
from core.constants import ENCODED_R2

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
    - patching (``patch``: :func:`core.patching.mean_effects` rows): the largest |mean IE| of
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
        dims = set(writers.unit.tolist())
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


def stored_agreement(store, result: AttributionResult, column: str, percent: float,
                     threshold: float) -> tuple[pd.DataFrame, str | None, str | None]:
    """:func:`agreement` for a stored attribution run, against the newest finished probe run
    of the same ranker and collection (Lasso, mean pooling) and the newest patching sweep of
    the ranker. Returns (table, probe key, patch key); a missing run's columns are left out."""
    from core.patching import mean_effects

    ranker, collection = result.counts["ranker"], result.counts["collection"]
    probe_key = store.latest("probe", ranker, collection)
    patch_key = store.latest("patch", ranker)
    probe = store.probe_results(probe_key) if probe_key else None
    if probe is not None:
        probe = probe[(probe.estimator == "lasso") & (probe.pooling == "mean")]
    patch = mean_effects(store.patch_results(patch_key)[1]) if patch_key else None
    table = agreement(result.frame, column, percent, probe, patch,
                      result.counts["config"]["layout"]["d_model"], threshold)
    return table, probe_key, patch_key


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
