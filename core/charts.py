"""Altair chart builders shared by pages, exports and the CLI: ``DataFrame -> alt.Chart``."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from core.constants import ABSENT_R2, ENCODED_R2


@alt.theme.register("rankscope", enable=True)
def rankscope_theme() -> alt.theme.ThemeConfig:
    """One look for the app and its exports (PNG / SVG, the CLI's figures, lesson handouts):
    the pages draw charts with this theme, not Streamlit's, so a handout matches the screen.
    Labels are never cut ("…") and never dropped to avoid overlap: a chart that cannot show
    every label is sized, turned or split instead (tests/browser/chart_check.py)."""
    return {"config": {
        "font": "sans-serif",
        "title": {"fontSize": 15, "anchor": "start", "offset": 10},
        "axis": {"labelFontSize": 12, "titleFontSize": 13, "labelLimit": 0,
                 "labelOverlap": False, "titlePadding": 8},
        "legend": {"labelFontSize": 12, "titleFontSize": 13, "labelLimit": 0},
        "header": {"labelFontSize": 13, "titleFontSize": 13},
        "range": {"category": {"scheme": "tableau10"}},
        "view": {"continuousHeight": 260, "stroke": "#ddd"},
    }}


def is_composed(chart) -> bool:
    """Concatenated or faceted charts keep their own size (Vega cannot fit them to a width)."""
    return isinstance(chart, (alt.ConcatChart, alt.HConcatChart, alt.VConcatChart,
                              alt.FacetChart)) or any(
        getattr(chart, "encoding", alt.Undefined) is not alt.Undefined
        and getattr(chart.encoding, channel, alt.Undefined) is not alt.Undefined
        for channel in ("row", "column", "facet"))


def fit_width(chart):
    """The chart as a page draws it: as wide as its container, its ``height`` the plot's own
    (Streamlit's default "fit" squeezes the plot to make room for titles and legends)."""
    if is_composed(chart):
        return chart
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def layer_lens_chart(frame: pd.DataFrame) -> alt.Chart:
    """Score lens per layer. ``frame[layer, score, input]``: one line per input version."""
    base = alt.Chart(frame).encode(
        x=alt.X("layer:Q", title="block (output position read through the score head)",
                axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("score:Q", title="score"),
        color=alt.Color("input:N", title=None, sort=["now", "before the last edit"]),
        tooltip=["input", "layer", alt.Tooltip("score:Q", format=".3f")])
    return base.mark_line(point=True).properties(
        height=260, title="Where the score forms: the score head read after every block")


# --------------------------------------------------------------------------- probing (study 1)
THRESHOLDS = pd.DataFrame({"r2": [ENCODED_R2, ABSENT_R2],
                           "label": [f"encoded ({ENCODED_R2})", f"absent ({ABSENT_R2})"]})


def _family(feature: str) -> str:
    from core.features import GROUP_OF

    return GROUP_OF.get(feature, "combinations")


def r2_curve_panels(frame: pd.DataFrame, by_family: bool = True) -> list[alt.LayerChart]:
    """Probe test R² per layer, one panel per feature family (coverage, TF, TF/L, TF·IDF,
    similarity, combinations), each with at most a handful of lines, its own colours and its
    legend underneath; click a legend entry to isolate that feature (shift-click for more),
    hover a point for its values; ±1 sd over the fold models as a band; dashed: the study's
    thresholds. ``frame``: probe rows of one ranker, collection, pooling and estimator
    (``feature, layer, r2_mean, r2_sd, n_nonzero``). ``by_family=False``: one panel for a few
    lines that belong together (feature combinations against BM25)."""
    data = frame.assign(low=frame.r2_mean - frame.r2_sd, high=frame.r2_mean + frame.r2_sd,
                        family=frame.feature.map(_family) if by_family else "features")
    low = min(0.0, float(data.r2_mean.min())) if len(data) else 0.0
    y_scale = alt.Scale(domain=[low, 1])
    panels = []
    order = ["coverage", "TF", "TF/L", "TF·IDF", "similarity", "combinations", "features"]
    for number, family in enumerate(f for f in order if f in set(data.family)):
        part = data[data.family == family]
        pick = alt.selection_point(fields=["feature"], bind="legend", name=f"isolate{number}")
        base = alt.Chart(part).encode(
            x=alt.X("layer:Q", title="layer (state after block ℓ)", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("feature:N", title="feature",
                            legend=alt.Legend(orient="bottom", columns=1, symbolLimit=12,
                                              symbolOpacity=1)))
        lines = base.mark_line(point=True).encode(
            y=alt.Y("r2_mean:Q", title="test R²", scale=y_scale),
            opacity=alt.condition(pick, alt.value(1.0), alt.value(0.12)),
            tooltip=["feature", "layer", alt.Tooltip("r2_mean:Q", format=".3f"),
                     alt.Tooltip("r2_sd:Q", format=".3f"), "n_nonzero"]).add_params(pick)
        band = base.mark_area(opacity=0.12).encode(
            y=alt.Y("low:Q", scale=y_scale), y2="high:Q",
            opacity=alt.condition(pick, alt.value(0.12), alt.value(0.0)))
        rules = alt.Chart(THRESHOLDS).mark_rule(strokeDash=[5, 4], color="#888").encode(
            y=alt.Y("r2:Q", scale=y_scale))
        layered = (band + lines + rules).properties(height=200)
        panels.append(layered.properties(title=family) if by_family else layered)
    return panels


def r2_curve_chart(frame: pd.DataFrame, title: str | None = None,
                   by_family: bool = True) -> alt.Chart:
    """:func:`r2_curve_panels` in one figure, two panels a row (exports, the CLI, lessons);
    a page draws the panels in its own columns."""
    panels = r2_curve_panels(frame, by_family)
    if not panels:
        return alt.Chart(frame).mark_point().properties(title=title or "Probe R² per layer")
    if len(panels) == 1:  # one panel: a plain chart, as wide as the page
        return panels[0].properties(height=260, title=title or "Probe R² per layer")
    return alt.concat(*[p.properties(width=300) for p in panels],
                      columns=2).resolve_scale(color="independent").properties(
        title=title or (f"Probe R² per layer (dashed: {ENCODED_R2} encoded, {ABSENT_R2} "
                        "absent; click a legend entry to isolate a feature)"))


def r2_heatmap(frame: pd.DataFrame, title: str | None = None) -> alt.Chart:
    """Layer × feature heatmap of the probe test R² (features grouped by family): the whole
    sweep at a glance, beside the curves."""
    data = frame.assign(family=frame.feature.map(_family))
    order = ["coverage", "TF", "TF/L", "TF·IDF", "similarity", "combinations"]
    rank = {f: i for i, f in enumerate(order)}
    features = sorted(data.feature.unique(), key=lambda f: (rank.get(_family(f), 99),
                                                           list(data.feature).index(f)))
    return alt.Chart(data).mark_rect().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("feature:N", sort=features, title=None),
        color=alt.Color("r2_mean:Q", title="test R²",
                        scale=alt.Scale(scheme="viridis", domain=[min(0.0, float(
                            data.r2_mean.min()) if len(data) else 0.0), 1])),
        tooltip=["feature", "family", "layer", alt.Tooltip("r2_mean:Q", format=".3f"),
                 alt.Tooltip("r2_sd:Q", format=".3f")]).properties(
        height=20 * max(1, len(features)),  # 20 px a row: every feature's label fits
        title=title or "Probe R² per layer and feature")


def radar_chart(summary: pd.DataFrame) -> alt.Chart:
    """Spider chart of max R² per feature, one polygon per model (``ranker, feature, max_r2``)."""
    features = sorted(summary.feature.unique())
    angle = {f: 2 * math.pi * i / len(features) for i, f in enumerate(features)}
    rows = []
    for ranker, group in summary.groupby("ranker"):
        values = dict(zip(group.feature, group.max_r2.clip(lower=0)))
        for order, feature in enumerate(features + features[:1]):
            r = values.get(feature, 0.0)
            rows.append({"ranker": ranker, "feature": feature, "order": order, "max_r2": r,
                         "x": r * math.sin(angle[feature]), "y": r * math.cos(angle[feature])})
    data = pd.DataFrame(rows)
    rings = pd.DataFrame([{"ring": ring, "order": i, "x": ring * math.sin(t), "y": ring * math.cos(t)}
                          for ring in (0.25, 0.5, 0.75, 1.0)
                          for i, t in enumerate(np.linspace(0, 2 * math.pi, 61))])
    labels = pd.DataFrame([{"feature": f, "x": 1.12 * math.sin(a), "y": 1.12 * math.cos(a)}
                           for f, a in angle.items()])
    scale = alt.Scale(domain=[-1.35, 1.35])
    grid = alt.Chart(rings).mark_line(color="#ddd").encode(
        x=alt.X("x:Q", scale=scale, axis=None), y=alt.Y("y:Q", scale=scale, axis=None),
        detail="ring:N", order="order:Q")
    text = alt.Chart(labels).mark_text(fontSize=9).encode(x="x:Q", y="y:Q", text="feature:N")
    polygons = alt.Chart(data).mark_line(point=True, opacity=0.8).encode(
        x="x:Q", y="y:Q", order="order:Q",
        color=alt.Color("ranker:N", title="ranker", legend=alt.Legend(orient="bottom")),
        tooltip=["ranker", "feature", alt.Tooltip("max_r2:Q", format=".3f")])
    return (grid + text + polygons).properties(
        width=460, height=460, title="Max probe R² per feature (rings at 0.25, 0.5, 0.75, 1)")


def comparison_heatmap(summary: pd.DataFrame, sort_by: str = "mean") -> alt.Chart:
    """Model × feature heatmap of max R². Features sorted by ``sort_by``: ``mean`` over models,
    ``name``, or a ranker's name (that ranker's R², highest first)."""
    if sort_by == "name":
        order = sorted(summary.feature.unique())
    elif sort_by in set(summary.ranker):
        order = (summary[summary.ranker == sort_by].sort_values("max_r2", ascending=False)
                 .feature.tolist())
    else:
        order = summary.groupby("feature").max_r2.mean().sort_values(ascending=False).index.tolist()
    # features down the side (one 20 px row each: every name fits at any width), models across
    base = alt.Chart(summary).encode(
        y=alt.Y("feature:N", sort=order, title=None),
        x=alt.X("ranker:N", title=None, axis=alt.Axis(labelAngle=0, orient="top")))
    cells = base.mark_rect().encode(
        color=alt.Color("max_r2:Q", scale=alt.Scale(scheme="viridis", domain=[0, 1]),
                        title="max R²"),
        tooltip=["ranker", "feature", alt.Tooltip("max_r2:Q", format=".3f"), "best_layer"])
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("max_r2:Q", format=".2f"),
        color=alt.condition("datum.max_r2 > 0.6", alt.value("black"), alt.value("white")))
    return (cells + text).properties(height=20 * max(1, summary.feature.nunique()),
                                     title=f"Max R² per model and feature (sorted by {sort_by})")


def id_ood_chart(frame: pd.DataFrame) -> alt.Chart:
    """Last-layer R² per feature, one bar per collection (``feature, collection, r2_mean``)."""
    rows = frame.feature.nunique() * max(1, frame.collection.nunique())
    return alt.Chart(frame).mark_bar().encode(
        y=alt.Y("feature:N", title=None), yOffset="collection:N",
        x=alt.X("r2_mean:Q", title="test R² at the last layer"),
        color=alt.Color("collection:N", title="collection",
                        legend=alt.Legend(orient="bottom")),
        tooltip=["collection", "feature", alt.Tooltip("r2_mean:Q", format=".3f")]
    ).properties(height=max(160, 10 * rows),
                 title="In- vs out-of-distribution: last-layer R² per collection")


def neuron_count_chart(histogram: pd.DataFrame) -> alt.Chart:
    """Probes by non-zero Lasso neurons (0 / 1 / 2–3 / ≥4) per layer (``layer, neurons, probes``)."""
    return alt.Chart(histogram).mark_bar().encode(
        x=alt.X("layer:O", title="layer"),
        y=alt.Y("probes:Q", title="features"),
        color=alt.Color("neurons:N", sort=["0", "1", "2–3", "≥4"], title="non-zero neurons"),
        tooltip=["layer", "neurons", "probes"]
    ).properties(height=240, title="How many neurons each Lasso probe uses")


# --------------------------------------------------------------------------- patching (study 3)
GROUP_ORDER = ["document", "query", "instruction", "last"]
IE_SCALE = alt.Scale(scheme="redblue", domainMid=0, reverse=True)


def ie_heatmap(effects: pd.DataFrame, target: str, title: str | None = None) -> alt.Chart:
    """Mean IE per layer × position group for one component (``mean_effects`` rows)."""
    data = effects[(effects.target == target) & (effects["head"] < 0)]
    names = {"attn": "attention output", "mlp": "MLP output", "resid": "residual stream"}
    base = alt.Chart(data).encode(
        x=alt.X("layer:O", title="layer"),
        y=alt.Y("group:N", sort=GROUP_ORDER, title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("ie_mean:Q", scale=IE_SCALE, title="mean IE"),
        tooltip=["group", "layer", alt.Tooltip("ie_mean:Q", format=".3f"),
                 alt.Tooltip("ie_sd:Q", format=".3f"), "pairs"])
    # a stretched page fits title, legend and axes into the height: leave them room
    return cells.properties(height=120 + 34 * max(1, data.group.nunique()),
                            title=title or f"IE of the {names.get(target, target)}")


def head_heatmap(effects: pd.DataFrame, group: str, top: int = 5) -> alt.Chart:
    """Mean IE of each head's output (layer × head) at one position group; the ``top`` heads
    are outlined and labelled."""
    data = effects[(effects.target == "head") & (effects.group == group)].copy()
    data["rank"] = data.ie_mean.rank(ascending=False, method="first").astype(int)
    data["top"] = data["rank"] <= top
    base = alt.Chart(data).encode(x=alt.X("layer:O", title="layer"),
                                  y=alt.Y("head:O", title="head"))
    cells = base.mark_rect().encode(
        color=alt.Color("ie_mean:Q", scale=IE_SCALE, title="mean IE"),
        tooltip=["layer", "head", alt.Tooltip("ie_mean:Q", format=".3f"), "rank"])
    outline = base.transform_filter("datum.top").mark_rect(fill=None, stroke="black",
                                                           strokeWidth=2)
    labels = base.transform_filter("datum.top").mark_text(fontSize=9).encode(text="rank:Q")
    return (cells + outline + labels).properties(
        height=120 + 22 * int(data["head"].nunique() or 1),
        title=f"Head outputs patched at {group} positions (top {top} outlined, by rank)")


def head_scatter(table: pd.DataFrame, x: str, y: str) -> alt.Chart:
    """One point per head: ``x`` against ``y`` (columns of ``head_table``), with a fit line."""
    data = table[["layer", "head", x, y]].dropna().rename(columns={x: "x", y: "y"})
    points = alt.Chart(data).mark_circle(size=40, opacity=0.7).encode(
        x=alt.X("x:Q", title=x), y=alt.Y("y:Q", title=y),
        color=alt.Color("layer:Q", scale=alt.Scale(scheme="viridis"), title="layer"),
        tooltip=["layer", "head", alt.Tooltip("x:Q", format=".3f", title=x),
                 alt.Tooltip("y:Q", format=".3f", title=y)])
    fit = points.transform_regression("x", "y").mark_line(color="#888", strokeDash=[4, 3])
    return (points + fit).properties(height=280, title=f"{y} vs {x}")


def knockout_chart(table: pd.DataFrame, measure: str = "ndcg") -> alt.Chart:
    """Knock-out: ``measure`` (f1 or ndcg) per position group, top-k heads vs random heads,
    with the full model as a rule."""
    full = table[table.selection == "full model"]
    data = table[table.selection != "full model"].assign(
        kind=lambda f: np.where(f.selection.str.startswith("top"), "top-k by IE", "random"))
    title = {"ndcg": "nDCG@10 (BM25 top-20 re-ranked)", "f1": "F1 of yes/no judgments"}[measure]
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("group:N", title="heads chosen at", sort=[*GROUP_ORDER, "mixed"],
                axis=alt.Axis(labelAngle=0)),
        xOffset="kind:N", y=alt.Y(f"{measure}:Q", title=title),
        color=alt.Color("kind:N", title=None),
        tooltip=["group", "selection", alt.Tooltip(f"{measure}:Q", format=".3f"),
                 alt.Tooltip(f"{measure}_change_pct:Q", format=".1f", title="change %")])
    rule = alt.Chart(full).mark_rule(strokeDash=[5, 4]).encode(y=f"{measure}:Q")
    return (bars + rule).properties(height=240, title=f"Knock-out: {title} (dashed: full model)")


# --------------------------------------------------------------------------- attribution (study 2)
def intersection_chart(curves: pd.DataFrame) -> alt.Chart:
    """Intersection % of top-X% neuron sets over X, one line per scheme pair
    (``pair, percent, intersection``)."""
    # lines that coincide stay apart: each pair has its own point shape and dash, and a
    # click on a legend entry isolates it (shift-click for more)
    pick = alt.selection_point(fields=["pair"], bind="legend")
    return alt.Chart(curves).mark_line(point=True).encode(
        x=alt.X("percent:Q", title="top X % of neurons", scale=alt.Scale(type="log")),
        y=alt.Y("intersection:Q", title="intersection (% of the set)",
                scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("pair:N", title=None, legend=alt.Legend(orient="bottom", columns=2)),
        shape=alt.Shape("pair:N", title=None, legend=None),
        strokeDash=alt.StrokeDash("pair:N", title=None, legend=None),
        opacity=alt.condition(pick, alt.value(1.0), alt.value(0.15)),
        tooltip=["pair", alt.Tooltip("percent:Q", format=".3g"),
                 alt.Tooltip("intersection:Q", format=".1f")]).add_params(pick).properties(
        height=300, title="How much two schemes' top-X% neurons share (click a legend entry "
                          "to isolate a pair)")


def layer_component_chart(counts: pd.DataFrame, title: str,
                          layers: list[int] | None = None) -> alt.Chart:
    """Neurons of a set per layer, stacked by linear layer (``layer, component, neurons``).
    ``layers``: every layer of the model on the x axis (a set in one layer is then one bar
    among empty layers, not one bar as wide as the page)."""
    domain = sorted(set(layers or []) | set(counts.layer.astype(int))) or None
    return alt.Chart(counts).mark_bar().encode(
        x=alt.X("layer:O", title="layer", scale=alt.Scale(domain=domain),
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("neurons:Q", title="neurons", axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("component:N", title="linear layer"),
        tooltip=["layer", "component", "neurons"]).properties(height=280, title=title)


def ablation_chart(table: pd.DataFrame) -> alt.Chart:
    """% change of nDCG@10 per neuron set: the set vs the mean of its random sets; * = p < 0.05
    (paired t-test)."""
    data = pd.concat([
        table.assign(kind="knocked out", change=table.change_pct),
        table.assign(kind="random (mean)", change=table.random_change_pct)], ignore_index=True)
    data["mark"] = np.where(data.significant & (data.kind == "knocked out"), "*", "")
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("set:N", title=None, sort=list(table.set), axis=alt.Axis(labelAngle=0,
                                                                          labelLimit=400)),
        xOffset="kind:N", y=alt.Y("change:Q", title="nDCG@10 change (%)"),
        color=alt.Color("kind:N", title=None),
        tooltip=["set", "kind", alt.Tooltip("change:Q", format=".2f"),
                 alt.Tooltip("p_value:Q", format=".3g")])
    stars = alt.Chart(data).mark_text(dy=-8, fontSize=16).encode(
        x=alt.X("set:N", sort=list(table.set)), xOffset="kind:N", y="change:Q", text="mark:N")
    return (bars + stars).properties(height=320, title="Knock-out of neuron sets vs random sets "
                                                       "(* p < 0.05)")


def random_distribution_chart(table: pd.DataFrame) -> alt.Chart:
    """Each random draw's nDCG@10 change (dots) and the set's own (red tick), per set."""
    import json

    draws = pd.DataFrame([{"set": row.set, "change": value}
                          for row in table.itertuples(index=False)
                          for value in json.loads(row.random_changes)])
    dots = alt.Chart(draws).mark_circle(size=40, opacity=0.5).encode(
        y=alt.Y("set:N", title=None, sort=list(table.set), axis=alt.Axis(labelLimit=400)),
        x=alt.X("change:Q", title="nDCG@10 change (%)"),
        yOffset=alt.YOffset("jitter:Q"), tooltip=[alt.Tooltip("change:Q", format=".2f")]
    ).transform_calculate(jitter="random()")
    own = alt.Chart(table).mark_tick(color="#d62728", thickness=3, size=26).encode(
        y=alt.Y("set:N", sort=list(table.set)), x="change_pct:Q",
        tooltip=["set", alt.Tooltip("change_pct:Q", format=".2f")])
    return (dots + own).properties(
        height=max(160, 70 * len(table)),
        title="Random sets of the same size in the same layers (dots) vs the set (red)")


def shapley_chart(per_query: pd.DataFrame) -> alt.Chart:
    """Per query: the probe group's Shapley value (dot) against the random groups' 95th
    percentile (tick)."""
    data = pd.concat([
        per_query.assign(kind="probe group", value=per_query.shapley_probe),
        per_query.assign(kind="random 95th percentile", value=per_query.random_p95)])
    return alt.Chart(data).mark_point(filled=True, size=70).encode(
        x=alt.X("qid:N", title="query"), y=alt.Y("value:Q", title="Shapley value (nDCG@10)"),
        color=alt.Color("kind:N", title=None), shape=alt.Shape("kind:N", title=None),
        column=alt.Column("feature:N", title=None),
        tooltip=["feature", "qid", "kind", alt.Tooltip("value:Q", format=".4f")]).properties(
        height=240, title="Probe group vs random groups")


def agreement_chart(table: pd.DataFrame) -> alt.Chart:
    """Per layer: residual dimensions picked by the probe, by NIG, by both, and the overlap
    expected by chance."""
    data = table.melt(id_vars="layer", value_vars=["probe_dims", "nig_residual_dims",
                                                   "probe_and_nig"],
                      var_name="set", value_name="dimensions")
    data["set"] = data.set.map({"probe_dims": "probe neurons",
                                "nig_residual_dims": "NIG top-X% (residual writers)",
                                "probe_and_nig": "both"})
    bars = alt.Chart(data).mark_bar().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)), xOffset="set:N",
        y=alt.Y("dimensions:Q", title="residual-stream dimensions"),
        color=alt.Color("set:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=0)),
        tooltip=["layer", "set", "dimensions"])
    chance = alt.Chart(table).mark_tick(color="black", thickness=2, size=18).encode(
        x=alt.X("layer:O", title="layer"),
        y=alt.Y("expected_by_chance:Q", title="residual-stream dimensions"),
        tooltip=["layer", alt.Tooltip("expected_by_chance:Q", format=".2f",
                                      title="both, expected by chance")])
    return (bars + chance).properties(
        height=280, title="Residual dimensions per layer: probe vs NIG (tick: overlap by chance)")


def export_chart(chart: alt.Chart, fmt: str) -> bytes:
    """PNG or SVG bytes of a chart, rendered offline by vl-convert."""
    import vl_convert as vlc

    spec = chart.to_json()
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode()
    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    raise ValueError(f"unknown export format {fmt!r}; use png or svg")


def run_archive(config: dict, tables: dict[str, pd.DataFrame],
                charts: dict[str, alt.Chart] | None = None, command: str = "") -> bytes:
    """A zip of one run: ``config.json`` (with the command line that reruns it), every table as
    CSV and every chart as PNG and SVG — "Download this run" on the analysis pages."""
    import io
    import json
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps({**config, "command": command}, indent=2,
                                                   default=str, ensure_ascii=False))
        for name, frame in tables.items():
            archive.writestr(f"{name}.csv", frame.to_csv(index=False))
        for name, chart in (charts or {}).items():
            archive.writestr(f"{name}.png", export_chart(chart, "png"))
            archive.writestr(f"{name}.svg", export_chart(chart, "svg"))
    return buffer.getvalue()
