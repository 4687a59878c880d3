"""Timing features from real timestamps, and the joins that find timestamps for text-only pickles.

Per utterance ``i`` of a dialogue (in dialogue order), with ``prev_end`` the
end of utterance ``i-1``:

- ``duration = max(end - start, 0)`` seconds;
- ``words_per_second = words / max(duration, 0.1)`` (words = whitespace tokens);
- ``gap_to_previous = max(start - prev_end, 0)`` (0 for the first utterance);
- ``overlap_with_previous = max(prev_end - start, 0)`` (0 for the first utterance).
"""
from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from typing import Sequence

import numpy as np

from erc.data.readers import _meld_seconds
from erc.data.validate import DataValidationError

MIN_DURATION = 0.1


def timing_features(start: np.ndarray, end: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """(n, 4) float32: duration, words per second, gap to previous turn, overlap with it."""
    start = np.asarray(start, dtype=np.float64)
    end = np.asarray(end, dtype=np.float64)
    duration = np.maximum(end - start, 0.0)
    words = np.array([len(str(t).split()) for t in texts], dtype=np.float64)
    wps = words / np.maximum(duration, MIN_DURATION)
    prev_end = np.concatenate([[np.nan], end[:-1]])
    delta = start - prev_end
    gap = np.where(np.isnan(delta), 0.0, np.maximum(delta, 0.0))
    overlap = np.where(np.isnan(delta), 0.0, np.maximum(-delta, 0.0))
    return np.stack([duration, wps, gap, overlap], axis=1).astype(np.float32)


def normalize_text(text: str) -> str:
    """Lower-case letters and digits only, so punctuation/spacing/encoding quirks do not block a join."""
    t = unicodedata.normalize("NFKD", str(text)).lower()
    return re.sub(r"[^a-z0-9]+", "", t)


def _first(keys, k=5) -> str:
    keys = list(keys)
    return ", ".join(map(str, keys[:k])) + (" ..." if len(keys) > k else "") + f" ({len(keys)} in all)"


def join_release_by_text(dialogues, release, source: str) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Timestamps for dialogues without utterance ids (COSMIC IEMOCAP) from the release table.

    ``dialogues``: objects with ``dialogue_id``, ``speakers`` and ``texts``.
    ``release``: DataFrame from ``erc.vad.data.read_iemocap`` (utterance_id, dialogue_id, speaker,
    start, end, text). Match within the same dialogue id and speaker, by normalised text, in
    order (each utterance takes the earliest unused release utterance of that speaker after
    the one matched before it). Every utterance must match; otherwise the error lists them.
    Returns dialogue id -> (start, end, utterance_ids).
    """
    by_dlg = {str(k): g for k, g in release.groupby("dialogue_id", sort=False)}
    out, unmatched = {}, []
    for d in dialogues:
        g = by_dlg.get(d.dialogue_id)
        if g is None:
            unmatched.extend(f"{d.dialogue_id}#{i}" for i in range(len(d)))
            continue
        g = g.sort_values("start", kind="stable")
        cands = defaultdict(list)  # speaker -> [(norm text, start, end, uid)]
        for r in g.itertuples():
            cands[str(r.speaker)].append((normalize_text(r.text), float(r.start), float(r.end), str(r.utterance_id)))
        pointer = defaultdict(int)
        start = np.full(len(d), np.nan)
        end = np.full(len(d), np.nan)
        uids = [""] * len(d)
        for i, (spk, text) in enumerate(zip(d.speakers, d.texts)):
            want, lst = normalize_text(text), cands.get(str(spk), [])
            j = pointer[spk]
            while j < len(lst) and lst[j][0] != want:
                j += 1
            if j == len(lst):
                unmatched.append(f"{d.dialogue_id}#{i} ({spk}: {text!r})")
                continue
            _, start[i], end[i], uids[i] = lst[j]
            pointer[spk] = j + 1
        out[d.dialogue_id] = (start, end, uids)
    if unmatched:
        raise DataValidationError(f"{source}: {len(unmatched)} utterance(s) found no release transcription "
                                  f"with the same dialogue, speaker and text, in order: {_first(unmatched)}")
    return out


def join_by_utterance_id(dialogues, table, source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Timestamps by utterance id from a table with utterance_id, start, end; all must be found."""
    idx = {str(u): (float(s), float(e)) for u, s, e in zip(table["utterance_id"], table["start"], table["end"])}
    out, missing = {}, []
    for d in dialogues:
        se = [idx.get(str(u)) for u in d.utterance_ids]
        missing.extend(str(u) for u, x in zip(d.utterance_ids, se) if x is None)
        if all(x is not None for x in se):
            out[d.dialogue_id] = (np.array([x[0] for x in se]), np.array([x[1] for x in se]))
    if missing:
        raise DataValidationError(f"{source}: {len(missing)} utterance id(s) not in the timing table: "
                                  f"{_first(missing)}")
    return out


def join_meld_csv(corpus, tables: dict, source: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """COSMIC MELD dialogues -> MELD CSV timestamps.

    Within each split, the k-th smallest pickle dialogue id is the k-th smallest CSV
    ``Dialogue_ID`` (the pickle numbers train, dev, test consecutively); the match is then
    checked utterance by utterance on normalised text, failing loudly on any difference.
    """
    out, bad = {}, []
    for split, df in tables.items():
        ids = sorted(corpus.splits.get(split, []), key=lambda x: int(x))
        groups = [g.sort_values("Utterance_ID", kind="stable") for _, g in df.groupby("Dialogue_ID", sort=True)]
        if len(ids) != len(groups):
            raise DataValidationError(f"{source}: split {split} has {len(ids)} dialogues in the pickle but "
                                      f"{len(groups)} in the MELD CSV")
        for dlg, g in zip(ids, groups):
            d = corpus.dialogues[dlg]
            csv_text = [normalize_text(t) for t in g["Utterance"]]
            pkl_text = [normalize_text(t) for t in d.texts]
            if len(csv_text) != len(pkl_text) or csv_text != pkl_text:
                bad.append(f"{dlg} (CSV {split} Dialogue_ID {g['Dialogue_ID'].iloc[0]})")
                continue
            out[dlg] = (_meld_seconds(g["StartTime"]), _meld_seconds(g["EndTime"]))
    if bad:
        raise DataValidationError(f"{source}: {len(bad)} dialogue(s) differ from the MELD CSV text: {_first(bad)}")
    return out
