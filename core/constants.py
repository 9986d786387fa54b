"""Names and numbers every layer shares, defined once (no heavy imports: the CLI builds its
choices from here without loading torch).

Vocabulary (kept apart on purpose):
    position group  which tokens of an input (document, query, instruction, last, pad) —
                    ``POSITION_GROUPS``; stored as int8 codes beside each input.
    component       a per-layer activation: residual stream after the block, attention
                    output, MLP output — ``COMPONENTS``.
    feature family  a set of IR features drawn together (``core.features.FEATURE_GROUPS``).
    feature expression  an arithmetic combination of z-scored features (``--groups``).
"""

KINDS = ("cross-encoder", "llm-ranker", "llm-judge")
QUANTIZATIONS = ("fp32", "bf16", "4bit-nf4", "8bit")
PROMPTS = ("pointwise", "pairwise")

POOLINGS = ("mean", "max", "last")  # over a pair's non-pad tokens; last = the output position
COMPONENTS = ("resid", "attn", "mlp")  # what extraction captures per layer
# the patching sweep's per-layer targets, in the order its plan (and its stored keys) use
PATCH_COMPONENTS = ("attn", "mlp", "resid")
POSITION_GROUPS = ("document", "query", "instruction", "last")  # patched position groups

ENCODED_R2 = 0.85  # the probing study's thresholds: a feature is encoded above,
ABSENT_R2 = 0.10  # absent below

BM25_K1 = 1.2  # Okapi defaults (Robertson & Zaragoza 2009), as in the probing study
BM25_B = 0.75
