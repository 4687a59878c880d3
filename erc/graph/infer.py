"""The one loop that runs a graph model over dialogues: training-time evaluation, ``predict-graph`` and
model-based difficulty all go through :func:`run_inference`.

It runs under ``torch.inference_mode()``, keeps per-utterance outputs by dialogue,
gathers them from every process when given an ``accelerator`` (a prepared loader
may repeat dialogues to even out the last round: each dialogue is kept exactly
once, see :mod:`erc.data.dialogues`) and returns an :class:`InferenceResult`
ordered by dialogue index, then position.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from accelerate.utils import gather_object

from erc.core.metrics import classification_metrics
from erc.data.dialogues import merge_dialogue_records, split_by_dialogue
from erc.graph.losses import masked_cross_entropy


@dataclass
class InferenceResult:
    """Per-utterance outputs of a set of dialogues, ordered by dialogue index then position."""

    emotion_probs: np.ndarray        # (n, C)
    sentiment_probs: np.ndarray      # (n, S); (n, 0) when the model has no sentiment head
    emotion_logits: np.ndarray       # (n, C)
    labels: np.ndarray               # (n,) -1 = unlabelled
    sentiments: np.ndarray           # (n,)
    dialogue_index: np.ndarray       # (n,) index of the utterance's dialogue in the loader's dataset
    position: np.ndarray             # (n,)
    dialogue_ids: list[str] = field(default_factory=list)   # one per dialogue, by dialogue_index
    loss: float = float("nan")       # mean cross-entropy over the labelled utterances

    @property
    def num_dialogues(self) -> int:
        return len(self.dialogue_ids)

    def metrics(self, label_names: Sequence[str]) -> dict:
        keep = self.labels >= 0
        return classification_metrics(self.labels[keep], self.emotion_probs[keep].argmax(-1), label_names)

    def per_utterance_loss(self) -> np.ndarray:
        """Cross-entropy of each utterance (unlabelled ones: their loss against class 0, mask them)."""
        logits = torch.from_numpy(self.emotion_logits).float()
        labels = torch.from_numpy(self.labels).clamp_min(0)
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none").numpy()


# Evaluation loss and loaders are per utterance; keep the old name for code that imported it.
EvalResult = InferenceResult


def run_inference(model: Callable[[Any], Any], loader: Iterable, accelerator=None,
                  expected_dialogues: int | None = None, device: str | torch.device | None = None
                  ) -> InferenceResult:
    """Run ``model`` over every batch of ``loader`` (prepared or plain) under ``torch.inference_mode()``.

    ``model(batch)`` returns a :class:`erc.graph.model.GraphOutput` or just the emotion
    logits (N, C). With ``accelerator`` and several processes the per-dialogue records are
    gathered; ``expected_dialogues`` (the split's size) makes a missing dialogue an error.
    ``device``: move each batch there first (plain loaders; prepared ones already place batches).
    """
    if isinstance(model, torch.nn.Module):
        model.eval()
    records: list[dict] = []
    with torch.inference_mode():
        for batch in loader:
            if device is not None:
                batch = batch.to(device)
            out = model(batch)
            logits = getattr(out, "emotion_logits", out).float()
            sen_logits = getattr(out, "sentiment_logits", None)
            sen = (torch.softmax(sen_logits.float(), -1) if sen_logits is not None
                   else logits.new_zeros((logits.shape[0], 0)))
            records += split_by_dialogue(batch, emo=torch.softmax(logits, -1), sen=sen, logits=logits,
                                         label=batch.labels, sentiment=batch.sentiments, position=batch.position)
    if accelerator is not None and accelerator.num_processes > 1:
        records = gather_object(records)
    records = merge_dialogue_records(records, expected_dialogues)
    if not records:
        raise ValueError("inference: the loader yielded no dialogues")

    def cat(k: str) -> np.ndarray:
        return np.concatenate([r[k] for r in records])

    res = InferenceResult(
        emotion_probs=cat("emo"), sentiment_probs=cat("sen"), emotion_logits=cat("logits"),
        labels=cat("label").astype(np.int64), sentiments=cat("sentiment").astype(np.int64),
        dialogue_index=np.concatenate([np.full(len(r["label"]), r["dialogue_index"]) for r in records]),
        position=cat("position").astype(np.int64), dialogue_ids=[r["dialogue_id"] for r in records])
    if (res.labels >= 0).any():
        res.loss = float(masked_cross_entropy(torch.from_numpy(res.emotion_logits),
                                              torch.from_numpy(res.labels)))
    return res
