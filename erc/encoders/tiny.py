"""A tiny RoBERTa encoder built offline, for the Quickstart and the tests.

Its tokenizer is trained locally (``tokenizers`` WordLevel) on the corpus
text; the model is a randomly initialised ``RobertaModel`` (hidden 32, 2
layers). Both are saved as a normal Hugging Face model folder, loaded back
through the real ``AutoModel.from_pretrained(path)``. Nothing is downloaded.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

from erc.core.io import atomic_replace_dir
from erc.data.synthetic import generate_corpus

logger = logging.getLogger(__name__)

TINY_NAME = "builtin:tiny"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def build_tiny_encoder(out_dir: str | Path, texts: Iterable[str], hidden_size: int = 32,
                       num_layers: int = 2, num_heads: int = 2, max_length: int = 128,
                       seed: int = 0) -> Path:
    """Train a tokenizer on ``texts`` and save it with a random tiny RoBERTa to ``out_dir``."""
    out_dir = Path(out_dir)
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
        model_max_length=max_length)
    config = RobertaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=hidden_size * 2,
        max_position_embeddings=max_length + 2, pad_token_id=tok.token_to_id("<pad>"),
        bos_token_id=bos, eos_token_id=eos, type_vocab_size=1)
    with torch.random.fork_rng(devices=[]):   # the caller's random stream is the same built or cached
        torch.manual_seed(seed)
        model = RobertaModel(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    logger.info("built tiny offline encoder (vocab %d, hidden %d) at %s",
                tok.get_vocab_size(), hidden_size, out_dir)
    return out_dir


def default_tiny_encoder(cache_dir: str | Path | None = None) -> Path:
    """The built-in tiny encoder, trained on the synthetic corpus text; built once, then reused."""
    cache = Path(cache_dir) if cache_dir else Path.home() / ".cache" / "erc-toolkit"
    path = cache / "tiny-roberta-v1"
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    corpus = generate_corpus(seed=0)
    tmp = cache / f".tiny-roberta-v1.{os.getpid()}.tmp"
    build_tiny_encoder(tmp, corpus.texts)
    if not (path / "config.json").is_file():
        atomic_replace_dir(tmp, path)
    return path


def resolve_model_name(name: str) -> str:
    """Map ``builtin:tiny`` to the local folder; any other name or path is passed through."""
    if name == TINY_NAME:
        return str(default_tiny_encoder())
    return name
