"""Checks run on every load. Each error names the file, the dialogue and the field."""
from __future__ import annotations

from typing import Iterable

import numpy as np


class DataValidationError(ValueError):
    """A dataset file that breaks the layout its registry entry describes."""


def fail(source: str, dialogue: str | None, field: str, problem: str) -> DataValidationError:
    where = f"{source}"
    if dialogue is not None:
        where += f": dialogue {dialogue!r}"
    return DataValidationError(f"{where}: field {field!r}: {problem}")


def as_matrix(value, source: str, dialogue: str, field: str, dim: int | None) -> np.ndarray:
    """A per-utterance feature list/array as a float32 (n, d) matrix, checking d and finiteness."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        arr = value
    else:
        rows = list(value)
        if not rows:
            raise fail(source, dialogue, field, "no utterances (empty dialogue)")
        lens = [int(np.asarray(r).size) for r in rows]
        if len(set(lens)) > 1:
            first = next(i for i, n in enumerate(lens) if n != lens[0])
            raise fail(source, dialogue, field,
                       f"feature dimension differs between utterances: utterance 0 has {lens[0]}, "
                       f"utterance {first} has {lens[first]}")
        arr = np.stack([np.asarray(r, dtype=np.float32).reshape(-1) for r in rows])
    arr = np.asarray(arr, dtype=np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise fail(source, dialogue, field, f"expected feature dimension {dim} (registry), got {arr.shape[1]}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise fail(source, dialogue, field, f"non-finite value {arr[i, j]} at utterance {i}, feature {j}")
    return arr


def check_lengths(source: str, dialogue: str, lengths: dict[str, int]) -> int:
    """All per-utterance fields of one dialogue have one length > 0; returns it."""
    if not lengths:
        raise fail(source, dialogue, "labels", "dialogue has no per-utterance fields")
    values = set(lengths.values())
    if len(values) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise fail(source, dialogue, "lengths", f"per-utterance fields differ in length ({desc})")
    n = values.pop()
    if n == 0:
        raise fail(source, dialogue, "labels", "empty dialogue (0 utterances)")
    return n


def check_labels(source: str, dialogue: str, field: str, labels: np.ndarray, num_classes: int) -> None:
    """Labels in [0, num_classes) or -1 (unlabeled)."""
    bad = (labels < -1) | (labels >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise fail(source, dialogue, field,
                   f"label {int(labels[i])} at utterance {i} outside the class range 0..{num_classes - 1}")


def check_disjoint_splits(source: str, splits: dict[str, Iterable[str]]) -> None:
    seen: dict[str, str] = {}
    for name, ids in splits.items():
        for d in ids:
            if d in seen and seen[d] != name:
                raise fail(source, str(d), f"{seen[d]}/{name} ids",
                           f"dialogue listed in two splits ({seen[d]} and {name})")
            seen[d] = name
