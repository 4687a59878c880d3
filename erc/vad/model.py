"""The V/A/D regressor: a pretrained ``AutoModel`` encoder, pooling, dropout, a linear head to 3.

The head and the loss are owned here explicitly (MSE on standardised targets),
not delegated to ``AutoModelForSequenceClassification``, whose float labels with
``num_labels=3`` silently train with BCE unless ``problem_type`` is set.

Targets are standardised with a per-dimension scaler (mean/std fitted on the
TRAIN split) that is stored with the model as buffers, so :meth:`VADRegressor.predict`
and the ``vad`` output of ``forward`` are always on the data's original scale.

A saved model is ONE folder::

    config.json, model.safetensors      the encoder (loadable by AutoModel.from_pretrained(dir))
    tokenizer.json, tokenizer_config.json, ...
    vad_head.safetensors                 head weights + scaler buffers
    vad_config.json                      pooling, dropout, max_length, scaler, target names

and loads back with ``VADRegressor.from_pretrained(dir)``.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from erc.core.io import atomic_replace_dir, atomic_write_text
from erc.data.registry import VAD_NAMES
from erc.encoders.hf import (POOLINGS, EncoderLoadError, batches_by_length, encode_texts, encoder_inputs, load_encoder,
                             pool_hidden)

logger = logging.getLogger(__name__)

HEAD_FILE = "vad_head.safetensors"
VAD_CONFIG_FILE = "vad_config.json"


class VADRegressor(nn.Module):
    """Encoder -> pooling -> dropout -> Linear(hidden, 3); MSE on standardised targets.

    ``forward(input_ids, attention_mask, labels=None)`` returns a dict with
    ``pred`` (standardised, what the loss sees), ``vad`` (original scale) and
    ``loss`` when ``labels`` (original scale, shape (B, 3)) are given.
    """

    def __init__(self, encoder, tokenizer=None, pooling: str = "cls", dropout: float = 0.1,
                 max_length: int = 128, target_names: Sequence[str] = VAD_NAMES):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.tokenizer = tokenizer
        # BERT-style pooler layers are not used by our pooling: freeze them so DDP does not wait
        # for their gradients (they are still saved, the folder stays a complete encoder).
        pooler = getattr(encoder, "pooler", None)
        if isinstance(pooler, nn.Module):
            for p in pooler.parameters():
                p.requires_grad_(False)
        self.pooling = pooling
        self.dropout_p = float(dropout)
        self.max_length = int(max_length)
        self.target_names = tuple(target_names)
        k = len(self.target_names)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, k)
        self.register_buffer("scaler_mean", torch.zeros(k))
        self.register_buffer("scaler_std", torch.ones(k))

    @classmethod
    def from_encoder_name(cls, name_or_path: str, **kwargs) -> "VADRegressor":
        encoder, tokenizer = load_encoder(name_or_path)
        return cls(encoder, tokenizer, **kwargs)

    # ---- scaler -------------------------------------------------------------------------
    def fit_scaler(self, targets: np.ndarray) -> None:
        """Per-dimension mean/std of the TRAIN targets (original scale), stored with the model."""
        t = np.asarray(targets, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(self.target_names) or len(t) == 0:
            raise ValueError(f"targets must be (n>0, {len(self.target_names)}), got {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("targets contain NaN/inf: unlabeled rows must not reach the scaler")
        std = t.std(axis=0)
        std[std < 1e-6] = 1.0
        self.scaler_mean.copy_(torch.as_tensor(t.mean(axis=0), dtype=torch.float32))
        self.scaler_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def scale(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.scaler_mean) / self.scaler_std

    def unscale(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scaler_std + self.scaler_mean

    # ---- forward ------------------------------------------------------------------------
    def pooled(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        last = self.encoder(**kwargs).last_hidden_state
        return pool_hidden(last, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None) -> dict:
        h = self.pooled(input_ids, attention_mask, token_type_ids)
        pred = self.head(self.dropout(h)).float()
        out = {"pred": pred, "vad": self.unscale(pred)}
        if labels is not None:
            out["loss"] = nn.functional.mse_loss(pred, self.scale(labels.float()))
        return out

    # ---- inference helpers --------------------------------------------------------------
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this VADRegressor has no tokenizer; build it with one to use predict/embed")
        return self.tokenizer

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """V/A/D ``(n, 3)`` on the original scale, in input order (``progress``: a tqdm bar)."""
        tok = self._require_tokenizer()
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = np.zeros((len(texts), len(self.target_names)), dtype=np.float32)
        batches = batches_by_length(tok, texts, batch_size, self.max_length)
        for idx, enc in tqdm(batches, total=-(-len(texts) // batch_size), desc="predict", disable=not progress):
            inputs = encoder_inputs(enc, device)
            out[idx] = self(**inputs)["vad"].float().cpu().numpy()
        self.train(was_training)
        return out

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Pooled encoder embeddings ``(n, hidden)`` (the fine-tuned text features)."""
        return encode_texts(self.encoder, self._require_tokenizer(), texts, pooling=self.pooling,
                            batch_size=batch_size, max_length=self.max_length)

    # ---- persistence --------------------------------------------------------------------
    def vad_config(self) -> dict:
        return {
            "format": "erc-toolkit VADRegressor v1",
            "pooling": self.pooling,
            "dropout": self.dropout_p,
            "max_length": self.max_length,
            "target_names": list(self.target_names),
            "hidden_size": int(self.encoder.config.hidden_size),
            "scaler_mean": [float(v) for v in self.scaler_mean.cpu()],
            "scaler_std": [float(v) for v in self.scaler_std.cpu()],
        }

    def save_pretrained(self, save_dir: str | Path) -> Path:
        """Write the whole model as one folder, atomically (a reader never sees half of it)."""
        save_dir = Path(save_dir)
        save_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=save_dir.parent, prefix=f".{save_dir.name}.", suffix=".tmp"))
        try:
            self.encoder.save_pretrained(tmp)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
            head = {"head.weight": self.head.weight, "head.bias": self.head.bias,
                    "scaler_mean": self.scaler_mean, "scaler_std": self.scaler_std}
            save_file({k: v.detach().cpu().contiguous() for k, v in head.items()}, str(tmp / HEAD_FILE))
            atomic_write_text(tmp / VAD_CONFIG_FILE, json.dumps(self.vad_config(), indent=2) + "\n")
            atomic_replace_dir(tmp, save_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return save_dir

    @classmethod
    def from_pretrained(cls, load_dir: str | Path, device=None) -> "VADRegressor":
        """Load a folder written by :meth:`save_pretrained` (encoder, tokenizer, head, scaler)."""
        load_dir = Path(load_dir)
        cfg_path = load_dir / VAD_CONFIG_FILE
        if not cfg_path.is_file():
            raise EncoderLoadError(
                f"{load_dir}: not a VADRegressor folder (missing {VAD_CONFIG_FILE}); "
                "expected the best_model/ folder written by `cli.py finetune`")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        encoder, tokenizer = load_encoder(str(load_dir))
        model = cls(encoder, tokenizer, pooling=cfg["pooling"], dropout=cfg["dropout"],
                    max_length=cfg["max_length"], target_names=cfg["target_names"])
        state = load_file(str(load_dir / HEAD_FILE))
        model.head.weight.data.copy_(state["head.weight"])
        model.head.bias.data.copy_(state["head.bias"])
        model.scaler_mean.copy_(state["scaler_mean"])
        model.scaler_std.copy_(state["scaler_std"])
        model.eval()
        if device is not None:
            model.to(device)
        return model


def is_vad_model_dir(path: str | Path) -> bool:
    return (Path(path) / VAD_CONFIG_FILE).is_file()
