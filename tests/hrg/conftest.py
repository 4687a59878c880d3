"""Tiny local backbones for the HRG tests: a T5 (encoder-decoder) and a BERT (encoder) with WordLevel
tokenizers trained on the synthetic corpus text plus the label words, saved as Hugging Face folders and
loaded back through the real ``from_pretrained(path)``. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import pytest

from erc.data.registry import IEMOCAP6_EMOTIONS, POLARITY
from erc.hrg.data import SEPARATOR, UNKNOWN_WORD, label_words

EXTRA_TEXT = [" ".join(label_words(IEMOCAP6_EMOTIONS) + label_words(POLARITY) + [UNKNOWN_WORD, SEPARATOR]),
              "speaker a : b c d e f g h i"]


def _word_level(texts, specials, unk, template, pair_template):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token=unk))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=specials))
    ids = [(s, tok.token_to_id(s)) for s in specials if s in template + pair_template]
    tok.post_processor = processors.TemplateProcessing(single=template, pair=pair_template, special_tokens=ids)
    return tok


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, synthetic_corpus) -> Path:
    """T5ForConditionalGeneration, d_model 32, 2 + 2 layers; tokenizer ``<pad>=0 </s>=1 <unk>=2``."""
    import torch
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    out = tmp_path_factory.mktemp("tiny_t5")
    tok = _word_level(list(synthetic_corpus.texts) + EXTRA_TEXT, ["<pad>", "</s>", "<unk>"], "<unk>",
                      "$A </s>", "$A </s> $B </s>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=64)
    cfg = T5Config(vocab_size=tok.get_vocab_size(), d_model=32, d_kv=8, d_ff=64, num_layers=2,
                   num_decoder_layers=2, num_heads=4, feed_forward_proj="relu", dropout_rate=0.1,
                   pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    T5ForConditionalGeneration(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, synthetic_corpus) -> Path:
    """BertModel, hidden 32, 2 layers; tokenizer ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_bert")
    tok = _word_level(list(synthetic_corpus.texts) + EXTRA_TEXT, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                      "[UNK]", "[CLS] $A [SEP]", "[CLS] $A [SEP] $B [SEP]")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=80, pad_token_id=0)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the tiny models gain nothing from more, and on a shared CPU spare threads spin."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
