"""Activation patching on tiny random Llama / BERT rankers: the IE arithmetic, the fast path
against the one-forward-per-patch loop, resumption, knock-out and hook hygiene."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from core.models import attention as attention_module  # its private registry, checked for leaks
from core.errors import InputError
from core.hooks import capture_inputs, count_hooks
from core.knockout import KnockoutConfig, head_means, heads_ablated
from core.metrics import rank_biased_overlap
from core.models import DOCUMENT, INSTRUCTION, LAST, QUERY, ModelSpec, load_ranker
from core.patching import (Patch, PatchConfig, PreparedPair, encode_pair, interaction_scores,
                           patch_pair, plan_patches, prepare_pair, prompt_pairs)
from core.store import Store
from core.sweep import load_patching, mean_effects, rbo_table, run_patching


@pytest.fixture(scope="module")
def tiny_judge(tiny_llama_dir):
    return load_ranker(ModelSpec("tiny-judge", "llm-judge", str(tiny_llama_dir), device="cpu"))


QUERY_TEXT = "how to store honey"
POSITIVE = "Store honey in a sealed glass jar at room temperature, away from sunlight."
NEGATIVE = "The football season starts in August with twenty teams in the league table."


def _prepared(ranker, prompt="pointwise", positive=POSITIVE, negative=NEGATIVE):
    config = PatchConfig(prompt=prompt, doc_tokens=12)
    enc, reason, _ = encode_pair(ranker, QUERY_TEXT, positive, negative, config)
    assert reason == ""
    return prepare_pair(ranker, enc)


def _ie(prepared, values):
    return (np.asarray(values) - prepared.ld_corr) / prepared.gap


@pytest.mark.parametrize("name", ["tiny_judge", "tiny_ce"])
def test_patching_the_whole_residual_stream_restores_the_clean_run(name, request):
    ranker = request.getfixturevalue(name)
    prepared = _prepared(ranker)
    assert abs(prepared.gap) > 1e-4  # random weights still separate these two documents
    patches = [Patch("resid", layer, "all") for layer in range(ranker.n_layers)]
    ie = _ie(prepared, patch_pair(ranker, prepared, patches))
    # The patched run recomputes the clean score through other kernels (it starts at the
    # patched layer, batched), so it may differ from LD_clean by float32 rounding of the score:
    # at most d_model ulps (the longest reduction feeding the score is a d_model dot product).
    # IE divides that by the gap. A wrong patch moves IE by O(1).
    ld_error = ranker.d_model * np.finfo(np.float32).eps * max(abs(prepared.ld_clean),
                                                                abs(prepared.ld_corr))
    np.testing.assert_allclose(ie, 1.0, atol=ld_error / abs(prepared.gap))


@pytest.mark.parametrize("name", ["tiny_judge", "tiny_ce"])
def test_patching_nothing_leaves_the_corrupted_run(name, request, monkeypatch):
    import core.patching as patching

    ranker = request.getfixturevalue(name)
    # clean = corrupted: every patch writes the values already there, so IE's numerator is 0
    prepared = _prepared(ranker, negative=POSITIVE)
    patches = plan_patches(ranker, prepared, PatchConfig())
    forced = [p for p in patches if p.target != "resid"][:40]
    # the staged path skips a patch that changes nothing (it returns LD_corr unrun): turn
    # that shortcut off, so every patched run really goes through the blocks
    monkeypatch.setattr(patching, "changes_nothing", lambda *_: False)
    # float32 rounding of the score through other kernels: d_model ulps of it (as above)
    ld_error = ranker.d_model * np.finfo(np.float32).eps * abs(prepared.ld_corr)
    for method in ("staged", "loop"):
        values = patch_pair(ranker, prepared, forced, method)
        np.testing.assert_allclose(values, prepared.ld_corr, atol=ld_error)


@pytest.mark.parametrize("name,prompt", [("tiny_judge", "pointwise"), ("tiny_judge", "pairwise"),
                                         ("tiny_ce", "pointwise")])
def test_fast_path_matches_one_forward_per_patch(name, prompt, request):
    ranker = request.getfixturevalue(name)
    prepared = _prepared(ranker, prompt)
    patches = plan_patches(ranker, prepared, PatchConfig(prompt=prompt,
                                                         head_groups=("last", "query", "document")))
    assert {p.target for p in patches} == {"attn", "mlp", "resid", "head", "attn_scores"}
    staged = patch_pair(ranker, prepared, patches, "staged", batch_rows=7)
    loop = patch_pair(ranker, prepared, patches, "loop")
    assert np.abs(staged - loop).max() <= 1e-4
    assert count_hooks(ranker.model) == 0
    assert ranker.model.config._attn_implementation != attention_module._ATTENTION_NAME
    assert attention_module._ATTENTION_STATES == {}


def test_causal_query_before_document_cannot_carry_the_difference(tiny_judge):
    """In a decoder the query precedes the document, so its activations are identical in the
    clean and corrupted runs: IE is exactly 0 there (and the fast path skips those runs)."""
    prepared = _prepared(tiny_judge)
    assert prepared.direction == ("document", "query")
    patches = [Patch(t, layer, "query") for t in ("attn", "mlp", "resid")
               for layer in range(tiny_judge.n_layers)]
    assert np.all(_ie(prepared, patch_pair(tiny_judge, prepared, patches)) == 0)


def test_interaction_score_by_hand():
    groups = torch.tensor([INSTRUCTION, QUERY, QUERY, DOCUMENT, DOCUMENT, LAST])
    weights = torch.zeros(2, 1, 6, 6)
    # clean: query token 1 attends 0.6 / 0.1 to the documents, token 2 0.2 / 0.5
    weights[0, 0, 1, 3:5] = torch.tensor([0.6, 0.1])
    weights[0, 0, 2, 3:5] = torch.tensor([0.2, 0.5])
    weights[1, 0, 1, 3:5] = torch.tensor([0.1, 0.1])
    weights[1, 0, 2, 3:5] = torch.tensor([0.3, 0.0])
    prepared = PreparedPair(enc=None, groups=groups, ld_clean=1.0, ld_corr=0.0, block_inputs=[],
                            clean={}, clean_heads={}, corrupted={}, corrupted_heads={},
                            weights={0: weights}, keys={}, call=None, n_positions=6)
    frame = interaction_scores(prepared)
    row = frame.iloc[0]
    assert row.s_clean == pytest.approx(0.6 + 0.5)
    assert row.s_corrupted == pytest.approx(0.1 + 0.3)
    assert row.interaction == pytest.approx(0.7)


def test_rbo_worked_examples():
    assert rank_biased_overlap([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert rank_biased_overlap([1, 2], [3, 4]) == 0.0
    # X1 = 0, X2 = 2: 2/2·0.5² + (0.5/0.5)·(0 + 2/2·0.5²) = 0.5
    assert rank_biased_overlap([1, 2], [2, 1], p=0.5) == pytest.approx(0.5)
    # p = 0.7, [a b c] vs [a c b]: X = 1, 1, 3 → 1·0.343 + (0.3/0.7)(0.7 + 0.5·0.49 + 0.343)
    expected = 0.343 + 0.3 / 0.7 * (0.7 + 0.245 + 0.343)
    assert rank_biased_overlap(["a", "b", "c"], ["a", "c", "b"]) == pytest.approx(expected)
    with pytest.raises(ValueError):
        rank_biased_overlap([1], [1], p=1.0)


def test_rbo_table_compares_layer_rankings():
    def effects(order):
        return pd.DataFrame({"target": "attn", "layer": [1, 2, 3], "group": "last", "head": -1,
                             "ie_mean": order, "ie_sd": 0.0, "pairs": 2})

    table = rbo_table(effects([0.9, 0.5, 0.1]), effects([0.9, 0.1, 0.5]))
    assert table.rbo.iloc[0] == pytest.approx(rank_biased_overlap([1, 2, 3], [1, 3, 2]))


def test_sweep_is_stored_resumable_and_leaves_no_hooks(tiny_judge, demo, store_path):
    config = PatchConfig(pairs=3, min_gap=0.0, correct_only=False, doc_tokens=10,
                         head_groups=("last",))
    store = Store(store_path)
    calls = []

    def stop_after_first():
        calls.append(1)
        return len(calls) > 1

    first = run_patching(tiny_judge, demo, config, store, should_stop=stop_after_first)
    assert first.stopped and len(first.pairs) == 1
    resumed = run_patching(tiny_judge, demo, config, store)
    assert not resumed.stopped and len(resumed.pairs) == 3
    fresh = run_patching(tiny_judge, demo, config, store=None)
    merged = resumed.results.merge(fresh.results, on=["pair", "target", "layer", "group", "head"])
    assert len(merged) == len(fresh.results)
    np.testing.assert_allclose(merged.value_x, merged.value_y, atol=1e-5)
    # IE = (LD_patched − LD_corr) / (LD_clean − LD_corr) for every stored row
    rows = resumed.results[resumed.results.target != "interaction"].merge(resumed.pairs, on="pair")
    np.testing.assert_allclose(rows.ie, (rows.value - rows.ld_corr) / (rows.ld_clean - rows.ld_corr),
                               rtol=1e-9)
    tokens = json.loads(resumed.pairs.tokens.iloc[0])
    assert {t[1] for t in tokens} >= {"query", "document", "instruction", "last"}
    assert count_hooks(tiny_judge.model) == 0
    effects = mean_effects(resumed.used)
    assert set(effects.target) >= {"attn", "mlp", "resid", "head", "attn_scores"}
    store.close()


def test_tight_gap_pairs_are_reported_not_kept(tiny_judge, demo):
    result = run_patching(tiny_judge, demo, PatchConfig(pairs=2, min_gap=1e6, doc_tokens=10))
    assert (result.pairs.status != "used").all()
    assert len(result.pairs) == 8  # excluded pairs are replaced: 4 candidates per pair asked for
    assert result.used.empty
    assert any("below min_gap" in note for note in result.notes)
    assert any("0 of the 2 pairs asked for could be used" in note for note in result.notes)


def test_only_pairs_judged_right_are_kept_by_default(tiny_judge, demo):
    either = run_patching(tiny_judge, demo, PatchConfig(pairs=4, min_gap=0.0, correct_only=False,
                                                        doc_tokens=10, head_groups=(),
                                                        attention_scores=False))
    right = run_patching(tiny_judge, demo, PatchConfig(pairs=4, min_gap=0.0, doc_tokens=10,
                                                       head_groups=(), attention_scores=False))
    used = right.pairs[right.pairs.status == "used"]
    assert (used.ld_clean > used.ld_corr).all() and len(used) == 4
    wrong = right.pairs[right.pairs.status != "used"]
    assert (wrong.ld_clean < wrong.ld_corr).all()
    assert all("prefers the negative" in status for status in wrong.status)
    assert len(either.pairs) == 4  # nothing excluded when either direction is kept


def test_hooks_and_attention_are_restored_when_a_sweep_fails(tiny_judge, demo, monkeypatch):
    """The error is raised inside a patched run — hooks registered, RankScope's attention in
    place — and everything is restored after it."""
    import core.patching as patching

    layer_hooks, inside = patching._layer_hooks, []

    def failing_hooks(ranker, prepared, rows, layer, span):
        outputs, inputs, edit = layer_hooks(ranker, prepared, rows, layer, span)

        def boom(value):
            inside.append((count_hooks(ranker.model), ranker.model.config._attn_implementation,
                           len(attention_module._ATTENTION_STATES)))
            raise RuntimeError("stop here")

        return {path: boom for path in outputs} or {ranker.block_path(layer): boom}, inputs, edit

    monkeypatch.setattr(patching, "_layer_hooks", failing_hooks)
    with pytest.raises(RuntimeError, match="stop here"):
        run_patching(tiny_judge, demo, PatchConfig(pairs=1, min_gap=0.0, correct_only=False,
                                                   doc_tokens=10))
    hooks, attention, states = inside[0]
    assert hooks > 0 and attention == attention_module._ATTENTION_NAME and states > 0  # it failed inside
    assert count_hooks(tiny_judge.model) == 0
    assert tiny_judge.model.config._attn_implementation != attention_module._ATTENTION_NAME
    assert attention_module._ATTENTION_STATES == {}


def test_bad_settings_are_named(tiny_ce, demo):
    from core.analysis import registered

    with pytest.raises(InputError, match="pairwise prompts need"):
        PatchConfig(prompt="pairwise").validate(tiny_ce)
    with pytest.raises(InputError, match="Position groups: 'body' is not one of"):
        registered()["patch"].validate(PatchConfig(groups=("body",)))
    with pytest.raises(InputError, match="candidate pairs tried"):
        registered()["patch"].validate(PatchConfig(pairs=6, tries=3))
    with pytest.raises(InputError, match="no query in split .nonexistent."):
        prompt_pairs(demo, PatchConfig(split="nonexistent"))


def test_mean_ablation_writes_the_mean_at_the_group_only(tiny_ce):
    enc = tiny_ce.encode([QUERY_TEXT], [POSITIVE])
    means = head_means(tiny_ce, [enc])
    path = tiny_ce.head_input_path(1)
    cols = slice(2 * tiny_ce.head_dim, 3 * tiny_ce.head_dim)
    with heads_ablated(tiny_ce, [(1, 2, "query")], means, lambda: enc.groups), \
            capture_inputs(tiny_ce.model, [path]) as seen, torch.inference_mode():
        tiny_ce.forward(enc)
    query = enc.groups[0] == QUERY
    ablated = seen[path][0]
    assert torch.allclose(ablated[query][:, cols], means[1][cols].expand(int(query.sum()), -1))
    with capture_inputs(tiny_ce.model, [path]) as plain, torch.inference_mode():
        tiny_ce.forward(enc)
    assert torch.equal(ablated[~query], plain[path][0][~query])  # other positions untouched
    assert count_hooks(tiny_ce.model) == 0


def test_knockout_table(tiny_ce, demo, store_path):
    from core.analysis import registered, run

    config = PatchConfig(pairs=2, min_gap=0.0, correct_only=False, doc_tokens=10,
                         attention_scores=False)
    store = Store(store_path)
    patch = run_patching(tiny_ce, demo, config, store)
    knockout = KnockoutConfig(patch=patch.key, k=2, repeats=2, queries=2)
    result = run(registered()["knockout"], tiny_ce, demo, knockout, store)
    table = result.frame
    assert list(table.selection[:2]) == ["full model", "top-2"]
    assert set(table.group) == {"all", "last", "query", "mixed"}
    assert table.f1.between(0, 1).all() and table.ndcg.between(0, 1).all()
    assert (table.heads[1:] == 2).all()
    assert result.total == 1 + 3 * (1 + 2)  # full model; per condition top-k + 2 random sets
    again = run(registered()["knockout"], tiny_ce, demo, knockout, store)  # from the store
    pd.testing.assert_frame_equal(table.reset_index(drop=True), again.frame.reset_index(drop=True),
                                  check_dtype=False)
    assert count_hooks(tiny_ce.model) == 0
    store.close()


def test_a_knockout_refuses_another_rankers_sweep(tiny_ce, tiny_judge, demo, store_path):
    """Handed the judge's sweep, the cross-encoder's knock-out says whose sweep it is rather
    than answering with heads ranked on another model."""
    from core.analysis import registered, run

    store = Store(store_path)
    judge_sweep = run_patching(tiny_judge, demo, PatchConfig(pairs=1, min_gap=0.0,
                                                             correct_only=False, doc_tokens=10,
                                                             attention_scores=False), store)
    with pytest.raises(InputError, match="was made with tiny-judge, not tiny-ce"):
        run(registered()["knockout"], tiny_ce, demo, KnockoutConfig(patch=judge_sweep.key),
            store)
    assert (store.analysis_runs().analysis == "patch").all()  # no knock-out half-written
    store.close()


def test_patching_sweeps_travel_from_a_cli_side_file(tiny_ce, demo, tmp_path):
    config = PatchConfig(pairs=1, min_gap=0.0, correct_only=False, doc_tokens=8,
                         head_groups=(), attention_scores=False)
    side = Store(tmp_path / "side.duckdb")
    result = run_patching(tiny_ce, demo, config, side)
    side.close()
    main = Store(tmp_path / "main.duckdb")
    counts = main.import_file(tmp_path / "side.duckdb")
    assert counts["analyses"] == 1
    stored = load_patching(main, result.key)
    assert len(stored.pairs) == 1 and stored.results.equals(result.results)
    assert main.analysis_runs("patch").status.tolist() == ["done"]
    main.close()


def test_rbo_is_undefined_where_ie_is_flat():
    flat = pd.DataFrame({"target": "attn", "layer": [1, 2, 3], "group": "query", "head": -1,
                         "ie_mean": 0.0, "ie_sd": 0.0, "pairs": 2})
    table = rbo_table(flat, flat)
    assert len(table) == 1 and np.isnan(table.rbo.iloc[0])


def test_neuron_mean_ablation_writes_each_units_token_mean(tiny_ce):
    from core.hooks import capture
    from core.knockout import neurons_ablated, token_means

    enc = tiny_ce.encode([QUERY_TEXT, "honey"], [POSITIVE, NEGATIVE])
    path = tiny_ce.linear_paths()[4]
    with capture(tiny_ce.model, [path]) as plain, torch.inference_mode():
        tiny_ce.forward(enc)
    means = token_means(tiny_ce, [enc], [path])
    real = enc.attention_mask.bool()
    torch.testing.assert_close(means[path], plain[path][real].mean(0), rtol=1e-5, atol=1e-6)
    with neurons_ablated(tiny_ce, {path: np.array([1, 3])}, means), \
            capture(tiny_ce.model, [path]) as seen, torch.inference_mode():
        tiny_ce.forward(enc)
    assert torch.allclose(seen[path][..., [1, 3]], means[path][[1, 3]].expand_as(seen[path][..., [1, 3]]))
    assert torch.equal(seen[path][..., 0], plain[path][..., 0])
    assert count_hooks(tiny_ce.model) == 0


def test_where_an_edit_acts_both_ways_and_refusals(tiny_judge):
    """An edit that keeps the token count is localised in both directions: the last block's
    residual stream at the output position carries the whole effect (IE 1: the score reads
    it), the query positions of a causal model none (they come before the document); an edit
    that changes the length is refused with why."""
    from core.errors import InputError
    from core.patching import edit_effects
    from core.sweep import mean_effects

    query, original = "honey storage", "Keep honey in a sealed jar."
    edited = next(e for word in ("sugar", "water", "bread", "fruit", "salt", "milk", "rice",
                                 "the", "a", "of")
                  if tiny_judge.count_tokens(e := original.replace("honey", word))
                  == tiny_judge.count_tokens(original))
    frame, info = edit_effects(tiny_judge, query, original, edited)
    assert set(frame.direction) == {"edited→original", "original→edited"}
    assert info["score_original"] != info["score_edited"]
    for direction, part in frame.groupby("direction"):
        effects = mean_effects(part).set_index(["target", "layer", "group"]).ie_mean
        last = tiny_judge.n_layers
        assert effects[("resid", last, "last")] == pytest.approx(1.0, abs=1e-4)
        assert effects.xs("query", level="group").abs().max() == pytest.approx(0.0, abs=1e-6)
    assert count_hooks(tiny_judge.model) == 0
    with pytest.raises(InputError, match="changes the document's length from"):
        edit_effects(tiny_judge, query, original, original + " Always.")
    with pytest.raises(InputError, match="edit it first"):
        edit_effects(tiny_judge, query, original, original)
