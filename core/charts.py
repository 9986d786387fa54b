"""Altair chart builders shared by pages, exports and the CLI: ``DataFrame -> alt.Chart``."""

from __future__ import annotations

import altair as alt
import pandas as pd


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
