"""A batch of whole dialogues, flattened PyG-style: nodes of all dialogues stacked.

This is the contract between ``fusion/`` (which builds it) and ``graph/``
(which consumes it). Utterance ``n`` of the batch belongs to dialogue
``batch[n]``; dialogue ``b`` owns rows ``ptr[b]:ptr[b+1]``, in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np
import torch


@dataclass
class Dialogue:
    """One dialogue: per-utterance arrays of equal length ``n``."""

    dialogue_id: str
    features: dict[str, np.ndarray]          # modality -> (n, d) float32
    labels: np.ndarray                       # (n,) int64, -1 = unlabeled
    speakers: np.ndarray                     # (n,) int64 speaker index within the dialogue
    sentiments: np.ndarray | None = None     # (n,) int64, -1 = unknown
    utterance_ids: list[str] | None = None
    texts: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.labels))


@dataclass
class DialogueBatch:
    features: dict[str, torch.Tensor]        # modality -> (N, d)
    labels: torch.Tensor                     # (N,) long, -1 = unlabeled
    sentiments: torch.Tensor                 # (N,) long, -1 = unknown
    speakers: torch.Tensor                   # (N,) long
    batch: torch.Tensor                      # (N,) long: dialogue index of each utterance
    ptr: torch.Tensor                        # (B + 1,) long: offsets of each dialogue
    position: torch.Tensor                   # (N,) long: utterance index inside its dialogue
    dialogue_index: torch.Tensor             # (B,) long: dataset index of each dialogue
    dialogue_ids: list[str] = field(default_factory=list)

    @property
    def num_dialogues(self) -> int:
        return int(self.ptr.numel() - 1)

    @property
    def num_nodes(self) -> int:
        return int(self.batch.numel())

    @property
    def lengths(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def to(self, device: torch.device | str) -> "DialogueBatch":
        kwargs = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device)
            elif isinstance(v, dict):
                v = {k: t.to(device) for k, t in v.items()}
            kwargs[f.name] = v
        return DialogueBatch(**kwargs)


def collate_dialogues(dialogues: Sequence[Dialogue], indices: Sequence[int] | None = None) -> DialogueBatch:
    """Stack dialogues into one :class:`DialogueBatch` (no padding, offsets in ``ptr``)."""
    if not dialogues:
        raise ValueError("cannot collate an empty list of dialogues")
    lengths = torch.tensor([len(d) for d in dialogues], dtype=torch.long)
    ptr = torch.zeros(len(dialogues) + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(lengths, 0)
    batch = torch.repeat_interleave(torch.arange(len(dialogues)), lengths)
    position = torch.arange(int(ptr[-1])) - ptr[batch]
    modalities = list(dialogues[0].features)
    feats = {m: torch.from_numpy(np.concatenate([np.asarray(d.features[m], dtype=np.float32)
                                                 for d in dialogues])) for m in modalities}
    def cat(attr: str) -> torch.Tensor:
        parts = [getattr(d, attr) if getattr(d, attr) is not None else np.full(len(d), -1)
                 for d in dialogues]
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))
    return DialogueBatch(
        features=feats, labels=cat("labels"), sentiments=cat("sentiments"), speakers=cat("speakers"),
        batch=batch, ptr=ptr, position=position,
        dialogue_index=torch.tensor(list(indices) if indices is not None else range(len(dialogues)),
                                    dtype=torch.long),
        dialogue_ids=[d.dialogue_id for d in dialogues])
