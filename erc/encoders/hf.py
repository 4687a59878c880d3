"""Hugging Face encoders: load by name, folder or ``builtin:tiny``; pool; encode texts in length-sorted batches."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from erc.core.config import ConfigError
from erc.encoders import POOLINGS
from erc.encoders.tiny import resolve_model_name

logger = logging.getLogger(__name__)



class EncoderLoadError(ConfigError):
    """The encoder named by ``--model`` could not be found or downloaded."""


def load_encoder(name_or_path: str):
    """Return ``(AutoModel, AutoTokenizer)`` for a Hub name, a local HF folder or ``builtin:tiny``.

    Raises :class:`EncoderLoadError` with a message pointing to ``--model PATH`` /
    ``--model builtin:tiny`` when the model is neither a local folder nor downloadable.
    """

    resolved = resolve_model_name(str(name_or_path))
    path = Path(resolved).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderLoadError(
                f"--model {name_or_path}: folder {path} has no config.json; expected a Hugging Face "
                "model folder (config.json, weights, tokenizer files)")
        nested = _nested_encoder_config(path)
        if nested is not None:
            return _load_nested_encoder(path, nested), AutoTokenizer.from_pretrained(path)
        return AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    if resolved.startswith((".", "/", "~")):
        raise EncoderLoadError(f"--model {name_or_path}: local folder {path} does not exist")
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved)
        model = AutoModel.from_pretrained(resolved)
    except Exception as exc:  # OSError / HTTP / offline errors from huggingface_hub
        offline = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
        raise EncoderLoadError(
            f"could not download model '{name_or_path}' from the Hugging Face Hub "
            f"({'offline mode is set' if offline else 'no network or unknown model name'}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Use --model PATH with a local Hugging Face model folder, or --model builtin:tiny "
            "for the built-in tiny offline encoder.") from None
    return model, tokenizer


def _nested_encoder_config(path: Path) -> dict | None:
    """The encoder config nested under ``encoder`` in ``path/config.json``, or None for a plain model.

    A model with a head on an encoder (a fine-tuned V/A/D folder, erc.vad.model) keeps its
    encoder's own config there and the encoder's weights under the ``encoder.`` prefix.
    """
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EncoderLoadError(f"{path / 'config.json'}: not valid JSON ({exc})") from None
    enc = cfg.get("encoder")
    return dict(enc) if isinstance(enc, dict) and "model_type" in enc else None


def _load_nested_encoder(path: Path, nested: dict):
    """The encoder of a composite folder, through ``from_pretrained`` with the ``encoder.`` prefix mapped away."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(nested.pop("model_type"), **nested)
    model, info = AutoModel.from_pretrained(path, config=config, key_mapping={r"^encoder\.": ""},
                                            output_loading_info=True)
    if info["missing_keys"]:
        raise EncoderLoadError(f"{path}: encoder weights {sorted(info['missing_keys'])[:3]} missing from the "
                               "weights file; expected them under the 'encoder.' prefix")
    return model


def pool_hidden(last_hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) -> (B, H): first token (``cls``) or attention-masked mean (``mean``)."""
    if pooling == "cls":
        return last_hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
        return (last_hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def encoder_inputs(batch: dict, device) -> dict:
    keys = ("input_ids", "attention_mask", "token_type_ids")
    return {k: batch[k].to(device) for k in keys if k in batch}


def batches_by_length(tokenizer, texts: Sequence[str], batch_size: int, max_length: int,
                      pairs: Sequence[str] | None = None):
    """Yield (positions, tokenised batch) over texts sorted by length (dynamic padding).

    ``pairs``: a second segment per text (the dialogue context, :mod:`erc.data.context`).
    """
    texts = [str(t) for t in texts]
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(pairs)} context segments")
    lengths = [len(ids) for ids in tokenizer(texts, pairs, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        enc = tokenizer([texts[j] for j in idx], [pairs[j] for j in idx] if pairs is not None else None,
                        truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        yield idx, enc


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], pooling: str = "cls", batch_size: int = 32,
                 max_length: int = 128, device=None, pairs: Sequence[str] | None = None) -> np.ndarray:
    """Pooled encoder embeddings ``(n, hidden)`` in input order (batches sorted by length).

    ``pairs``: an optional second segment per text (the dialogue context).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    hidden = model.config.hidden_size
    out = np.zeros((len(texts), hidden), dtype=np.float32)
    for idx, enc in batches_by_length(tokenizer, texts, batch_size, max_length, pairs):
        inputs = encoder_inputs(enc, device)
        last = model(**inputs).last_hidden_state
        out[idx] = pool_hidden(last, inputs["attention_mask"], pooling).float().cpu().numpy()
    model.train(was_training)
    return out
