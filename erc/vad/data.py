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
from erc.data.registry import CLASS_SETS, IEMOCAP_TO_SENTIMENT, ClassSet, get_spec
from erc.data.splits import session_lists_leave_one_out, split_rows
from erc.data.utterance_dataset import load_frame_cached
from erc.data.utterances import COLUMNS, SOURCES, VAD_COLUMNS, read_iemocap, read_table

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- frames
def corpus_frame(dataset: str, path: str | None, seed: int = 0, valid_fraction: float = 0.1) -> pd.DataFrame:
    """A registered dialogue corpus (:mod:`erc.data.readers`) as the common utterance frame.

    Emotion and sentiment are the registry's label names (``-1`` = none), V/A/D are NaN, ``split``
    is the corpus's own (train / validation / test); a corpus without its own validation dialogues
    gets a seeded ``valid_fraction`` of its training dialogues (the registry's ``valid_source``).
    """
    from erc.data.readers import read_corpus   # the readers import this layer's utterance readers

    spec = get_spec(dataset)
    corpus = read_corpus(spec, None if path in (None, "", "synthetic") else path)
    split_of = {d: name for name, ids in corpus.splits.items() for d in ids}
    if "valid" not in corpus.splits:
        train = corpus.splits["train"]
        carved = split_rows(pd.Series(train), "dialogue", seed=seed, source=corpus.source,
                            fractions={"valid": valid_fraction})["valid"]
        split_of.update({d: "valid" for d, c in zip(train, carved) if c})
    rows = []
    for dlg in corpus.dialogues.values():
        if dlg.texts is None:
            raise ConfigError(f"field 'dataset': {corpus.source}: dataset {spec.name!r} has no transcripts "
                              "to fine-tune on")
        n = len(dlg)
        uids = dlg.utterance_ids or [f"{dlg.dialogue_id}_{i}" for i in range(n)]
        sents = dlg.sentiments if dlg.sentiments is not None else np.full(n, -1)
        for i in range(n):
            rows.append({
                "utterance_id": str(uids[i]), "dialogue_id": str(dlg.dialogue_id), "session": -1,
                "speaker": dlg.speakers[i] if dlg.speakers else None,
                "start": float(dlg.start[i]) if dlg.start is not None else np.nan,
                "end": float(dlg.end[i]) if dlg.end is not None else np.nan,
                "text": dlg.texts[i],
                "emotion": spec.label_names[dlg.labels[i]] if dlg.labels[i] >= 0 else None,
                "sentiment": spec.sentiment_names[sents[i]] if sents[i] >= 0 else None,
                "valence": np.nan, "arousal": np.nan, "dominance": np.nan,
                "split": {"train": "train", "valid": "validation", "test": "test"}[split_of[dlg.dialogue_id]]})
    return pd.DataFrame(rows, columns=[*COLUMNS, "sentiment", "split"])


def load_vad_frame(cfg, seed: int = 0, require_labels: bool = True) -> tuple[pd.DataFrame, str]:
    """The utterance frame of ``cfg`` (an UtteranceDataConfig) and its format, with a ``sentiment`` column.

    ``cfg.dataset`` set: the registered corpus (:func:`corpus_frame`; the format is the dataset's
    name). Otherwise ``cfg.path`` read by ``cfg.format``; sentiment then comes from the IEMOCAP
    emotion codes (IEMOCAP, synthetic), none elsewhere.
    """
    if getattr(cfg, "dataset", ""):
        return corpus_frame(cfg.dataset, cfg.path, seed=seed, valid_fraction=cfg.valid_fraction), cfg.dataset
    df, fmt = load_frame_cached(cfg, require_labels=require_labels)
    if "sentiment" not in df.columns:
        df = df.copy()
        df["sentiment"] = [IEMOCAP_TO_SENTIMENT.get(e) if isinstance(e, str) else None for e in df["emotion"]]
    return df, fmt


