"""The one split function: which rows (utterances or dialogues) go to train, valid and test.

Every stage splits through :func:`split_rows`, in one of three ways:

* ``by="session"``: sessions listed per split (``{"train": [1, 2, 3], "valid": [4],
  "test": [5]}``); a split given as ``None`` takes every session no other split
  names (``{"train": None, "test": [5]}``: test is session 5, train the rest);
* ``by="column"``: a split value per row (``train``, ``valid``, ``test``; a user
  table's ``dev``, ``val`` and ``validation`` are read as ``valid``);
* ``by="dialogue"``: seeded by dialogue: the sorted dialogue ids are permuted by
  ``numpy.random.default_rng(seed)`` and each split of ``fractions`` (in order)
  takes the next :func:`carve_count` ids; the rest is ``train``.

Whatever the way, a dialogue never lands in two splits (a :class:`ConfigError`
names the dialogue), except that ``valid`` and ``test`` may be the very same
rows when a caller asks for it (``allow_valid_test_overlap``: IEMOCAP copies
without labels for session 5 test on the validation session, and say so).

Split names are :data:`SPLITS` everywhere; a split absent from the request
gets an all-False mask.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from erc.core.config import ConfigError

SPLITS = ("train", "valid", "test")
#: Names a user's table may use for a split, and the split they mean.
SPLIT_ALIASES = {"train": "train", "training": "train", "dev": "valid", "val": "valid", "valid": "valid",
                 "validation": "valid", "test": "test"}
WAYS = ("session", "column", "dialogue")


def carve_count(fraction: float, n: int) -> int:
    """How many of ``n`` dialogues a split of ``fraction`` takes: the ONE rounding rule.

    ``round(fraction * n)`` (Python's round, half to even), at least 1 when
    ``fraction > 0``, at most ``n - 1`` (so training keeps one); 0 when ``fraction <= 0``
    or ``n <= 1``. Over several splits, each later one is capped so training keeps one.
    """
    if fraction <= 0 or n <= 1:
        return 0
    return min(max(int(round(fraction * n)), 1), n - 1)


def session_lists_leave_one_out(available: Sequence[int], session: int) -> dict[str, list[int]]:
    """Leave-one-session-out fold: test ``session``, validate on the session before it, train on the rest."""
    available = sorted(int(s) for s in available)
    if session not in available:
        raise ConfigError(f"field 'leave_one_session_out': session {session} not in data sessions {available}")
    i = available.index(session)
    valid = available[i - 1]
    return {"train": [s for s in available if s not in (session, valid)], "valid": [valid], "test": [session]}


def hold_out_last_session(train_sessions: Sequence[int]) -> dict[str, list[int]]:
    """Training sessions -> (train = all but the last, valid = the last): a validation split
    taken from training sessions only, so a later test split is never seen."""
    train = sorted(int(s) for s in train_sessions)
    if len(train) < 2:
        raise ConfigError("field 'train_sessions': holding out a validation session needs at least 2 "
                          f"training sessions, got {train}")
    return {"train": train[:-1], "valid": [train[-1]]}


def _by_session(sessions: np.ndarray, lists: Mapping[str, Sequence[int] | None]) -> dict[str, np.ndarray]:
    named = {k: [int(s) for s in v] for k, v in lists.items() if v is not None}
    rest = [k for k, v in lists.items() if v is None]
    if len(rest) > 1:
        raise ValueError(f"only one split may take the remaining sessions, got {rest}")
    masks = {k: np.isin(sessions, v) for k, v in named.items()}
    if rest:
        taken = np.isin(sessions, [s for v in named.values() for s in v])
        masks[rest[0]] = ~taken
    return masks


def _by_column(values: Sequence, source: str) -> dict[str, np.ndarray]:
    norm = []
    for v in values:
        key = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip().lower()
        if key and key not in SPLIT_ALIASES:
            raise ConfigError(f"{source}: split value {v!r} is not a split name; expected one of "
                              f"{', '.join(SPLIT_ALIASES)}")
        norm.append(SPLIT_ALIASES.get(key, ""))
    col = np.asarray(norm, dtype=object)
    return {name: col == name for name in SPLITS}


def _by_dialogue(dialogues: np.ndarray, fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    uniq = np.array(sorted(set(dialogues.tolist())), dtype=object)
    perm = uniq[np.random.default_rng(seed).permutation(len(uniq))]
    masks, start = {}, 0
    for name, frac in fractions.items():
        k = min(carve_count(frac, len(uniq)), max(len(uniq) - start - 1, 0))
        masks[name] = np.isin(dialogues, perm[start:start + k])
        start += k
    return masks


def split_rows(dialogue_ids: Sequence, by: str, *, sessions: Sequence[int] | None = None,
               session_lists: Mapping[str, Sequence[int] | None] | None = None,
               column: Sequence | None = None, fractions: Mapping[str, float] | None = None,
               seed: int = 0, source: str = "data", allow_valid_test_overlap: bool = False
               ) -> dict[str, np.ndarray]:
    """Boolean masks ``{"train", "valid", "test"}`` over rows (one dialogue id per row).

    * ``by="session"``: ``sessions`` (one per row) and ``session_lists``;
    * ``by="column"``: ``column`` (one split value per row);
    * ``by="dialogue"``: ``fractions`` (e.g. ``{"test": 0.1, "valid": 0.1}``, carved in that
      order) and ``seed``; unlisted rows are ``train``.

    Rows may belong to no split (a session no split names, an empty split value).
    Raises :class:`ConfigError` when a dialogue is in two splits (see module doc).
    """
    dialogues = np.asarray([str(d) for d in dialogue_ids], dtype=object)
    if by == "session":
        if sessions is None or session_lists is None:
            raise ValueError("by='session' needs sessions and session_lists")
        masks = _by_session(np.asarray(sessions, dtype=np.int64), session_lists)
    elif by == "column":
        if column is None:
            raise ValueError("by='column' needs column")
        masks = _by_column(column, source)
    elif by == "dialogue":
        if fractions is None:
            raise ValueError("by='dialogue' needs fractions")
        masks = _by_dialogue(dialogues, fractions, seed)
        masks["train"] = ~np.logical_or.reduce([m for k, m in masks.items() if k != "train"] +
                                               [np.zeros(len(dialogues), dtype=bool)])
    else:
        raise ConfigError(f"{source}: split by {by!r}; expected one of {', '.join(WAYS)}")
    unknown = sorted(set(masks) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}; expected {SPLITS}")
    masks = {name: masks.get(name, np.zeros(len(dialogues), dtype=bool)) for name in SPLITS}
    _check_disjoint(dialogues, masks, source, allow_valid_test_overlap)
    return masks


def _check_disjoint(dialogues: np.ndarray, masks: dict[str, np.ndarray], source: str,
                    allow_valid_test_overlap: bool) -> None:
    sets = {name: set(dialogues[m].tolist()) for name, m in masks.items()}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        if (a, b) == ("valid", "test") and allow_valid_test_overlap:
            continue
        shared = sorted(sets[a] & sets[b])
        if shared:
            raise ConfigError(f"{source}: dialogue(s) {shared[:3]} are in {a} and {b}; "
                              "a dialogue must stay in one split")


def split_ids(ids: Sequence[str], masks: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    """The masks of :func:`split_rows` over a list of dialogue ids -> ids per split, in input order."""
    return {name: [i for i, keep in zip(ids, masks[name]) if keep] for name in SPLITS}
