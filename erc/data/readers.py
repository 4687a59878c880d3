"""Readers: one function per ``layout`` in the registry, each returning a checked :class:`RawCorpus`.

Pickle layouts differ only in their field lists (data in :mod:`erc.data.registry`),
so one pickle reader serves GraphSmile IEMOCAP-6/-4, MELD, CMU-MOSEI,
DialogueGCN IEMOCAP and the COSMIC pickles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from erc.core.paths import data_dir, data_path
from erc.data.registry import DATASETS, DatasetSpec
from erc.data.splits import split_ids, split_rows
from erc.data.synthetic import generate_corpus
from erc.data.utterances import read_iemocap
from erc.core.config import ConfigError
from erc.data.safe_pickle import load_pickle
from erc.data.validate import (DataValidationError, as_matrix, check_disjoint_splits, check_labels,
                             check_lengths, fail, rows_of)

SPLIT_FIELDS = {"train": "trainVid", "valid": "validVid", "test": "testVid"}


@dataclass
class RawDialogue:
    """One dialogue as read from a file, before modality selection and normalisation."""

    dialogue_id: str
    speakers: list[str]
    labels: np.ndarray                                   # (n,) int64, -1 = unlabeled
    sentiments: np.ndarray | None = None                 # (n,) int64
    texts: list[str] | None = None
    utterance_ids: list[str] | None = None
    text_layers: list[np.ndarray] = field(default_factory=list)   # each (n, d)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # audio / visual (n, d)
    start: np.ndarray | None = None                       # (n,) seconds
    end: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class RawCorpus:
    spec: DatasetSpec
    source: str
    dialogues: dict[str, RawDialogue]                    # in file order
    splits: dict[str, list[str]]                         # train, test and (if the file has them) valid

    @property
    def num_utterances(self) -> int:
        return sum(len(d) for d in self.dialogues.values())


def bin_scores(scores: np.ndarray, bins) -> np.ndarray:
    """Index of the interval ``(low, high, low_closed, high_closed)`` holding each score."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(len(scores), -1, dtype=np.int64)
    for k, (lo, hi, lo_closed, hi_closed) in enumerate(bins):
        above = scores >= lo if lo_closed else scores > lo
        below = scores <= hi if hi_closed else scores < hi
        hit = above & below
        if (hit & (out >= 0)).any():
            raise ValueError(f"score bins overlap at {scores[hit & (out >= 0)][0]}")
        out[hit] = k
    return out