def default_split(fmt: str) -> str:
    """How a source splits by default (a registered corpus: by its own split column)."""
    return SOURCES[fmt]["split"] if fmt in SOURCES else "column"


def emotion_class_set(name: str, dataset: str = "") -> ClassSet:
    """A registry class set, or ``dataset``: the registered dataset's own emotion labels."""
    if name != "dataset":
        return CLASS_SETS[name]
    spec = get_spec(dataset)
    return ClassSet(spec.name, tuple(spec.label_names), {e: e for e in spec.label_names},
                    f"the emotion labels of {spec.name}")


def dialogue_folds(dialogue_ids, k: int, seed: int) -> list[list[str]]:
    """``k`` near-even folds of the distinct ``dialogue_ids`` (sorted, then a permutation seeded by ``seed``)."""
    ids = np.asarray(sorted({str(d) for d in dialogue_ids}), dtype=object)
    if not 2 <= k <= len(ids):
        raise ConfigError(f"field 'train_dialogue_folds': expected 2 to {len(ids)} folds of the training "
                          f"dialogues, got {k}")
    perm = np.random.default_rng([int(seed), 7919]).permutation(len(ids))
    return [sorted(str(d) for d in ids[part]) for part in np.array_split(perm, k)]


# --------------------------------------------------------------------------- splits
def labeled_mask(df: pd.DataFrame) -> np.ndarray:
    return np.isfinite(df[list(VAD_COLUMNS)].to_numpy(dtype=np.float64)).all(axis=1)


def target_mask(df: pd.DataFrame, target: str, emotion_set: ClassSet | None = None) -> np.ndarray:
    """Rows labeled for ``target``: finite V/A/D, an emotion inside ``emotion_set``, a sentiment."""
    if target == "vad":
        return labeled_mask(df)
    if target == "emotion":
        return np.array([isinstance(e, str) and e in emotion_set.mapping for e in df["emotion"]], dtype=bool)
    col = df["sentiment"] if "sentiment" in df.columns else pd.Series([None] * len(df))
    return np.array([isinstance(v, str) and bool(v) for v in col], dtype=bool)


def training_mask(df: pd.DataFrame, targets=("vad",), emotion_set: ClassSet | None = None) -> np.ndarray:
    """The rows a fine-tuning uses: V/A/D-labeled rows when vad is a target (the other heads learn from
    those rows' labels, as before), else rows labeled for any of the targets."""
    if "vad" in targets:
        return labeled_mask(df)
    out = np.zeros(len(df), dtype=bool)
    for t in targets:
        out |= target_mask(df, t, emotion_set)
    return out


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
    held_out: list | None = None   # training dialogues left out (train_dialogue_folds / held_out_fold)


def held_out_dialogues(df: pd.DataFrame, train_rows: np.ndarray, cfg, seed: int) -> list[str]:
    """The training dialogues fold ``cfg.held_out_fold`` of ``cfg.train_dialogue_folds`` leaves out ([] = none)."""
    k, fold = int(getattr(cfg, "train_dialogue_folds", 0)), int(getattr(cfg, "held_out_fold", 0))
    if not (k or fold):
        return []
    if not 1 <= fold <= k:
        raise ConfigError(f"field 'held_out_fold': expected 1 to train_dialogue_folds ({k}), got {fold}")
    return dialogue_folds(df.loc[train_rows, "dialogue_id"].astype(str), k, seed)[fold - 1]


class _AnyLabel(dict):
    """A class-set mapping that holds every label (for "does the data have emotions at all")."""

    def __contains__(self, key) -> bool:
        return bool(key)


def _source_name(cfg, fmt: str) -> str:
    return f"dataset {cfg.dataset}" if getattr(cfg, "dataset", "") else f"--path {cfg.path} ({fmt})"


