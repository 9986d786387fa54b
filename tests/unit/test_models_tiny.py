"""The Ranker interface on tiny random Llama / BERT configs, and the loader's error messages."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from core import models
from core.errors import ModelLoadError
from core.models import DOCUMENT, INSTRUCTION, LAST, PAD, QUERY, ModelSpec, load_ranker


@pytest.fixture(scope="module")
def tiny_ranker(tiny_llama_dir):
    return load_ranker(ModelSpec("tiny", "llm-ranker", str(tiny_llama_dir), device="cpu"))


@pytest.fixture(scope="module")
def tiny_judge(tiny_llama_dir):
    return load_ranker(ModelSpec("tiny-judge", "llm-judge", str(tiny_llama_dir), device="cpu"))


def _decode_group(ranker, enc, row, group):
    ids = enc.input_ids[row][enc.groups[row] == group]
    return ranker.tokenizer.decode(ids).strip()


def test_rankllama_template_and_groups(tiny_ranker):
    enc = tiny_ranker.encode(["red fox diet", "q"], ["The red fox eats mice.", "a much longer "
                                                     "document than the first one is here"])
    assert enc.texts[0] == "query: red fox diet document: The red fox eats mice.<|im_end|>"
    assert _decode_group(tiny_ranker, enc, 0, QUERY) == "red fox diet"
    assert _decode_group(tiny_ranker, enc, 0, DOCUMENT) == "The red fox eats mice."
    # the output position is the EOS ending the template, right before the padding
    last = int(enc.last[0])
    assert enc.groups[0, last] == LAST and enc.input_ids[0, last] == tiny_ranker.tokenizer.eos_token_id
    assert (enc.groups[0, last + 1:] == PAD).all()
    assert tiny_ranker.tokenizer.pad_token != tiny_ranker.tokenizer.eos_token


def test_judge_prompt_uses_chat_template_and_marks_groups(tiny_judge):
    enc = tiny_judge.encode(["honey storage"], ["Keep honey in a jar."])
    text = enc.texts[0]
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert "Query: honey storage\nDocument: Keep honey in a jar.\n" in text
    assert _decode_group(tiny_judge, enc, 0, QUERY) == "honey storage"
    assert _decode_group(tiny_judge, enc, 0, DOCUMENT) == "Keep honey in a jar."
    assert (enc.groups[0] == INSTRUCTION).sum() > 20
    pair = tiny_judge.encode(["q"], ["doc a"], "pairwise", ["doc b"])
    assert "Document A: doc a\nDocument B: doc b" in pair.texts[0]
    assert _decode_group(tiny_judge, pair, 0, DOCUMENT).replace("\n", " ") in ("doc adoc b", "doc a doc b")


def test_doc_tokens_truncates_documents_to_equal_length(tiny_judge):
    enc = tiny_judge.encode(["q", "q"], ["one two three four five six seven", "alpha beta gamma "
                                         "delta epsilon zeta eta theta"], doc_tokens=4)
    assert ((enc.groups == DOCUMENT).sum(1) == 4).all()


def test_cross_encoder_groups_and_cls_output(tiny_ce):
    enc = tiny_ce.encode(["wind power"], ["turbines turn in the wind"])
    assert _decode_group(tiny_ce, enc, 0, QUERY) == "wind power"
    assert _decode_group(tiny_ce, enc, 0, DOCUMENT) == "turbines turn in the wind"
    assert int(enc.last[0]) == 0 and enc.groups[0, 0] == LAST


def test_scores_are_batch_invariant_and_deterministic(tiny_ranker):
    queries = ["a b", "c d e", "f"]
    docs = ["x " * 3, "y " * 30, "z " * 10]
    together = tiny_ranker.score(queries, docs, batch_size=3)
    alone = [tiny_ranker.score([q], [d])[0] for q, d in zip(queries, docs)]
    assert together == pytest.approx(alone, abs=1e-5)


def test_judge_score_is_yes_minus_no(tiny_judge):
    enc = tiny_judge.encode(["q"], ["d"])
    with torch.no_grad():
        logits = tiny_judge.model(**enc.model_inputs()).logits[0, int(enc.last[0])]
    yes, no = tiny_judge.answer_ids
    expected = torch.logsumexp(logits[yes], 0) - torch.logsumexp(logits[no], 0)
    assert tiny_judge.score(["q"], ["d"])[0] == pytest.approx(float(expected), abs=1e-5)


def test_card_and_hookable_modules(tiny_ranker, tiny_ce):
    card = tiny_ranker.card()
    assert (card["layers"], card["hidden size"], card["heads"]) == (2, 64, 4)
    assert card["quantization"] == "fp32" and card["parameters"] > 0 and card["memory (MB)"] > 0
    hookable = tiny_ranker.hookable_modules()
    assert "model.layers.1.mlp" in hookable and "model.layers.0.self_attn.q_proj" in hookable
    assert tiny_ce.component_paths(1) == {
        "resid": "bert.encoder.layer.1", "attn": "bert.encoder.layer.1.attention.output.dense",
        "mlp": "bert.encoder.layer.1.output.dense"}


def test_4bit_nf4_on_cpu_is_close_to_fp32(tiny_llama_dir, tiny_ranker):
    spec = replace(tiny_ranker.spec, quantization="4bit-nf4")
    quantized = load_ranker(spec)
    assert quantized.card()["memory (MB)"] < tiny_ranker.card()["memory (MB)"]
    assert type(quantized.model.get_submodule("model.layers.0.mlp.up_proj")).__name__ == "Linear4bit"
    assert type(quantized.model.score).__name__ == "Linear"  # head kept unquantized
    queries = ["red fox", "honey", "wind", "tea", "lisbon", "gout", "judo", "kimchi"]
    docs = ["foxes eat mice", "bees make honey", "blades turn", "leaves dried in the sun",
            "a city by the sea", "pain in the big toe", "a martial art", "fermented cabbage"]
    exact, approx = tiny_ranker.score(queries, docs), quantized.score(queries, docs)
    # a random d=64 model is a hard case for NF4 (one 64-weight block per row): the ordering
    # survives; the real MiniLM is checked to 0.05 in the integration tier
    assert np.corrcoef(exact, approx)[0, 1] > 0.9


def test_8bit_without_cuda_is_refused_in_one_sentence(tiny_ranker):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ModelLoadError, match="8-bit quantization needs a CUDA GPU"):
        load_ranker(replace(tiny_ranker.spec, quantization="8bit"))


def test_unknown_hub_id_offline_fails_fast():
    spec = ModelSpec("x", "cross-encoder", "no-such-org/no-such-model-rankscope")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and offline"):
        load_ranker(spec)


def test_unknown_preset_and_bad_kind():
    with pytest.raises(ModelLoadError, match="unknown ranker 'nope'"):
        load_ranker("nope")
    with pytest.raises(ModelLoadError, match="unknown ranker kind"):
        load_ranker(ModelSpec("x", "bi-encoder", "."))


def test_missing_adapter_is_reported(tiny_llama_dir, tmp_path):
    spec = ModelSpec("x", "llm-ranker", str(tiny_llama_dir), adapter=str(tmp_path / "absent"))
    with pytest.raises(ModelLoadError, match="has no adapter_config.json"):
        load_ranker(spec)


def test_adapter_for_another_base_is_reported(tiny_llama_dir, tiny_bert_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    bert = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1)
    adapter = get_peft_model(bert, LoraConfig(r=2, target_modules=["query", "value"],
                                              task_type="SEQ_CLS"))
    adapter.save_pretrained(tmp_path / "bert-adapter")
    spec = ModelSpec("x", "llm-ranker", str(tiny_llama_dir), adapter=str(tmp_path / "bert-adapter"))
    with pytest.raises(ModelLoadError, match="trained for a different base model"):
        load_ranker(spec)
    # with the fingerprint RankScope writes beside its adapters, the check names the mismatch
    (tmp_path / "bert-adapter" / "rankscope.json").write_text(json.dumps(
        {"base": models.base_fingerprint(bert.config)}))
    with pytest.raises(ModelLoadError, match="model_type 'bert' vs 'llama'"):
        load_ranker(spec)


def test_pickled_weights_are_refused(tmp_path, tiny_bert_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_bert_dir / "config.json").read_text())
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelLoadError, match="never loads pickled"):
        load_ranker(ModelSpec("x", "cross-encoder", str(folder)))


def test_truncated_gguf_is_reported(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    spec = ModelSpec("x", "llm-judge", str(tmp_path), gguf_file="broken.gguf")
    with pytest.raises(ModelLoadError, match="could not be read"):
        load_ranker(spec)


@pytest.mark.parametrize("fixture", ["tiny_ranker", "tiny_judge", "tiny_ce"])
def test_score_lens_ends_at_the_score(request, fixture):
    ranker = request.getfixturevalue(fixture)
    queries = ["red fox diet", "honey storage"]
    documents = ["The red fox eats mice and berries.", "Keep honey in a sealed jar."]
    lens = ranker.layer_scores(queries, documents)
    assert lens.shape == (2, 2)
    assert lens[:, -1] == pytest.approx(ranker.score(queries, documents), abs=1e-4)
    # one input alone reads the same lens as in a padded batch
    assert ranker.layer_scores(queries[1:], documents[1:])[0] == pytest.approx(lens[1], abs=1e-4)
    from core.hooks import count_hooks

    assert count_hooks(ranker.model) == 0
