"""Text features: a deterministic hashed bag of words, and utterance-embedding files and their join.

Embedding file (``cli.py embed``): an ``.npz`` with
``embeddings`` (N, d) float32, ``utterance_ids`` (N,) str (empty strings when the
dataset has none), ``dialogue_ids`` (N,) str, ``positions`` (N,) int64 (index of
the utterance inside its dialogue) and ``model`` (str). Rows are joined to a
dataset by utterance id or by (dialogue id, position); any dataset utterance
without a row, or any row without an utterance, is an error listing the first ids.
"""
from __future__ import annotations

import hashlib
import io
import re
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from erc.core.errors import FileFormatError
from erc.core.io import atomic_write_bytes
from erc.data.validate import DataValidationError

_TOKEN = re.compile(r"[a-z0-9']+")


@lru_cache(maxsize=200_000)
def _bucket(token: str, dim: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.md5(token.encode("utf-8")).digest()[:8], "little")
    return h % dim, (1.0 if (h >> 63) & 1 == 0 else -1.0)


def hash_featurize(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """Signed hashed bag of unigrams + bigrams (md5, so identical in every process), L2-normalised.

    Tokens are lower-cased runs of ``[a-z0-9']``; an empty text gives a zero row.
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        toks = _TOKEN.findall(str(t).lower())
        grams = toks + [f"{a} {b}" for a, b in zip(toks, toks[1:])]
        for g in grams:
            j, sign = _bucket(g, dim)
            out[i, j] += sign
        n = np.linalg.norm(out[i])
        if n > 0:
            out[i] /= n
    return out


@dataclass
class EmbeddingTable:
    embeddings: np.ndarray
    utterance_ids: np.ndarray
    dialogue_ids: np.ndarray
    positions: np.ndarray
    model: str = ""
    source: str = ""

    @property
    def has_utterance_ids(self) -> bool:
        return bool(len(self.utterance_ids)) and all(u != "" for u in self.utterance_ids)


def write_embeddings(path: str | Path, embeddings: np.ndarray, dialogue_ids: Sequence[str],
                     positions: Sequence[int], utterance_ids: Sequence[str] | None = None,
                     model: str = "") -> Path:
    """Write an embedding file atomically (see module docstring for the format)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    n = len(emb)
    uids = np.asarray(list(utterance_ids) if utterance_ids is not None else [""] * n, dtype=str)
    dids = np.asarray(list(dialogue_ids), dtype=str)
    pos = np.asarray(list(positions), dtype=np.int64)
    if not (len(uids) == len(dids) == len(pos) == n):
        raise ValueError(f"embedding rows {n}, utterance_ids {len(uids)}, dialogue_ids {len(dids)}, "
                         f"positions {len(pos)} differ")
    buf = io.BytesIO()
    np.savez(buf, embeddings=emb, utterance_ids=uids, dialogue_ids=dids, positions=pos,
             model=np.asarray(model, dtype=str))
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_embeddings(path: str | Path) -> EmbeddingTable:
    """Read an embedding file (never unpickles: object arrays are refused); a damaged file is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embedding file not found (write one with `cli.py embed`)")
    need = ("embeddings", "utterance_ids", "dialogue_ids", "positions")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in need if k not in z.files]
            if missing:
                raise DataValidationError(f"{path}: not an embedding file, missing array(s) {missing}")
            emb = z["embeddings"].astype(np.float32)
            t = EmbeddingTable(emb, z["utterance_ids"], z["dialogue_ids"], z["positions"].astype(np.int64),
                               str(z["model"]) if "model" in z.files else "", str(path))
    except DataValidationError:
        raise
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise FileFormatError(f"{path}: not a readable embedding file ({type(exc).__name__}: {detail}); "
                              f"expected an .npz written by `cli.py embed` with arrays {list(need)}") from None
    if emb.ndim != 2 or not (len(t.utterance_ids) == len(t.dialogue_ids) == len(t.positions) == len(emb)):
        raise DataValidationError(f"{path}: field 'embeddings': expected (N, d) with N ids, got {emb.shape}")
    if not np.isfinite(emb).all():
        i = int(np.argwhere(~np.isfinite(emb))[0][0])
        raise DataValidationError(f"{path}: field 'embeddings': non-finite value in row {i} "
                                  f"(dialogue {t.dialogue_ids[i]!r}, position {int(t.positions[i])})")
    return t


def _preview(keys, k: int = 5) -> str:
    keys = list(keys)
    shown = ", ".join(str(x) for x in keys[:k])
    return f"{shown}{' ...' if len(keys) > k else ''} ({len(keys)} in all)"


def join_embeddings(table: EmbeddingTable, dialogues: Sequence, mode: str = "auto") -> dict[str, np.ndarray]:
    """Rows of ``table`` for each dialogue (objects with ``dialogue_id``, ``utterance_ids``, ``__len__``).

    ``mode``: ``utterance_id``, ``position`` or ``auto`` (ids when both sides have them).
    Returns dialogue id -> (n, d). Missing or extra utterances raise with the first few keys.
    """
    ds_have_ids = all(d.utterance_ids is not None for d in dialogues)
    if mode == "auto":
        mode = "utterance_id" if (ds_have_ids and table.has_utterance_ids) else "position"
    if mode == "utterance_id":
        if not ds_have_ids:
            raise DataValidationError(f"{table.source}: join by utterance_id, but the dataset has no utterance ids; "
                                      "use text_join=position")
        if not table.has_utterance_ids:
            raise DataValidationError(f"{table.source}: field 'utterance_ids' is empty; use text_join=position")
        file_keys = [str(u) for u in table.utterance_ids]
        want = {d.dialogue_id: [str(u) for u in d.utterance_ids] for d in dialogues}
    elif mode == "position":
        file_keys = [f"{d}#{int(p)}" for d, p in zip(table.dialogue_ids, table.positions)]
        want = {d.dialogue_id: [f"{d.dialogue_id}#{i}" for i in range(len(d))] for d in dialogues}
    else:
        raise ValueError(f"join mode {mode!r}: expected auto, utterance_id or position")
    row = {}
    for i, k in enumerate(file_keys):
        if k in row:
            raise DataValidationError(f"{table.source}: key {k!r} appears twice in the embedding file")
        row[k] = i
    wanted = [k for ks in want.values() for k in ks]
    missing = [k for k in wanted if k not in row]
    if missing:
        raise DataValidationError(f"{table.source}: {len(missing)} dataset utterance(s) have no embedding "
                                  f"(join by {mode}): {_preview(missing)}")
    wanted_set = set(wanted)
    extra = [k for k in file_keys if k not in wanted_set]
    if extra:
        raise DataValidationError(f"{table.source}: {len(extra)} embedding row(s) match no dataset utterance "
                                  f"(join by {mode}): {_preview(extra)}")
    return {d: table.embeddings[[row[k] for k in ks]] for d, ks in want.items()}