def require_targets(df: pd.DataFrame, cfg, fmt: str, targets, emotion_set: ClassSet | None = None) -> None:
    """Refuse a target the data has no label for, naming the data, the target and what it has."""
    for t in targets:
        if not target_mask(df, t, emotion_set).any():
            has = [n for n in ("vad", "emotion", "sentiment") if n != t and target_mask(
                df, n, ClassSet("any", (), _AnyLabel(), "")).any()]
            what = {"vad": "V/A/D labels", "sentiment": "sentiment labels",
                    "emotion": f"emotion label of the class set {getattr(emotion_set, 'name', '?')}"}[t]
            raise ConfigError(f"field 'targets': {_source_name(cfg, fmt)} has no {what}, so target {t!r} "
                              f"cannot be trained on it (it has: {', '.join(has) or 'no labels'})")


def check_targets(cfg, targets, emotion_set: ClassSet | None = None, seed: int = 0) -> None:
    """:func:`require_targets` on the data of ``cfg`` (an UtteranceDataConfig), before a run writes anything."""
    df, fmt = load_vad_frame(cfg, seed=seed, require_labels="vad" in targets)
    require_targets(df, cfg, fmt, targets, emotion_set)


def build_splits(cfg, seed: int = 0, targets=("vad",), emotion_set: ClassSet | None = None) -> VADSplits:
    """Read ``cfg.path`` (an UtteranceDataConfig), split it, return labeled splits as ``datasets.Dataset``s.

    The ``DatasetDict`` keys are ``train``, ``validation`` (the valid split, under the
    name ``datasets`` uses) and ``test``. Rows are those labeled for ``targets``
    (:func:`training_mask`); a target the training split has no label for is an error.
    """
    # IEMOCAP / EmoBank parsed once per content
    df, fmt = load_vad_frame(cfg, seed=seed, require_labels="vad" in targets)
    default_mode = default_split(fmt)
    masks, mode = assign_splits(df, cfg, seed=seed, default_mode=default_mode)
    held = held_out_dialogues(df, masks["train"], cfg, seed)
    if held:
        masks["train"] = masks["train"] & ~df["dialogue_id"].astype(str).isin(held).to_numpy()
    test_is_val = bool((masks["validation"] & masks["test"]).any())
    require_targets(df, cfg, fmt, targets, emotion_set)
    lab = training_mask(df, targets, emotion_set)
    keep = ["utterance_id", "dialogue_id", "text", "emotion", "sentiment"] + list(VAD_COLUMNS)
    out = {}
    for name in ("train", "validation", "test"):
        rows = masks[name] & lab
        part = df.loc[rows, keep].reset_index(drop=True)
        part["dialogue_id"] = part["dialogue_id"].astype(str)
        part["emotion"] = ["" if pd.isna(e) else str(e) for e in part["emotion"]]   # "" = no emotion label
        part["sentiment"] = ["" if pd.isna(e) else str(e) for e in part["sentiment"]]
        if len(part) == 0:
            what = {"session": "sessions", "column": "split value", "dialogue": "dialogue fraction"}[mode]
            raise ConfigError(
                f"--path {cfg.path}: the {name} split has no labeled utterances (check the {what}; "
                f"e.g. IEMOCAP session 5 is text-only in some copies: use --test-sessions 4 or "
                f"--leave-one-session-out 4)")
        out[name] = Dataset.from_pandas(part, preserve_index=False)
    logger.info("data %s (%s): %d rows, %d labeled; split by %s: train %d, validation %d, test %d%s%s",
                cfg.path, fmt, len(df), int(lab.sum()), mode, len(out["train"]), len(out["validation"]),
                len(out["test"]), " (test = validation)" if test_is_val else "",
                f"; {len(held)} training dialogues held out (fold {cfg.held_out_fold})" if held else "")
    sessions = ({name: sorted(int(x) for x in set(df.loc[masks[name] & lab, "session"]))
                 for name in ("train", "validation", "test")} if mode == "session" else None)
    return VADSplits(frame=df, datasets=DatasetDict(out), mode=mode, test_is_validation=test_is_val, fmt=fmt,
                     sessions=sessions, held_out=held or None)


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
