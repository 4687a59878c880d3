"""Parsed utterance corpora as a ``datasets.DatasetDict`` with typed features, cached by content.

    from erc.data.utterance_dataset import load_utterance_dataset
    dsd = load_utterance_dataset("/data/IEMOCAP_full_release")       # or "synthetic", emobank.csv, a table
    dsd["all"].features["emotion"]                                    # ClassLabel(names=["hap", "sad", ...])
    dsd["all"].filter(lambda r: r["session"] in (1, 2, 3))

The readers of :mod:`erc.data.utterances` do the parsing; this module types their frame
(``ClassLabel`` for ``emotion`` and ``sentiment``, ``int32`` sessions, ``float64`` V/A/D,
ids and texts as strings) and caches the result with ``DatasetDict.save_to_disk`` under a key
made of the CONTENT of every source file (SHA-256), the reader settings and the code of the
reader and of this module.
A second call with unchanged sources loads the Arrow files (memory-mapped) without parsing;
editing a source file, even keeping its size and time stamp, parses again. Touching a file
(time stamp only) does not.

Splits: the data's own split column where it has one (EmoBank, tables with ``split_column``),
named as the project names them (``train``, ``validation``, ``test``); otherwise one split
``all`` with the ``session`` column, so the project's session or dialogue split
(:mod:`erc.vad.data`) stays the only place splits are decided.

Emotion ids: the IEMOCAP release codes, IEMOCAP-6 first in the COSMIC / GraphSmile order
(``hap sad neu ang exc fru``, so ids 0-5 are that label set's ids), then ``sur fea dis oth``
and ``xxx`` (annotated, no majority); codes outside that list (other tables) follow, sorted.
-1 means no emotion label. Sentiment comes from the registry's emotion-to-sentiment map
(-1 where it has none).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import datasets
import numpy as np
import pandas as pd

from erc.core.config import ConfigError
from erc.core.io import atomic_replace_dir
from erc.data import utterances
from erc.data.registry import IEMOCAP6_EMOTIONS, IEMOCAP_TO_SENTIMENT, POLARITY

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
EMOTIONS = (*IEMOCAP6_EMOTIONS, "sur", "fea", "dis", "oth", "xxx")
TABLE_COLUMNS = ("text", "valence", "arousal", "dominance", "id", "dialogue", "split")
DEFAULT_CACHE = Path.home() / ".cache" / "erc-toolkit" / "datasets"
CACHE_ENV = "ERC_DATASETS_CACHE"      # overrides DEFAULT_CACHE (the tests point it at a temporary folder)


def default_cache() -> Path:
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else DEFAULT_CACHE


WARNINGS_FILE = "parse_warnings.json"


class _capture_warnings:
    """Collect the WARNING messages ``log`` emits inside the block (they are still emitted)."""

    def __init__(self, log: logging.Logger):
        self.log, self.messages = log, []
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.messages.append(record.getMessage())

    def __enter__(self) -> list[str]:
        self.log.addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc) -> None:
        self.log.removeHandler(self.handler)


def _read_warnings(folder: Path) -> list[str]:
    path = folder / WARNINGS_FILE
    try:
        return [str(m) for m in json.loads(path.read_text(encoding="utf-8"))] if path.is_file() else []
    except (ValueError, OSError):
        return []


def frame_from_dataset_dict(dsd: datasets.DatasetDict) -> pd.DataFrame:
    """The reader's frame back from a typed ``DatasetDict`` (emotion names, None where unlabeled; a
    ``split`` column when the data had its own splits)."""
    parts = []
    for name, ds in dsd.items():
        names = ds.features["emotion"].names
        df = ds.to_pandas()
        df["emotion"] = pd.Series([names[i] if i >= 0 else None for i in df["emotion"].astype(int)],
                                  index=df.index, dtype=object)      # None where unlabeled, as the readers
        if name != "all":
            df["split"] = name
        parts.append(df.drop(columns=["sentiment"]))
    df = pd.concat(parts, ignore_index=True)
    for col in ("utterance_id", "dialogue_id", "text"):
        df[col] = df[col].astype(str)
    df["speaker"] = pd.Series([None if pd.isna(v) else str(v) for v in df["speaker"]], index=df.index, dtype=object)
    df["session"] = df["session"].astype(np.int64)
    return df


def load_frame_cached(cfg, require_labels: bool = True, cache_dir: str | Path | None = None
                      ) -> tuple[pd.DataFrame, str]:
    """:func:`erc.data.utterances.load_frame` through the content-hash cache for the IEMOCAP release
    and EmoBank (parsed once per content; the parser's warnings are repeated on every load);
    the synthetic corpus and tables are read directly."""
    fmt = cfg.format if cfg.format != "auto" else utterances.detect_format(cfg.path)
    if fmt not in ("iemocap", "emobank"):
        return utterances.load_frame(cfg, require_labels=require_labels)
    return frame_from_dataset_dict(load_utterance_dataset(cfg.path, cache_dir=cache_dir, data_format=fmt)), fmt


def source_files(source: str, data_format: str) -> list[Path]:
    """The files the reader of ``data_format`` reads for ``source`` (none for the synthetic corpus)."""
    if data_format == "synthetic":
        return []
    root = Path(source)
    if data_format == "iemocap":
        sessions = sorted(p for p in root.glob("Session*") if p.is_dir())
        return sorted(f for s in sessions for sub in ("transcriptions", "EmoEvaluation")
                      for f in (s / "dialog" / sub).glob("*.txt") if f.is_file())
    return [root]


def content_key(source: str, data_format: str, reader_args: dict) -> str:
    """SHA-256 over the reader code (and this module's), its arguments and every source file's path and bytes."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "format": data_format, "args": reader_args},
                        sort_keys=True).encode())
    readers = [Path(utterances.__file__), Path(__file__)]    # a changed parser or typing parses again
    if data_format == "synthetic":
        readers.append(readers[0].with_name("synthetic.py"))
    for code in readers:
        h.update(code.read_bytes())
    base = Path(source)
    for f in source_files(source, data_format):
        rel = f.relative_to(base) if base.is_dir() else Path(f.name)
        h.update(str(rel).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def _read(source: str, data_format: str, reader_args: dict) -> pd.DataFrame:
    """The common frame of :mod:`erc.data.utterances` (readers called through the module)."""
    if data_format == "synthetic":
        return utterances.read_synthetic(**reader_args)
    if data_format == "iemocap":
        return utterances.read_iemocap(source)
    if data_format == "emobank":
        return utterances.read_emobank(source)
    return utterances.read_table(source, require_labels=False, **reader_args)


def emotion_names(values: Iterable) -> list[str]:
    """:data:`EMOTIONS`, then any other codes present, sorted."""
    seen = {str(v) for v in values if not pd.isna(v)}
    return [*EMOTIONS, *sorted(seen - set(EMOTIONS))]


def features_for(emotions: list[str]) -> datasets.Features:
    return datasets.Features({
        "utterance_id": datasets.Value("string"),
        "dialogue_id": datasets.Value("string"),
        "session": datasets.Value("int32"),          # -1 where the data has no sessions
        "speaker": datasets.Value("string"),
        "start": datasets.Value("float64"),
        "end": datasets.Value("float64"),
        "text": datasets.Value("string"),
        "emotion": datasets.ClassLabel(names=emotions),
        "sentiment": datasets.ClassLabel(names=list(POLARITY)),
        "valence": datasets.Value("float64"),        # null where unlabeled
        "arousal": datasets.Value("float64"),
        "dominance": datasets.Value("float64"),
    })


def to_dataset_dict(df: pd.DataFrame, description: str) -> datasets.DatasetDict:
    """Type the reader's frame; split by its ``split`` column when it has one, else one split ``all``."""
    names = emotion_names(df["emotion"])
    index = {n: i for i, n in enumerate(names)}
    emo = [None if pd.isna(e) else str(e) for e in df["emotion"]]

    def optional_str(col: str) -> list[str | None]:
        return [None if pd.isna(v) else str(v) for v in df[col]]

    def optional_float(col: str) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in df[col].to_numpy(dtype=np.float64)]

    table = {
        "utterance_id": df["utterance_id"].astype(str).tolist(),
        "dialogue_id": df["dialogue_id"].astype(str).tolist(),
        "session": df["session"].astype(np.int64).tolist(),
        "speaker": optional_str("speaker"),
        "start": optional_float("start"), "end": optional_float("end"),
        "text": df["text"].astype(str).tolist(),
        "emotion": [-1 if e is None else index[e] for e in emo],
        "sentiment": [POLARITY.index(IEMOCAP_TO_SENTIMENT[e]) if e in IEMOCAP_TO_SENTIMENT else -1 for e in emo],
        **{c: optional_float(c) for c in utterances.VAD_COLUMNS},
    }
    features = features_for(names)
    info = datasets.DatasetInfo(description=description, features=features)
    if "split" in df.columns and df["split"].notna().all():
        split = df["split"].astype(str).to_numpy()
        order = [*dict.fromkeys(utterances.SPLIT_NAMES.values()), *sorted(set(split))]   # train, validation, test
        parts = {name: np.flatnonzero(split == name) for name in dict.fromkeys(order) if name in set(split)}
    else:
        parts = {"all": np.arange(len(df))}
    return datasets.DatasetDict({
        name: datasets.Dataset.from_dict({k: [v[i] for i in rows] for k, v in table.items()},
                                         features=features, info=info)
        for name, rows in parts.items()})


