"""Rankers: one sealed interface in front of cross-encoders, LLM rankers and LLM judges.

Context:
    The studies RankScope reproduces look inside three kinds of relevance model: cross-encoders
    (MonoBERT-style, score from the [CLS] head), pointwise LLM rankers (RankLlama: a decoder with
    a LoRA adapter and a one-logit score head read at the last token of
    ``query: {q} document: {d}</s>``) and instruction LLMs used as yes/no relevance judges
    (metric: logit(yes) − logit(no) at the answer position). Analyses never touch
    ``transformers``: they call a :class:`Ranker`.

The package (the only code importing transformers, peft and bitsandbytes):

- :mod:`~core.models.specs`: :class:`ModelSpec`, presets, the embedded rankers;
- :mod:`~core.models.loading`: sources (PyPI wheels, folders, the hub offline-first), adapters,
  GGUF, quantization → :func:`load_ranker`;
- :mod:`~core.models.inputs`: templates, position groups, :class:`Encoded`;
- :mod:`~core.models.heads`: one score head per kind (adding a kind = one class);
- :mod:`~core.models.layouts`: one module-path layout per architecture family;
- :mod:`~core.models.attention`: recording / editing attention weights;
- :mod:`~core.models.ranker`: the :class:`Ranker` analyses use;
- :mod:`~core.models.embeddings`: Sentence-BERT embeddings (baseline, teacher, features).
"""

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from core.constants import KINDS, PROMPTS, QUANTIZATIONS  # noqa: E402,F401 - re-exported
from core.models.attention import AttentionState  # noqa: E402,F401
from core.models.embeddings import embedding_available, sentence_embeddings  # noqa: E402,F401
from core.models.heads import HEADS, NO_TOKENS, YES_TOKENS, Head  # noqa: E402,F401
from core.models.inputs import (DOCUMENT, GROUP_NAMES, INSTRUCTION,  # noqa: E402,F401
                                JUDGE_PAIRWISE, JUDGE_POINTWISE, LAST, PAD, QUERY,
                                RANKLLAMA_TEMPLATE, Encoded)
from core.models.layouts import LAYOUTS, Layout  # noqa: E402,F401
from core.models.loading import (base_fingerprint, dequantized_gguf,  # noqa: E402,F401
                                 load_ranker, merged_fp32, resolve_adapter, resolve_source)
from core.models.blocks import BlockCall  # noqa: E402,F401
from core.models.ranker import Ranker  # noqa: E402,F401
from core.models.specs import (ADAPTER_DIR, EMBEDDED, PRESETS,  # noqa: E402,F401
                               REMOTE_CODE_WARNING, REPO_ROOT, ModelSpec, cache_dir,
                               custom_spec, get_spec)
