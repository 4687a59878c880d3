"""The HRG stage's view of the dialogue data: tokenised turns, label words and batches.

Dialogues come from the shared data layer (:func:`erc.data.dialogues.load_splits`);
this module adds what a text backbone needs:

* every turn as the string ``"speaker A: <transcript>"``, tokenised ONCE when the
  dataset is built (:class:`HRGDataset`), padded per batch by :func:`collate_hrg`;
* the label vocabulary in words (:func:`label_words`; IEMOCAP's ``hap`` is
  ``happy``), and the string of a history label node,
  ``"speaker A: happy & positive"`` (:func:`label_string`).

A batch (:class:`HRGBatch`) is a :class:`erc.data.batch.DialogueBatch` of whole
dialogues (nodes stacked, offsets ``ptr``) plus ``input_ids`` / ``attention_mask``
with one row per utterance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from erc.data.batch import Dialogue, DialogueBatch, collate_dialogues
from erc.data.validate import DataValidationError

# Short class names of the registry spelled as words a pretrained decoder knows; other names are words already.
LABEL_WORDS = {"hap": "happy", "sad": "sad", "neu": "neutral", "ang": "angry", "exc": "excited",
               "fru": "frustrated"}
UNKNOWN_WORD = "unknown"
SEPARATOR = "&"


def label_words(names: Sequence[str]) -> list[str]:
    """Words for class names (``hap`` -> ``happy``; ``-3`` stays ``-3``)."""
    return [LABEL_WORDS.get(n, n) for n in names]


def speaker_name(index: int) -> str:
    """``0 -> 'speaker A'``, ``1 -> 'speaker B'`` ... (speaker index within the dialogue)."""
    index = int(index)
    return f"speaker {chr(ord('A') + index)}" if 0 <= index < 26 else f"speaker {index}"


def turn_string(speaker: int, text: str) -> str:
    return f"{speaker_name(speaker)}: {text}"


def label_string(speaker: int, emotion: str, sentiment: str) -> str:
    """Text of a history label node: ``"speaker A: happy & positive"``."""
    return f"{speaker_name(speaker)}: {emotion} {SEPARATOR} {sentiment}"


@dataclass
class HRGBatch:
    """Whole dialogues: the data layer's batch plus one tokenised row per utterance."""

    dialogues: DialogueBatch
    input_ids: torch.Tensor          # (N, L) long, right-padded
    attention_mask: torch.Tensor     # (N, L) long

    @property
    def num_nodes(self) -> int:
        return self.dialogues.num_nodes

    def to(self, device) -> "HRGBatch":
        return HRGBatch(self.dialogues.to(device), self.input_ids.to(device), self.attention_mask.to(device))


class HRGDataset:
    """Map-style dataset over whole dialogues; item ``i`` is ``(i, dialogue, token ids per turn)``.

    Turns are tokenised here, once, truncated to ``max_length`` tokens.
    """

    def __init__(self, dialogues: Sequence[Dialogue], tokenizer, max_length: int, source: str = "dataset"):
        self.dialogues = list(dialogues)
        self.tokens: list[list[list[int]]] = []
        for d in self.dialogues:
            if d.texts is None:
                raise DataValidationError(f"{source}: dialogue {d.dialogue_id}: field 'texts' is missing; "
                                          "HRG-SSA needs the transcript of every turn (videoSentence)")
            strings = [turn_string(s, t) for s, t in zip(d.speakers, d.texts)]
            enc = tokenizer(strings, truncation=True, max_length=max_length)
            self.tokens.append([list(ids) for ids in enc["input_ids"]])

    def __len__(self) -> int:
        return len(self.dialogues)

    def __getitem__(self, i: int):
        return int(i), self.dialogues[i], self.tokens[i]


class Collator:
    """Collate ``(index, dialogue, tokens)`` items into an :class:`HRGBatch` (pads with ``pad_id``)."""

    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, items) -> HRGBatch:
        idx, dlgs, toks = zip(*items)
        rows = [ids for per_dialogue in toks for ids in per_dialogue]
        length = max(len(r) for r in rows)
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), length), dtype=np.int64)
        for k, r in enumerate(rows):
            ids[k, :len(r)] = r
            mask[k, :len(r)] = 1
        return HRGBatch(collate_dialogues(list(dlgs), list(idx)), torch.from_numpy(ids), torch.from_numpy(mask))


def make_hrg_loader(dataset: HRGDataset, pad_id: int, batch_size: int, shuffle: bool = False, seed: int = 0):
    """DataLoader of :class:`HRGBatch` (whole dialogues). Shuffling draws from one generator seeded once."""
    from torch.utils.data import DataLoader

    gen = None
    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=Collator(pad_id))
