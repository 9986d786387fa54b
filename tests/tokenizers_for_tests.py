"""Tokenizers for the tiny random models of the unit tier, trained in a second on the demo
collection's text and the judge prompts: no embedded model wheel is needed to build them."""

from __future__ import annotations

from functools import lru_cache

# ChatML with a default system turn, as SmolLM2-Instruct's template renders one user turn and
# the answer prompt
CHATML = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
          "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
          "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    from core.data import demo_collection
    from core.models import JUDGE_PAIRWISE, JUDGE_POINTWISE

    demo = demo_collection()
    texts = list(demo.docs.text) + list(demo.queries.text)
    texts += [JUDGE_POINTWISE, JUDGE_PAIRWISE, "query: document:"] * 50
    texts += ["yes no Yes No", " yes no Yes No answer"] * 200  # the judge's single-token answers
    return tuple(texts)


def byte_level_tokenizer(vocab_size: int = 2000):
    """A byte-level BPE tokenizer with ChatML specials and template (Llama-style models)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", unk_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def wordpiece_tokenizer(vocab_size: int = 2000):
    """A BERT-style WordPiece tokenizer ([CLS] a [SEP] b [SEP], token type ids).

    The vocabulary is built by hand, not by ``WordPieceTrainer``: the trainer breaks ties in
    word counts in hash order, so its vocabulary (and every tiny model's score) changed from
    one process to the next. Here: the specials, every character seen (alone and as a
    ``##`` continuation), then the most frequent words, ties broken alphabetically."""
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(word for text in _corpus()
                    for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in words for c in word})
    vocab = specials + chars + ["##" + c for c in chars]
    taken = set(vocab)
    for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in taken:
            vocab.append(word)
            taken.add(word)
    tokenizer = Tokenizer(models.WordPiece({token: i for i, token in enumerate(vocab)},
                                           unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
