"""Train/valid/test splits of the V/A/D utterance tables (readers: :mod:`erc.data.utterances`,
split function: :func:`erc.data.splits.split_rows`)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict

from erc.core.config import ConfigError
from erc.data.splits import session_lists_leave_one_out, split_rows
from erc.data.utterance_dataset import load_frame_cached
from erc.data.utterances import SOURCES, VAD_COLUMNS, read_iemocap, read_table

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- splits
def labeled_mask(df: pd.DataFrame) -> np.ndarray:
    return np.isfinite(df[list(VAD_COLUMNS)].to_numpy(dtype=np.float64)).all(axis=1)


def validates_on_slice(cfg) -> bool:
    """Leave-one-session-out whose validation is a slice of the other sessions' dialogues."""
    return bool(cfg.leave_one_session_out) and cfg.loso_validation == "slice"


def session_sets(cfg, available: list[int]) -> tuple[list[int], list[int], list[int]]:
    """(train, valid, test) sessions; leave-one-session-out validates on the previous session, or on a
    slice of the training sessions' dialogues (then valid is [] and train is every other session)."""
    if validates_on_slice(cfg):
        test = session_lists_leave_one_out(available, cfg.leave_one_session_out)["test"]   # the session exists
        return [s for s in available if s not in test], [], test
    if cfg.leave_one_session_out:
        lists = session_lists_leave_one_out(available, cfg.leave_one_session_out)
        return lists["train"], lists["valid"], lists["test"]
    return list(cfg.train_sessions), list(cfg.valid_sessions), list(cfg.test_sessions)


def assign_splits(df: pd.DataFrame, cfg, seed: int = 0, default_mode: str = "auto"
                  ) -> tuple[dict[str, np.ndarray], str]:
    """Boolean row masks for 'train' / 'validation' / 'test', and the split mode used.

    ``cfg`` is an :class:`erc.data.config.UtteranceDataConfig`; the split itself is
    :func:`erc.data.splits.split_rows` (the masks keep the ``datasets`` name
    ``validation`` for the valid split). The same dialogue never lands in train and
    in validation/test. Validation and test may share sessions only when asked
    explicitly (a warning says so).
    """
    mode = cfg.split if cfg.split != "auto" else default_mode
    if mode == "auto":
        if "split" in df.columns and df["split"].notna().all():
            mode = "column"
        elif (df["session"] > 0).all():
            mode = "session"
        else:
            mode = "dialogue"
    source = f"--path {cfg.path}"
    if mode == "session":
        if not (df["session"] > 0).all():
            raise ConfigError("split 'session' needs session numbers; this data has none "
                              "(use --split column or --split dialogue)")
        # sessions with V/A/D labels: a copy whose session 5 is text-only must not make it a fold's validation
        available = sorted(int(s) for s in df.loc[labeled_mask(df), "session"].unique())
        train, val, test = session_sets(cfg, available)
        if set(train) & (set(val) | set(test)):
            raise ConfigError(f"train sessions {train} overlap validation {val} / test {test}")
        if set(val) & set(test):
            logger.warning("validation sessions %s overlap test sessions %s: the test figures are "
                           "then validation figures, not a held-out test", val, test)
        masks = split_rows(df["dialogue_id"], "session", sessions=df["session"].astype(int),
                           session_lists={"train": train, "valid": val, "test": test}, source=source,
                           allow_valid_test_overlap=True)
        if validates_on_slice(cfg):      # validation: a seeded slice of the training sessions' dialogues
            if cfg.valid_fraction <= 0:
                raise ConfigError("field 'valid_fraction': loso_validation 'slice' needs a fraction > 0")
            rows = np.flatnonzero(masks["train"])
            carved = split_rows(df["dialogue_id"].iloc[rows], "dialogue", seed=seed, source=source,
                                fractions={"valid": cfg.valid_fraction})["valid"]
            masks["valid"] = np.zeros(len(df), dtype=bool)
            masks["valid"][rows[carved]] = True
            masks["train"] = masks["train"] & ~masks["valid"]
    elif mode == "column":
        if "split" not in df.columns:
            raise ConfigError("split 'column': the data has no split column (set --split-column)")
        masks = split_rows(df["dialogue_id"], "column", column=df["split"].tolist(), source=source)
    else:   # "dialogue" (the config's choices allow nothing else)
        masks = split_rows(df["dialogue_id"], "dialogue", seed=seed, source=source,
                           fractions={"test": cfg.test_fraction, "valid": cfg.valid_fraction})
    return {"train": masks["train"], "validation": masks["valid"], "test": masks["test"]}, mode


