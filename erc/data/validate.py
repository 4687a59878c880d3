"""Checks run on every load. Each error names the file, the dialogue and the field."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from erc.core.errors import ErcError


class DataValidationError(ErcError, ValueError):
    """A dataset file that breaks the layout its registry entry describes (the CLI prints it, exit 2)."""


def fail(source: str, dialogue: str | None, field: str, problem: str) -> DataValidationError:
    where = f"{source}"
    if dialogue is not None:
        where += f": dialogue {dialogue!r}"
    return DataValidationError(f"{where}: field {field!r}: {problem}")


def rows_of(value, source: str, dialogue: str | None, field: str, what: str = "value") -> list:
    """A per-utterance field as a list (one entry per utterance); a scalar, string or mapping is an error."""
    if isinstance(value, (str, bytes, bytearray, dict, set, frozenset)) or not hasattr(value, "__iter__"):
        raise fail(source, dialogue, field, f"expected a list with one {what} per utterance, "
                                            f"got {type(value).__name__}")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        raise fail(source, dialogue, field, f"expected a list with one {what} per utterance, got a 0-d array")
    return list(value)


def as_matrix(value, source: str, dialogue: str, field: str, dim: int | None) -> np.ndarray:
    """A per-utterance feature list/array as a float32 (n, d) matrix, checking d and finiteness."""
    if isinstance(value, np.ndarray) and value.ndim == 2:
        arr = value
    else:
        rows = rows_of(value, source, dialogue, field, "feature vector")
        if not rows:
            raise fail(source, dialogue, field, "no utterances (empty dialogue)")
        lens = [int(np.asarray(r).size) for r in rows]
        if len(set(lens)) > 1:
            first = next(i for i, n in enumerate(lens) if n != lens[0])
            raise fail(source, dialogue, field,
                       f"feature dimension differs between utterances: utterance 0 has {lens[0]}, "
                       f"utterance {first} has {lens[first]}")
        try:
            arr = np.stack([np.asarray(r, dtype=np.float32).reshape(-1) for r in rows])
        except (TypeError, ValueError):
            raise fail(source, dialogue, field, "expected numeric feature vectors") from None
    try:
        arr = np.asarray(arr, dtype=np.float32)
    except (TypeError, ValueError):
        raise fail(source, dialogue, field, f"expected a numeric (n, d) matrix, got dtype {arr.dtype}") from None
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