def load_utterance_dataset(source: str, cache_dir: str | Path | None = None, data_format: str = "auto",
                           synthetic_dialogues: int = 40, synthetic_seed: int = 0,
                           **table_columns: str) -> datasets.DatasetDict:
    """The corpus at ``source`` as a typed ``DatasetDict``, parsed once per content (see module docstring).

    ``source``: ``synthetic``, an IEMOCAP release root, EmoBank's ``emobank.csv`` or any CSV /
    JSONL / Parquet table; ``data_format`` as ``--data-format`` (auto-detected by default).
    ``table_columns``: the table reader's column names (``text``, ``valence``, ``arousal``,
    ``dominance``, ``id``, ``dialogue``, ``split``). ``cache_dir`` defaults to
    ``$ERC_DATASETS_CACHE``, else ``~/.cache/erc-toolkit/datasets``.
    """
    fmt = utterances.detect_format(source) if data_format == "auto" else data_format
    if fmt not in utterances.SOURCES:
        raise ConfigError(f"data_format: expected auto or one of {sorted(utterances.SOURCES)}, "
                                     f"got {data_format!r}")
    bad = sorted(set(table_columns) - set(TABLE_COLUMNS))
    if bad or (table_columns and fmt != "table"):
        raise ConfigError(f"{source}: column arguments {sorted(table_columns)} apply to tables only "
                                     f"and must be among {list(TABLE_COLUMNS)}")
    reader_args = ({"n_dialogues": synthetic_dialogues, "seed": synthetic_seed} if fmt == "synthetic"
                   else dict(sorted(table_columns.items())))
    key = content_key(source, fmt, reader_args)
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    folder = cache / f"{fmt}-{key[:24]}"
    if (folder / "dataset_dict.json").is_file():
        logger.info("%s: parsed corpus loaded from the cache %s", source, folder)
        for message in _read_warnings(folder):   # what the parser said about these files, said again
            logger.warning("%s (from the cached parse)", message)
        return datasets.load_from_disk(str(folder))
    with _capture_warnings(utterances.logger) as said:
        df = _read(source, fmt, reader_args)
    dsd = to_dataset_dict(df, f"{fmt} corpus read from {source} by erc.data.utterances (content sha256 {key})")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        dsd.save_to_disk(str(tmp))
        (tmp / WARNINGS_FILE).write_text(json.dumps(said, indent=1), encoding="utf-8")
        atomic_replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("%s: parsed %d utterances, cached in %s", source, len(df), folder)
    return datasets.load_from_disk(str(folder))
