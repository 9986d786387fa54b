"""The probe R² charts stay readable at 26 features: one small panel per feature family with
its own legend (click isolates a feature), and a layer × feature heatmap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.charts import export_chart, r2_curve_chart, r2_heatmap
from core.features import FEATURES, GROUP_OF


def _probe_rows(features) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"feature": f, "layer": layer, "r2_mean": rng.uniform(0, 1),
                          "r2_sd": 0.05, "n_nonzero": 3}
                         for f in features for layer in range(1, 7)])


def test_26_features_become_one_panel_per_family_each_with_its_own_legend():
    frame = _probe_rows([*FEATURES, "bm25 * stream_length"])
    spec = r2_curve_chart(frame).to_dict()
    panels = spec["concat"]
    families = [p["title"] for p in panels]
    assert families == ["coverage", "TF", "TF/L", "TF·IDF", "similarity", "combinations"]
    assert spec["resolve"]["scale"]["color"] == "independent"
    # a legend click isolates a feature, in each panel
    assert [p["bind"] for p in spec["params"]] == ["legend"] * len(panels)
    for panel in panels:
        shown = {row["feature"] for row in spec["datasets"][panel["data"]["name"]]}
        assert len(shown) <= 7 and all(GROUP_OF.get(f, "combinations") == panel["title"]
                                       for f in shown)
    assert export_chart(r2_curve_chart(frame), "svg")  # exports as one figure


def test_the_heatmap_lists_every_feature_grouped_by_family():
    frame = _probe_rows(FEATURES)
    spec = r2_heatmap(frame).to_dict()
    order = spec["encoding"]["y"]["sort"]
    assert order == list(FEATURES)  # FEATURES is already in family order
    assert spec["height"] >= 16 * len(FEATURES)
    assert json.dumps(spec["encoding"]["tooltip"]).count("r2_mean") == 1


def test_a_run_archive_holds_config_command_tables_and_figures():
    import io
    import zipfile

    from core.charts import run_archive

    frame = _probe_rows(["bm25", "sum_tf"])
    data = run_archive({"analysis": "probing", "alpha": 0.1}, {"probes": frame},
                       {"r2": r2_heatmap(frame)}, "python -m core probe --ranker x --out p.csv")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["config.json", "probes.csv", "r2.png", "r2.svg"]
        config = json.loads(archive.read("config.json"))
        assert config == {"analysis": "probing", "alpha": 0.1,
                          "command": "python -m core probe --ranker x --out p.csv"}
        assert pd.read_csv(archive.open("probes.csv")).shape == frame.shape
        assert archive.read("r2.png")[:4] == b"\x89PNG"


def test_the_app_and_its_exports_share_one_theme_and_pages_fit_only_single_views():
    """The page draws with RankScope's theme (not Streamlit's), the one vl-convert exports
    with; a single view is fitted to the page's width at its own plot height, a composed
    figure keeps its own size."""
    import altair as alt

    from core.charts import fit_width, layer_component_chart

    assert alt.theme.active == "rankscope"
    counts = pd.DataFrame({"layer": [3], "component": ["attention.output"], "neurons": [12]})
    chart = layer_component_chart(counts, "one layer", layers=[1, 2, 3, 4, 5, 6])
    spec = chart.to_dict()
    assert spec["config"]["range"]["category"] == {"scheme": "tableau10"}
    assert spec["config"]["axis"]["labelOverlap"] is False and spec["config"]["axis"]["labelLimit"] == 0
    # a set in one layer is one bar among six layers, not a bar as wide as the page
    assert spec["encoding"]["x"]["scale"]["domain"] == [1, 2, 3, 4, 5, 6]
    assert fit_width(chart).to_dict()["autosize"] == {"type": "fit-x", "contains": "padding"}
    composed = r2_curve_chart(_probe_rows(FEATURES))
    assert "autosize" not in fit_width(composed).to_dict()


def test_the_lens_chart_names_its_lines_in_words():
    from core.lens import ScoreLens

    table = pd.DataFrame({"layer": [1, 2], "nDCG@10": [0.3, 0.6],
                          "spearman_with_final": [0.1, 1.0], "first_stage_nDCG@10": [0.5, 0.5]})
    spec = ScoreLens.chart(table).to_dict()
    shown = {row["measure"] for row in spec["datasets"][spec["data"]["name"]]}
    assert shown == set(ScoreLens.MEASURES.values())
    assert "_" not in spec["encoding"]["y"]["title"] and spec["encoding"]["y"]["title"] != "value"
