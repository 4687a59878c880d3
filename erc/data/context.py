"""Context-aware utterance inputs: the target turn read with up to K previous and K following turns.

Every V/A/D stage (fine-tuning, ``embed``, ``predict``) builds its encoder inputs with
:func:`context_inputs`, and the rule (``context_past``, ``context_future``) is saved with the
model, so a folder is always read the way it was trained.

With ``past = future = 0`` the input is the utterance text alone (no speaker tag), exactly
as without this module. Otherwise each row becomes a sentence pair for the tokenizer:

* first segment, the target: ``"<speaker>: <text>"``;
* second segment, the context in dialogue order with the target's place marked::

      "<spk>: <turn i-2> | <spk>: <turn i-1> | <<target>> | <spk>: <turn i+1>"

Turns are added nearest first (``i-1``, ``i+1``, ``i-2``, ``i+2``, ...), each side up to its
K, while the pair still fits ``max_length`` tokens; the first turn that does not fit closes
that side, so the context is always cut from its far end, never in the middle of a turn,
and the target is never truncated for context.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

TARGET_MARK = "<<target>>"
TURN_SEP = " | "


def speaker_turn(speaker, text: str) -> str:
    s = "" if speaker is None else str(speaker).strip()
    return f"{s}: {text}" if s and s.lower() != "nan" else str(text)


def dialogue_groups(dialogue_ids: Sequence) -> list[list[int]]:
    """Row positions of each dialogue, dialogues in order of first appearance, rows in input order."""
    groups: dict = {}
    for i, d in enumerate(dialogue_ids):
        groups.setdefault(d, []).append(i)
    return list(groups.values())


def context_inputs(texts: Sequence[str], dialogue_ids: Sequence, speakers: Sequence | None, past: int, future: int,
                   count_tokens: Callable[[list[str]], list[int]], max_length: int,
                   special_tokens: int = 4) -> tuple[list[str], list[str] | None]:
    """``(targets, contexts)`` for every row; ``contexts`` is None when ``past == future == 0``.

    Rows of one dialogue must be in dialogue order (they need not be adjacent).
    ``count_tokens(list of strings) -> token counts`` without special tokens (a tokenizer);
    ``special_tokens``: what the tokenizer adds to a pair (RoBERTa ``<s> A </s></s> B </s>``: 4).
    """
    if past < 0 or future < 0:
        raise ValueError(f"context: past and future turns must be >= 0, got {past} and {future}")
    texts = [str(t) for t in texts]
    if past == 0 and future == 0:
        return texts, None
    if len(dialogue_ids) != len(texts) or (speakers is not None and len(speakers) != len(texts)):
        raise ValueError(f"context: {len(texts)} texts, {len(dialogue_ids)} dialogue ids"
                         + (f", {len(speakers)} speakers" if speakers is not None else ""))
    turns = [speaker_turn(speakers[i] if speakers is not None else None, t) for i, t in enumerate(texts)]
    lengths = count_tokens(turns)
    sep_len, mark_len = count_tokens([TURN_SEP.strip(), TARGET_MARK])
    contexts: list[str] = [""] * len(texts)
    for rows in dialogue_groups(dialogue_ids):
        for j, row in enumerate(rows):
            budget = max_length - special_tokens - lengths[row] - mark_len
            before, after = [], []
            open_past, open_future = True, True
            for d in range(1, max(past, future) + 1):
                if open_past and d <= past and j - d >= 0:
                    cost = lengths[rows[j - d]] + sep_len
                    open_past = cost <= budget
                    if open_past:
                        budget -= cost
                        before.append(turns[rows[j - d]])
                if open_future and d <= future and j + d < len(rows):
                    cost = lengths[rows[j + d]] + sep_len
                    open_future = cost <= budget
                    if open_future:
                        budget -= cost
                        after.append(turns[rows[j + d]])
            contexts[row] = TURN_SEP.join([*reversed(before), TARGET_MARK, *after])
    return turns, contexts


def tokenizer_counter(tokenizer) -> Callable[[list[str]], list[int]]:
    """Token counts without special tokens, from a Hugging Face tokenizer."""
    def count(strings: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(strings), add_special_tokens=False)["input_ids"]]
    return count


def pair_special_tokens(tokenizer) -> int:
    """How many special tokens ``tokenizer`` adds to a sentence pair."""
    try:
        return int(tokenizer.num_special_tokens_to_add(pair=True))
    except (AttributeError, NotImplementedError):
        return 4


def tokenizer_context_inputs(tokenizer, texts: Sequence[str], dialogue_ids: Sequence, speakers: Sequence | None,
                             past: int, future: int, max_length: int) -> tuple[list[str], list[str] | None]:
    """:func:`context_inputs` with token counts and special tokens from a Hugging Face ``tokenizer``."""
    return context_inputs(texts, dialogue_ids, speakers, past, future, tokenizer_counter(tokenizer), max_length,
                          pair_special_tokens(tokenizer))


def dialogue_order(frame) -> np.ndarray:
    """Row positions of an utterance frame in dialogue order: dialogues by first appearance, turns by
    ``start`` time where the frame has it (the IEMOCAP release lists each speaker's turns in turn, not
    in time), else by row order."""
    dlg = frame["dialogue_id"].astype(str).tolist()
    first: dict[str, int] = {}
    for i, d in enumerate(dlg):
        first.setdefault(d, i)
    start = frame["start"].to_numpy(dtype=np.float64) if "start" in frame else np.full(len(frame), np.nan)
    start = np.where(np.isnan(start), np.inf, start)
    return np.lexsort((np.arange(len(frame)), start, np.array([first[d] for d in dlg])))


def frame_context(frame, past: int, future: int, tokenizer, max_length: int) -> dict[str, tuple[str, str | None]]:
    """``utterance_id -> (target, context)`` for every row of an utterance frame (:mod:`erc.data.utterances`),
    turns in :func:`dialogue_order`."""
    rows = frame.iloc[dialogue_order(frame)]
    speakers = rows["speaker"].tolist() if "speaker" in rows else None
    targets, contexts = tokenizer_context_inputs(tokenizer, rows["text"].astype(str).tolist(),
                                                 rows["dialogue_id"].astype(str).tolist(), speakers, past, future,
                                                 max_length)
    ids = rows["utterance_id"].astype(str).tolist()
    return {u: (t, contexts[i] if contexts is not None else None) for i, (u, t) in enumerate(zip(ids, targets))}