def sentiments_from_labels(labels: np.ndarray, spec: DatasetSpec) -> np.ndarray | None:
    """Map emotion indices to sentiment indices with the registry's map (-1 stays -1)."""
    if spec.emotion_to_sentiment is None:
        return None
    sidx = {name: i for i, name in enumerate(spec.sentiment_names)}
    table = np.array([sidx[spec.emotion_to_sentiment[e]] for e in spec.label_names], dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    ok = labels >= 0
    out[ok] = table[labels[ok]]
    return out


def _repair(text: str, codec: str | None) -> str:
    """Undo ``codec`` bytes decoded as latin-1 (e.g. cp1252 '\\x92' -> '’'); unchanged if not repairable."""
    if codec is None:
        return text
    try:
        return text.encode("latin-1").decode(codec)
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _speaker_names(value, source: str, dlg: str, onehot: bool) -> list[str]:
    rows = rows_of(value, source, dlg, "videoSpeakers", "speaker")
    if onehot or (rows and np.ndim(rows[0]) == 1):
        try:
            arr = np.asarray(rows, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 2 or arr.shape[1] == 0:
            raise fail(source, dlg, "videoSpeakers", "expected one one-hot vector (all of one length) per utterance")
        return [f"S{int(i)}" for i in arr.argmax(axis=1)]
    if not all(isinstance(s, (str, int, np.str_, np.integer)) for s in rows):
        bad = next(s for s in rows if not isinstance(s, (str, int, np.str_, np.integer)))
        raise fail(source, dlg, "videoSpeakers", f"expected a speaker name per utterance, got {type(bad).__name__}")
    return [str(s) for s in rows]


def _numbers(value, source: str, dlg: str, field: str) -> np.ndarray:
    """A per-utterance list of numbers as float64 (n,)."""
    rows = rows_of(value, source, dlg, field, "number")
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 1:
        raise fail(source, dlg, field, "expected one number per utterance")
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise fail(source, dlg, field, f"non-finite value at utterance {i}")
    return arr


def _class_indices(value, source: str, dlg: str, field: str, num_classes: int) -> np.ndarray:
    arr = _numbers(value, source, dlg, field)
    if not np.all(arr == np.round(arr)):
        raise fail(source, dlg, field, "expected integer class indices, got fractional values")
    labels = arr.astype(np.int64)
    check_labels(source, dlg, field, labels, num_classes)
    return labels


def _labels(value, source: str, dlg: str, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray | None]:
    if spec.score_class_bins is not None:
        arr = _numbers(value, source, dlg, "videoLabels")
        return bin_scores(arr, spec.score_class_bins), bin_scores(arr, spec.score_sentiment_bins)
    return _class_indices(value, source, dlg, "videoLabels", spec.num_classes), None


def _texts(value, source: str, dlg: str, codec: str | None) -> list[str]:
    rows = rows_of(value, source, dlg, "videoSentence", "sentence")
    bad = [s for s in rows if not isinstance(s, str)]
    if bad:
        raise fail(source, dlg, "videoSentence", f"expected a string per utterance, got {type(bad[0]).__name__}")
    return [_repair(str(s), codec) for s in rows]


def read_pickle(path: str | Path, spec: DatasetSpec) -> RawCorpus:
    """Read a dialogue pickle whose tuple members are ``spec.fields``.

    Loaded with :func:`erc.data.safe_pickle.load_pickle` (latin-1; builtins and numpy/pandas
    data only, any other global is refused before it runs).
    """
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file (dataset {spec.name})")
    obj = load_pickle(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != len(spec.fields):
        got = f"a {len(obj)}-tuple" if isinstance(obj, (tuple, list)) else type(obj).__name__
        raise DataValidationError(
            f"{source}: expected a {len(spec.fields)}-tuple ({', '.join(spec.fields)}) for dataset "
            f"{spec.name!r}, got {got}")
    f = dict(zip(spec.fields, obj))
    for name, value in f.items():
        if name.endswith("Vid"):
            if (not isinstance(value, (list, tuple, set, frozenset, np.ndarray))
                    or (isinstance(value, np.ndarray) and value.ndim != 1)):
                raise fail(source, None, name, f"expected a list of dialogue ids, got {type(value).__name__}")
            bad = [v for v in value if not isinstance(v, (str, int, np.str_, np.integer))]
            if bad:
                raise fail(source, None, name, f"expected dialogue ids (strings), got {bad[0]!r}")
        elif not isinstance(value, dict):
            raise fail(source, None, name, f"expected a dict of dialogue id -> per-utterance values, "
                                           f"got {type(value).__name__}")
    splits = {name: [str(v) for v in f[key]] for name, key in SPLIT_FIELDS.items() if key in f}
    for name, key in SPLIT_FIELDS.items():
        if name in splits and len(set(splits[name])) != len(splits[name]):
            dup = next(v for v in splits[name] if splits[name].count(v) > 1)
            raise fail(source, dup, key, "dialogue listed twice")
    check_disjoint_splits(source, {SPLIT_FIELDS[k]: v for k, v in splits.items()})
    labels_by_key = {str(k): k for k in f["videoLabels"]}
    text_fields = [k for k in spec.fields if k.startswith("videoText")]
    dialogues: dict[str, RawDialogue] = {}
    for split_name, ids in splits.items():
        for dlg in ids:
            if dlg not in labels_by_key:
                raise fail(source, dlg, SPLIT_FIELDS[split_name], "id has no entry in videoLabels")
            key = labels_by_key[dlg]

            def get(name):
                try:
                    return f[name][key]
                except (KeyError, TypeError):
                    raise fail(source, dlg, name, "missing entry for this dialogue") from None

            labels, sentiments = _labels(get("videoLabels"), source, dlg, spec)
            speakers = _speaker_names(get("videoSpeakers"), source, dlg, spec.speakers_are_onehot)
            lengths = {"videoLabels": len(labels), "videoSpeakers": len(speakers)}
            texts = None
            if "videoSentence" in f:
                texts = _texts(get("videoSentence"), source, dlg, spec.sentence_codec)
                lengths["videoSentence"] = len(texts)
            uids = None
            if spec.has_utterance_ids and "videoIDs" in f:
                raw_ids = get("videoIDs")
                if isinstance(raw_ids, (list, tuple, np.ndarray)):
                    uids = [str(u) for u in raw_ids]
                    lengths["videoIDs"] = len(uids)
            if "videoSentiments" in f:
                sentiments = _class_indices(get("videoSentiments"), source, dlg, "videoSentiments",
                                            len(spec.sentiment_names))
                lengths["videoSentiments"] = len(sentiments)
            layers = []
            for name in text_fields:
                m = as_matrix(get(name), source, dlg, name, spec.dims.get("text"))
                lengths[name] = len(m)
                layers.append(m)
            feats = {}
            for mod, name in (("audio", "videoAudio"), ("visual", "videoVisual")):
                if name in f:
                    feats[mod] = as_matrix(get(name), source, dlg, name, spec.dims.get(mod))
                    lengths[name] = len(feats[mod])
            check_lengths(source, dlg, lengths)
            if sentiments is None:
                sentiments = sentiments_from_labels(labels, spec)
            dialogues[dlg] = RawDialogue(dlg, speakers, labels, sentiments, texts, uids, layers, feats)
    return RawCorpus(spec, source, dialogues, splits)


def _meld_seconds(col, source: str = "", dlg: str | None = None, field: str = "StartTime") -> np.ndarray:
    """MELD ``HH:MM:SS,mmm`` -> seconds; anything else is an error naming file, dialogue and column."""
    out = []
    for v in col:
        hms, _, ms = str(v).strip().partition(",")
        try:
            h, m, s = (float(x) for x in hms.split(":"))
            out.append(h * 3600 + m * 60 + s + (float(ms) / 1000.0 if ms else 0.0))
        except ValueError:
            raise fail(source, dlg, field, f"expected a time HH:MM:SS,mmm, got {v!r}") from None
    return np.asarray(out, dtype=np.float64)


MELD_CSV_SPLITS = {"train": "train_sent_emo.csv", "valid": "dev_sent_emo.csv", "test": "test_sent_emo.csv"}
MELD_CSV_COLUMNS = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
                    "StartTime", "EndTime")


def read_meld_tables(folder: str | Path) -> dict[str, "object"]:
    """The three MELD CSVs as DataFrames (keys train/valid/test), columns checked."""
    folder = Path(folder)
    out = {}
    for split, name in MELD_CSV_SPLITS.items():
        p = folder / name
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (MELD CSV folder needs {', '.join(MELD_CSV_SPLITS.values())})")
        try:
            df = pd.read_csv(p, encoding="utf-8", keep_default_na=False)
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise DataValidationError(f"{p}: not a readable MELD CSV ({type(exc).__name__}: {detail})") from None
        missing = [c for c in MELD_CSV_COLUMNS if c not in df.columns]
        if missing:
            raise DataValidationError(f"{p}: missing column(s) {missing}; expected {list(MELD_CSV_COLUMNS)}")
        out[split] = df
    return out


def read_meld_csv(path: str | Path, spec: DatasetSpec) -> RawCorpus:
    """MELD's ``{train,dev,test}_sent_emo.csv``; dialogue ids become ``{split}_{Dialogue_ID}``."""
    tables = read_meld_tables(path)
    emo = {n: i for i, n in enumerate(spec.label_names)}
    sen = {n: i for i, n in enumerate(spec.sentiment_names)}
    dialogues, splits = {}, {}
    for split, df in tables.items():
        source = str(Path(path) / MELD_CSV_SPLITS[split])
        splits[split] = []
        for did, g in df.groupby("Dialogue_ID", sort=True):
            g = g.sort_values("Utterance_ID", kind="stable")
            dlg = f"{split}_{did}"
            for col, table in (("Emotion", emo), ("Sentiment", sen)):
                bad = [v for v in g[col] if v not in table]
                if bad:
                    raise fail(source, dlg, col, f"unknown value {bad[0]!r}; expected one of {list(table)}")
            labels = np.array([emo[v] for v in g["Emotion"]], dtype=np.int64)
            sents = np.array([sen[v] for v in g["Sentiment"]], dtype=np.int64)
            uids = [f"{dlg}_{u}" for u in g["Utterance_ID"]]
            dialogues[dlg] = RawDialogue(
                dlg, [str(s) for s in g["Speaker"]], labels, sents, [str(t) for t in g["Utterance"]], uids,
                start=_meld_seconds(g["StartTime"], source, dlg, "StartTime"),
                end=_meld_seconds(g["EndTime"], source, dlg, "EndTime"))
            splits[split].append(dlg)
    return RawCorpus(spec, str(path), dialogues, splits)


def _from_table(df, spec: DatasetSpec, source: str, features=None) -> RawCorpus:
    """Utterance table (erc.data.utterances.read_iemocap / synthetic) -> corpus; test = ``spec.test_sessions``."""
    emo = {n: i for i, n in enumerate(spec.label_names)}
    dialogues, sessions = {}, []
    for dlg, g in df.groupby("dialogue_id", sort=False):
        dlg = str(dlg)
        labels = np.array([emo.get(str(e), -1) for e in g["emotion"]], dtype=np.int64)
        feats = {}
        if features is not None:
            feats = {m: np.asarray(a[g.index.to_numpy()], dtype=np.float32) for m, a in features.items()}
            for m, a in feats.items():
                as_matrix(a, source, dlg, m, spec.dims.get(m))
        dialogues[dlg] = RawDialogue(
            dlg, [str(s) for s in g["speaker"]], labels, sentiments_from_labels(labels, spec),
            [str(t) for t in g["text"]], [str(u) for u in g["utterance_id"]], features=feats,
            start=g["start"].to_numpy(np.float64), end=g["end"].to_numpy(np.float64))
        sessions.append(int(g["session"].iloc[0]))
    ids = list(dialogues)
    masks = split_rows(ids, "session", sessions=sessions, session_lists={"train": None, "test": spec.test_sessions},
                       source=source)
    splits = split_ids(ids, masks)
    return RawCorpus(spec, source, dialogues, {"train": splits["train"], "test": splits["test"]})


def read_iemocap_release(path: str | Path, spec: DatasetSpec) -> RawCorpus:
    """IEMOCAP release root through the VAD stage's reader; emotions outside the 6 classes -> -1."""
    df = read_iemocap(path).reset_index(drop=True)
    return _from_table(df, spec, str(path))


def read_synthetic(path, spec: DatasetSpec, n_dialogues: int = 60, seed: int = 0) -> RawCorpus:
    """``erc.data.synthetic.generate_corpus(n_dialogues, seed=seed)``: audio, visual, timestamps; session 5 = test."""
    corpus = generate_corpus(n_dialogues=n_dialogues, seed=seed)
    df = corpus.utterances.reset_index(drop=True)
    return _from_table(df, spec, f"synthetic(n_dialogues={n_dialogues}, seed={seed})",
                       features={"audio": corpus.audio, "visual": corpus.visual})


READERS = {"pickle": read_pickle, "meld_csv": read_meld_csv, "iemocap_release": read_iemocap_release}


def read_corpus(spec: DatasetSpec, path: str | Path | None, *, synthetic_dialogues: int = 60,
                synthetic_seed: int = 0) -> RawCorpus:
    """Read ``path`` (or the registry's default under the data folder) with the spec's reader."""
    if spec.layout == "synthetic":
        return read_synthetic(path, spec, synthetic_dialogues, synthetic_seed)
    path = resolve_path(spec, path)
    return READERS[spec.layout](path, spec)


def resolve_path(spec: DatasetSpec, path: str | Path | None) -> Path:
    if path:
        return Path(path)
    if spec.default_path is None:
        raise ConfigError(f"field 'path': dataset {spec.name!r} has no default file; give --path")

    p = data_path(*spec.default_path)
    if p is None:
        root = data_dir()
        where = f"under {root}" if root else "(no data folder: ERC_DATA_DIR is unset and ../shared/data is absent)"
        raise FileNotFoundError(f"dataset {spec.name!r}: {'/'.join(spec.default_path)} not found {where}; "
                                "set ERC_DATA_DIR or give path")
    return p


def detect(path: str | Path) -> list[str]:
    """Registry names whose layout reads ``path`` (pickles by tuple length and field types)."""
    path = Path(path)
    if path.is_dir():
        if all((path / n).is_file() for n in MELD_CSV_SPLITS.values()):
            return ["meld_csv"]
        if any(path.glob("Session*/dialog/transcriptions")):
            return ["iemocap_release"]
        return []
    if path.suffix == ".csv" and path.name.endswith("_sent_emo.csv"):
        return ["meld_csv"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    obj = load_pickle(path)
    if not isinstance(obj, (tuple, list)):
        return []
    matches = []
    for name, spec in DATASETS.items():
        if spec.layout != "pickle" or len(spec.fields) != len(obj):
            continue
        if not _dims_match(spec, dict(zip(spec.fields, obj))):
            continue
        matches.append(name)
    return matches


def _dims_match(spec: DatasetSpec, f: dict) -> bool:
    """Whether the first dialogue's features have the spec's dims (tells 9-tuples apart)."""
    try:
        first = next(iter(f["videoLabels"]))
        for name in spec.fields:
            mod = ("text" if name.startswith("videoText") else
                   {"videoAudio": "audio", "videoVisual": "visual"}.get(name))
            if mod is not None:
                if np.asarray(f[name][first][0]).size != spec.dims[mod]:
                    return False
        labels = np.asarray(list(f["videoLabels"][first]), dtype=np.float64)
        is_int = bool(np.all(labels == np.round(labels)))
        if spec.score_class_bins is None and not is_int:
            return False
        if "videoSpeakers" in f and not spec.speakers_are_onehot:
            if np.ndim(list(f["videoSpeakers"][first])[0]) == 1:
                return False
        if "videoSpeakers" in f and spec.speakers_are_onehot:
            if np.ndim(list(f["videoSpeakers"][first])[0]) != 1:
                return False
        return True
    except (KeyError, TypeError, StopIteration, IndexError, ValueError):
        return False
