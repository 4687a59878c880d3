"""Data of the compare stage: utterance tables, train/test split, emotion class sets.

Class sets are data in the dataset registry (:data:`erc.data.registry.CLASS_SETS`),
not branches: each maps raw emotion labels to class names and lists the classes
in order. Utterances whose label is not in a set's mapping (``xxx``, ``sur``,
``fea`` ...) are left out of that set's forest, never relabelled.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from erc.core.config import ConfigError
from erc.data.registry import CLASS_SETS, VAD_NAMES, ClassSet
from erc.data.splits import split_rows
from erc.data.utterance_dataset import load_frame_cached
from erc.data.utterances import read_any_table, read_synthetic, read_table

logger = logging.getLogger(__name__)


def resolve_class_set(name: str, train_labels: Sequence[str] | None = None) -> ClassSet:
    """A registered set, or ``all``: every label present in the training split (sorted)."""
    if name in CLASS_SETS:
        return CLASS_SETS[name]
    if name == "all":
        if train_labels is None:
            raise ValueError("class set 'all' needs the training labels")
        labels = tuple(sorted({str(x) for x in train_labels if isinstance(x, str) and x}))
        return ClassSet("all", labels, {x: x for x in labels}, "every label of the training split")
    raise ConfigError(f"field 'class_sets': unknown class set {name!r}; expected one of "
                      f"{sorted(CLASS_SETS) + ['all']}")


def encode_labels(emotions: Sequence, cs: ClassSet) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows in the set, integer labels of those rows in ``cs.labels`` order)."""
    mapped = [cs.mapping.get(e) if isinstance(e, str) else None for e in emotions]
    mask = np.array([m is not None for m in mapped])
    index = {lab: i for i, lab in enumerate(cs.labels)}
    y = np.array([index[m] for m in mapped if m is not None], dtype=np.int64)
    return mask, y


@dataclass
class CompareData:
    """Train and test utterance tables (reset index) plus a description for the report."""

    train: pd.DataFrame
    test: pd.DataFrame
    description: str
    split_description: str


REQUIRED_COLUMNS = ("utterance_id", "dialogue_id", "text", "emotion") + VAD_NAMES


def _check_columns(df: pd.DataFrame, source: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")


def split_by_sessions(df: pd.DataFrame, train_sessions: Sequence[int], test_sessions: Sequence[int],
                      source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train / test rows by session lists (:func:`erc.data.splits.split_rows`)."""
    if "session" not in df.columns:
        raise ConfigError(f"{source}: no 'session' column to split by sessions")
    sess = pd.to_numeric(df["session"], errors="coerce").fillna(-1).astype(int)
    masks = split_rows(df["dialogue_id"], "session", sessions=sess, source=source,
                       session_lists={"train": list(train_sessions), "test": list(test_sessions)})
    train, test = df[masks["train"]].reset_index(drop=True), df[masks["test"]].reset_index(drop=True)
    for name, part, want in (("train", train, train_sessions), ("test", test, test_sessions)):
        if part.empty:
            raise ConfigError(f"{source}: the {name} split (sessions {list(want)}) has no utterances; "
                              f"sessions present: {sorted(s for s in sess.unique().tolist() if s >= 0)}")
    return train, test


def split_table(df: pd.DataFrame, test_fraction: float, seed: int,
                source: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """By the table's split column (train / test; valid rows unused) or seeded by dialogue
    (:func:`erc.data.splits.split_rows` both ways)."""
    if "split" in df.columns:
        masks = split_rows(df["dialogue_id"], "column", column=df["split"].tolist(), source=source)
        if not masks["train"].any() or not masks["test"].any():
            raise ConfigError(f"{source}: the split column needs 'train' and 'test' rows; "
                              f"found {sorted(df['split'].astype(str).unique().tolist())}")
        how = "the table's split column"
    else:
        masks = split_rows(df["dialogue_id"], "dialogue", fractions={"test": test_fraction}, seed=seed,
                           source=source)
        n_dialogues = df["dialogue_id"].astype(str).nunique()
        n_test = df.loc[masks["test"], "dialogue_id"].astype(str).nunique()
        how = f"seeded by dialogue (seed {seed}, {n_test}/{n_dialogues} dialogues in test)"
    return df[masks["train"]].reset_index(drop=True), df[masks["test"]].reset_index(drop=True), how


def read_labelled_table(d) -> pd.DataFrame:
    """A CSV/JSONL/Parquet table (``d``: the ``data`` section) through the utterance reader, plus its emotion column."""
    if not Path(d.path).is_file():
        raise ConfigError(f"field 'data.path': {d.path} is not a file")
    raw = read_any_table(Path(d.path))
    split = d.split_column if d.split_column and d.split_column in raw.columns else ""
    df = read_table(d.path, text=d.text_column, valence=d.valence_column,
                    arousal=d.arousal_column, dominance=d.dominance_column, id=d.id_column,
                    dialogue=d.dialogue_column, split=split)
    if d.emotion_column not in raw.columns:
        raise ConfigError(f"{d.path}: column '{d.emotion_column}' (for emotion) not found; "
                          f"columns are {', '.join(map(str, raw.columns))}; set --emotion-column")
    df["emotion"] = [None if pd.isna(e) else str(e) for e in raw[d.emotion_column]]
    return df


def load_compare_data(cfg) -> CompareData:
    """Read the utterances named by ``cfg.data`` and split them; rows without gold V/A/D are dropped."""
    d = cfg.data
    if d.format == "synthetic":
        df = read_synthetic(d.synthetic_dialogues, cfg.seed)
        source = f"SYNTHETIC corpus (vad.synthetic, {d.synthetic_dialogues} dialogues, seed {cfg.seed})"
    elif d.format == "iemocap":
        df, _ = load_frame_cached(d)          # the release is parsed once per content
        source = f"IEMOCAP release at {d.path}"
    elif d.format == "table":
        df = read_labelled_table(d)
        source = f"table {d.path}"
    else:  # validated by the config
        raise ConfigError(f"field 'data.format': unknown kind {d.format!r}")
    _check_columns(df, source)
    n_all = len(df)
    df = df[df[list(VAD_NAMES)].notna().all(axis=1)].reset_index(drop=True)
    if d.format == "table":
        train, test, how = split_table(df, d.test_fraction, cfg.seed, source)
    else:
        train, test = split_by_sessions(df, d.train_sessions, d.test_sessions, source)
        how = f"train sessions {list(d.train_sessions)}, test sessions {list(d.test_sessions)}"
    desc = (f"{source}: {n_all} utterances read, {len(df)} with gold V/A/D used "
            f"({len(train)} train / {len(test)} test)")
    logger.info("%s; split: %s", desc, how)
    return CompareData(train=train, test=test, description=desc, split_description=how)