@dataclass
class VADSplits:
    """All rows (labeled or not) and the labeled train/validation/test ``datasets.Dataset``s."""

    frame: pd.DataFrame
    datasets: "object"  # datasets.DatasetDict with train / validation / test
    mode: str
    test_is_validation: bool
    fmt: str
    sessions: dict | None = None   # split -> the sessions its labeled utterances come from (session splits)


def build_splits(cfg, seed: int = 0) -> VADSplits:
    """Read ``cfg.path`` (an UtteranceDataConfig), split it, return labeled splits as ``datasets.Dataset``s.

    The ``DatasetDict`` keys are ``train``, ``validation`` (the valid split, under the
    name ``datasets`` uses) and ``test``.
    """
    df, fmt = load_frame_cached(cfg, require_labels=True)     # IEMOCAP / EmoBank parsed once per content
    default_mode = SOURCES[fmt]["split"]
    masks, mode = assign_splits(df, cfg, seed=seed, default_mode=default_mode)
    test_is_val = bool((masks["validation"] & masks["test"]).any())
    lab = labeled_mask(df)
    keep = ["utterance_id", "dialogue_id", "text", "emotion"] + list(VAD_COLUMNS)
    out = {}
    for name in ("train", "validation", "test"):
        rows = masks[name] & lab
        part = df.loc[rows, keep].reset_index(drop=True)
        part["dialogue_id"] = part["dialogue_id"].astype(str)
        part["emotion"] = ["" if pd.isna(e) else str(e) for e in part["emotion"]]   # "" = no emotion label
        if len(part) == 0:
            what = {"session": "sessions", "column": "split value", "dialogue": "dialogue fraction"}[mode]
            raise ConfigError(
                f"--path {cfg.path}: the {name} split has no labeled utterances (check the {what}; "
                f"e.g. IEMOCAP session 5 is text-only in some copies: use --test-sessions 4 or "
                f"--leave-one-session-out 4)")
        out[name] = Dataset.from_pandas(part, preserve_index=False)
    logger.info("data %s (%s): %d rows, %d labeled; split by %s: train %d, validation %d, test %d%s",
                cfg.path, fmt, len(df), int(lab.sum()), mode, len(out["train"]), len(out["validation"]),
                len(out["test"]), " (test = validation)" if test_is_val else "")
    sessions = ({name: sorted(int(x) for x in set(df.loc[masks[name] & lab, "session"]))
                 for name in ("train", "validation", "test")} if mode == "session" else None)
    return VADSplits(frame=df, datasets=DatasetDict(out), mode=mode, test_is_validation=test_is_val, fmt=fmt,
                     sessions=sessions)


def read_prediction_input(path: str | Path, text_column: str = "text", id_column: str = "",
                          dialogue_column: str = "") -> pd.DataFrame:
    """Texts to predict: an IEMOCAP root, a .txt (one per line) or a table; columns utterance_id, text."""
    path = Path(path)
    if path.is_dir():
        df = read_iemocap(path)
    elif path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        kept = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
        df = pd.DataFrame({"utterance_id": [f"line{i:06d}" for i, _ in kept], "text": [t for _, t in kept]})
    elif path.is_file():
        df = read_table(path, text=text_column, id=id_column, dialogue=dialogue_column, require_labels=False)
    else:
        raise FileNotFoundError(f"--input {path}: no such file or folder")
    return df
