"""Backbones of the HRG stage: load by name or folder, rebuild from a saved config.

Three kinds (``Backbone.kind``):

* ``seq2seq``: a Hugging Face encoder-decoder (``config.is_encoder_decoder``, e.g.
  ``t5-base``), loaded with ``AutoModelForSeq2SeqLM``;
* ``assembled``: an ENCODER folder (BERT-like, e.g. the offline MiniLM) made into an
  ``EncoderDecoderModel``: the encoder, and the same weights as a causal decoder with
  new cross-attention layers and LM head (those are ``new_params``: they are
  trained even while the pretrained backbone is frozen);
* ``encoder``: an encoder alone, for ``--head classify`` (``AutoModel``; for a
  seq2seq checkpoint its encoder stack).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from erc.core.config import ConfigError
from erc.encoders.hf import EncoderLoadError
from erc.encoders.tiny import resolve_model_name

logger = logging.getLogger(__name__)

KINDS = ("seq2seq", "assembled", "encoder")


@dataclass
class Backbone:
    model: nn.Module
    tokenizer: object
    kind: str
    source_kind: str                     # seq2seq | encoder: what the checkpoint itself was
    hidden: int
    config: object = None                # the config that rebuilds ``model`` (for an encoder taken out of a
                                         # seq2seq checkpoint: the checkpoint's config)
    new_params: set[str] = field(default_factory=set)   # parameter names (in ``model``) newly initialised
    decoder_start_id: int | None = None
    eos_id: int | None = None

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def generates(self) -> bool:
        return self.kind in ("seq2seq", "assembled")


def _resolve(name_or_path: str) -> str:
    resolved = resolve_model_name(str(name_or_path))
    path = Path(resolved).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderLoadError(f"--backbone {name_or_path}: folder {path} has no config.json; expected a "
                                   "Hugging Face model folder (config.json, weights, tokenizer files)")
        return str(path)
    if resolved.startswith((".", "/", "~")):
        raise EncoderLoadError(f"--backbone {name_or_path}: local folder {path} does not exist")
    return resolved


def _hub_error(name: str, exc: Exception) -> EncoderLoadError:
    return EncoderLoadError(
        f"--backbone {name}: could not load it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        "Without network access give a local Hugging Face folder (an encoder-decoder such as t5-base, or an "
        "encoder such as the offline MiniLM).")


def _special_ids(tokenizer, config) -> tuple[int, int]:
    """(decoder start, end-of-sequence) token ids."""
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if start is None or eos is None or tokenizer.pad_token_id is None:
        raise ConfigError(f"backbone tokenizer {type(tokenizer).__name__} lacks a start, end or pad token "
                          f"(start {start}, end {eos}, pad {tokenizer.pad_token_id})")
    return int(start), int(eos)


def _assemble(encoder: nn.Module, decoder: nn.Module, tokenizer):
    from transformers import EncoderDecoderModel

    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    model.config.decoder_start_token_id = start
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def load_backbone(name_or_path: str, head: str) -> Backbone:
    """Load the backbone for ``head`` (``generate`` or ``classify``) from a Hub name or a folder."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    src = _resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(src)
        tokenizer = AutoTokenizer.from_pretrained(src)
    except Exception as exc:   # OSError / HTTP / offline errors from huggingface_hub
        raise _hub_error(name_or_path, exc) from None
    is_s2s = bool(getattr(config, "is_encoder_decoder", False))
    new: set[str] = set()
    if is_s2s:
        model = AutoModelForSeq2SeqLM.from_pretrained(src)
        kind = "seq2seq"
        if head == "classify":
            model, kind = model.get_encoder(), "encoder"
        hidden = int(getattr(config, "d_model", None) or config.hidden_size)
    elif head == "classify":
        model, kind, hidden = AutoModel.from_pretrained(src), "encoder", int(config.hidden_size)
    else:
        encoder = AutoModel.from_pretrained(src)
        decoder, info = AutoModelForCausalLM.from_pretrained(src, is_decoder=True, add_cross_attention=True,
                                                             output_loading_info=True)
        model, kind, hidden = _assemble(encoder, decoder, tokenizer), "assembled", int(config.hidden_size)
        new = {f"decoder.{k}" for k in info["missing_keys"]}
        names = {n for n, _ in model.named_parameters()}
        new &= names
        logger.info("assembled an encoder-decoder from %s: %d new decoder tensors (cross-attention, LM head)",
                    src, len(new))
    start, eos = _special_ids(tokenizer, model.config if kind != "encoder" else config)
    return Backbone(model=model, tokenizer=tokenizer, kind=kind, source_kind="seq2seq" if is_s2s else "encoder",
                    hidden=hidden, config=config if kind == "encoder" else model.config, new_params=new,
                    decoder_start_id=start, eos_id=eos)


def save_backbone_files(backbone: Backbone, directory: str | Path) -> dict:
    """Write the backbone's config and tokenizer (no weights) into ``directory``; returns its description."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    backbone.tokenizer.save_pretrained(directory)
    (backbone.config or backbone.model.config).save_pretrained(directory)
    return {"kind": backbone.kind, "source_kind": backbone.source_kind, "hidden": backbone.hidden,
            "new_params": sorted(backbone.new_params), "decoder_start_id": backbone.decoder_start_id,
            "eos_id": backbone.eos_id}


def backbone_from_files(directory: str | Path, desc: dict) -> Backbone:
    """Rebuild (random weights) a backbone saved by :func:`save_backbone_files`; load weights afterwards."""
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderModel

    directory = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    config = AutoConfig.from_pretrained(directory)
    kind = desc["kind"]
    if kind == "seq2seq":
        model = AutoModelForSeq2SeqLM.from_config(config)
    elif kind == "assembled":
        model = EncoderDecoderModel(config=config)
    elif kind == "encoder" and desc.get("source_kind") == "seq2seq":
        model = AutoModelForSeq2SeqLM.from_config(config).get_encoder()
    elif kind == "encoder":
        model = AutoModel.from_config(config)
    else:
        raise ConfigError(f"{directory}: unknown backbone kind {kind!r}; expected one of {KINDS}")
    return Backbone(model=model, tokenizer=tokenizer, kind=kind, source_kind=desc.get("source_kind", kind),
                    hidden=int(desc["hidden"]), config=config, new_params=set(desc.get("new_params", [])),
                    decoder_start_id=desc.get("decoder_start_id"), eos_id=desc.get("eos_id"))


def encode(backbone_model: nn.Module, kind: str, input_ids: torch.Tensor, attention_mask: torch.Tensor
           ) -> torch.Tensor:
    """Token states ``(B, L, d)`` of the backbone's encoder."""
    enc = backbone_model if kind == "encoder" else backbone_model.get_encoder()
    return enc(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def decoder_logits(backbone_model: nn.Module, memory: torch.Tensor, memory_mask: torch.Tensor,
                   decoder_input_ids: torch.Tensor, decoder_mask: torch.Tensor) -> torch.Tensor:
    """Next-token logits ``(B, T, V)`` of the decoder cross-attending to ``memory`` ``(B, M, d)``."""
    out = backbone_model(encoder_outputs=BaseModelOutput(last_hidden_state=memory), attention_mask=memory_mask,
                         decoder_input_ids=decoder_input_ids, decoder_attention_mask=decoder_mask, use_cache=False)
    return out.logits
