"""Stage 1: fine-tune a pretrained text encoder to predict Valence, Arousal, Dominance.

Public API (imported on first use, so ``erc --help`` does not pay for torch/transformers)::

    from erc.vad import VADPredictor, VADRegressor, VADConfig

Importing any of them (or ``erc.vad.model``) registers the model with ``transformers``'
``AutoConfig`` / ``AutoModel`` / ``AutoModelForSequenceClassification``, after which
``AutoModel.from_pretrained(folder)`` loads a folder written by ``erc finetune``.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"VADPredictor": "erc.vad.api", "VADRegressor": "erc.vad.model", "VADConfig": "erc.vad.model"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'erc.vad' has no attribute {name!r}")
