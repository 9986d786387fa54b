"""Determinism: the same inputs and seed give bit-identical results on the CPU, for every
analysis (extraction across processes is covered by test_interruption)."""

from __future__ import annotations

import pandas as pd


def test_probes_patching_attribution_and_ablation_repeat_bit_for_bit(tiny_ce, demo, tmp_path):
    from core.analysis import registered, run
    from core.attribution import AttributionConfig, attribute_collection
    from core.knockout import NeuronAblationConfig
    from core.patching import PatchConfig
    from core.sweep import run_patching
    from core.probing import ProbeConfig, probe_ranker
    from core.store import Store

    probe = ProbeConfig(features=("bm25", "stream_length", "sum_tf"), folds=3)
    patch = PatchConfig(pairs=2, min_gap=0.0, correct_only=False)
    nig = AttributionConfig(steps=6)
    runs = []
    for attempt in range(2):
        store = Store(tmp_path / f"store-{attempt}.duckdb")  # nothing served from a cache
        probed = probe_ranker(tiny_ce, demo, store, probe, limit_queries=30)
        patched = run_patching(tiny_ce, demo, patch)
        attributed = attribute_collection(tiny_ce, demo, nig, pairs_per_label=1, store=store)
        ablated = run(registered()["ablate"], tiny_ce, demo,
                      NeuronAblationConfig(percents=(1.0,), draws=3, queries=3), store).frame
        runs.append((probed.frame, patched.results, attributed.frame, ablated))
        store.close()
    for first, second in zip(*runs):
        pd.testing.assert_frame_equal(first.reset_index(drop=True), second.reset_index(drop=True),
                                      check_exact=True)
    assert len(runs[0][0]) and len(runs[0][1]) and len(runs[0][3]) == 1
