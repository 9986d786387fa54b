"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parent.parent  # core is installed editable (pyproject.toml)
torch.set_num_threads(2)

from core import models  # noqa: E402
from core.data import CRANFIELD_DIR, demo_collection  # noqa: E402


@pytest.fixture(scope="session")
def demo():
    return demo_collection()


@pytest.fixture
def cranfield_dir():
    if not CRANFIELD_DIR.is_dir():
        pytest.skip("../shared/data/cranfield is absent")
    return CRANFIELD_DIR


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store.duckdb"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random 2-layer Llama (d=64) with a byte-level BPE tokenizer and a ChatML template
    trained on the demo collection (no model wheel needed), as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tokenizers_for_tests import byte_level_tokenizer

    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=True,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer BERT (d=32) with a WordPiece tokenizer trained on the demo collection
    (no model wheel needed), as safetensors."""
    from transformers import BertConfig, BertForSequenceClassification

    from tokenizers_for_tests import wordpiece_tokenizer

    tokenizer = wordpiece_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_labels=1,
                        pad_token_id=tokenizer.pad_token_id)
    model = BertForSequenceClassification(config)
    path = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ce_dir(tiny_bert_dir, tmp_path_factory):
    """The tiny BERT with its random score head (std 0.02, which barely separates documents)
    scaled ×1000, saved in a folder of its own so that its spec key differs from the unscaled
    model's."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.classifier.weight.mul_(1000.0)
    path = tmp_path_factory.mktemp("tiny-ce")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ce(tiny_ce_dir):
    """The one tiny cross-encoder of the unit tiers (random 2-layer BERT, scaled head).
    Tests must not change its weights."""
    return models.load_ranker(models.ModelSpec("tiny-ce", "cross-encoder", str(tiny_ce_dir),
                                               device="cpu"))


@pytest.fixture(scope="session")
def embedded_rankers():
    """The three embedded rankers, loaded once (integration tier)."""
    loaded = {}

    def get(name: str):
        if name not in loaded:
            loaded[name] = models.load_ranker(name)
        return loaded[name]

    return get
