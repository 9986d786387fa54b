"""Features that need the embedded MiniLM wheel (the unit tier runs without any model wheel)."""

import numpy as np

from core.features import FEATURES


def test_second_embedding_is_used_only_when_on_this_machine(demo):
    from core import models
    from core.features import FeatureConfig, compute_features
    from core.retrieval import candidate_pairs

    pairs = candidate_pairs(demo, limit_queries=2)
    absent, notes = compute_features(pairs, FeatureConfig(second_embedding_model="org/not-here"))
    assert "embedding_cosine_second" not in absent
    assert any("huggingface-cli download org/not-here" in n for n in notes)
    folder = str(models.resolve_source(models.PRESETS["minilm-cross-encoder"]))
    present, notes = compute_features(pairs, FeatureConfig(second_embedding_model=folder))
    assert not notes and list(present.columns) == list(FEATURES)
    np.testing.assert_allclose(present.embedding_cosine_second, present.embedding_cosine_minilm,
                               atol=1e-6)
    assert present.embedding_cosine_minilm.between(-1, 1).all()
