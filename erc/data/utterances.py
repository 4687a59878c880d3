"""Utterance tables with V/A/D targets: the IEMOCAP release, EmoBank, any table, the synthetic corpus.

Every reader returns a pandas frame with the columns of :data:`COLUMNS` (one row
per utterance; unlabeled rows have NaN V/A/D and ``emotion`` None and never
reach training); :func:`build_splits` turns it into a ``datasets.DatasetDict``.

Sources (``--path`` / ``--format``):

* ``synthetic``: the built-in corpus (:mod:`erc.data.synthetic`), sessions 1-5, all labeled.
* ``iemocap``: the release layout ``ROOT/SessionN/dialog/{transcriptions,EmoEvaluation}/*.txt``.
* ``emobank``: ``emobank.csv`` (``id,split,V,A,D,text``).
* ``table``: any CSV / JSONL / Parquet with a column mapping.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from erc.core.config import ConfigError

logger = logging.getLogger(__name__)

VAD_COLUMNS = ("valence", "arousal", "dominance")
COLUMNS = ("utterance_id", "dialogue_id", "session", "speaker", "start", "end", "text",
           "emotion", "valence", "arousal", "dominance")
VAD_RANGE = (1.0, 5.0)

# Dataset facts as data: how each source is read and split.
SOURCES = {
    "synthetic": dict(split="session", vad_range=VAD_RANGE),
    "iemocap": dict(split="session", vad_range=VAD_RANGE),
    "emobank": dict(split="column", vad_range=VAD_RANGE,
                    columns=dict(text="text", valence="V", arousal="A", dominance="D",
                                 id="id", dialogue="", split="split")),
    "table": dict(split="auto", vad_range=None),
}
SPLIT_NAMES = {"train": "train", "training": "train", "dev": "validation", "val": "validation",
               "valid": "validation", "validation": "validation", "test": "test"}

# ``Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.``
_UTTERANCE = re.compile(r"^(\S+?)\s*\[\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*\]\s*:\s?(.*)$")
# ``[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]``
_EVAL_HEADER = re.compile(r"^\[\s*(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")


# --------------------------------------------------------------------------- IEMOCAP
def _session_of(folder: Path) -> int | None:
    m = re.fullmatch(r"Session(\d+)", folder.name)
    return int(m.group(1)) if m else None


def _read_evaluation(path: Path) -> dict[str, tuple[str, float, float, float]]:
    """Turn name -> (emotion, V, A, D) from the header lines of one EmoEvaluation file."""
    out = {}
    with open(path, encoding="latin-1") as fh:
        for lineno, line in enumerate(fh, 1):
            m = _EVAL_HEADER.match(line)
            if not m:
                continue  # comments, per-annotator lines (C-E1:, A-F1:), blanks
            parts = [p.strip() for p in m.group(5).split(",")]
            try:
                v, a, d = (float(p) for p in parts)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: field [V, A, D]: expected three numbers, "
                                 f"got [{m.group(5)}]") from None
            out[m.group(3)] = (m.group(4), v, a, d)
    return out


def read_iemocap(root: str | Path, sessions: list[int] | None = None,
                 vad_range: tuple[float, float] = VAD_RANGE) -> pd.DataFrame:
    """Read the IEMOCAP release layout: one row per transcribed utterance (latin-1 text).

    Utterances whose dialogue or turn has no EmoEvaluation entry are kept as
    unlabeled rows (NaN V/A/D, emotion None). ``emotion`` is the release's
    majority label as written (``xxx`` = no majority). V/A/D outside
    ``vad_range`` are clipped, with one warning counting them.
    """
    root = Path(root)
    session_dirs = sorted((p for p in root.glob("Session*") if _session_of(p) is not None), key=_session_of)
    if sessions is not None:
        session_dirs = [p for p in session_dirs if _session_of(p) in set(sessions)]
    if not session_dirs:
        raise FileNotFoundError(f"{root}: no SessionN folders found; expected the IEMOCAP release layout "
                                "ROOT/SessionN/dialog/transcriptions/*.txt")
    rows, n_eval_without_text = [], 0
    for sdir in session_dirs:
        session = _session_of(sdir)
        trans_dir, eval_dir = sdir / "dialog" / "transcriptions", sdir / "dialog" / "EmoEvaluation"
        files = sorted(trans_dir.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"{trans_dir}: no transcription files (*.txt)")
        for tfile in files:
            dialogue = tfile.stem
            efile = eval_dir / tfile.name
            labels = _read_evaluation(efile) if efile.is_file() else {}
            seen = set()
            with open(tfile, encoding="latin-1") as fh:
                for line in fh:
                    m = _UTTERANCE.match(line.rstrip("\r\n"))
                    if not m:
                        continue  # "M: Yeah.", "F:[GARBAGE]", speaker-only tags, blanks
                    uid, start, end, text = m.group(1), float(m.group(2)), float(m.group(3)), m.group(4).strip()
                    seen.add(uid)
                    speaker = uid.rsplit("_", 1)[-1][:1]
                    emo, v, a, d = labels.get(uid, (None, np.nan, np.nan, np.nan))
                    rows.append(dict(utterance_id=uid, dialogue_id=dialogue, session=session,
                                     speaker=speaker, start=start, end=end, text=text, emotion=emo,
                                     valence=v, arousal=a, dominance=d))
            n_eval_without_text += len(set(labels) - seen)
    if n_eval_without_text:
        logger.warning("%s: %d evaluated turns have no transcript line and were skipped",
                       root, n_eval_without_text)
    df = clip_vad(pd.DataFrame(rows, columns=list(COLUMNS)), vad_range, source=str(root))
    df["emotion"] = df["emotion"].astype(object).where(df["emotion"].notna(), None)
    return df


def clip_vad(df: pd.DataFrame, vad_range: tuple[float, float] | None, source: str) -> pd.DataFrame:
    """Clip V/A/D into ``vad_range`` (NaN stays NaN) with ONE warning counting the clipped values."""
    if vad_range is None:
        return df
    lo, hi = vad_range
    vals = df[list(VAD_COLUMNS)].to_numpy(dtype=np.float64)
    out = (vals < lo) | (vals > hi)
    n = int(out.sum())
    if n:
        logger.warning("%s: %d V/A/D value(s) in %d utterance(s) outside [%g, %g] were clipped",
                       source, n, int(out.any(axis=1).sum()), lo, hi)
        df = df.copy()
        df[list(VAD_COLUMNS)] = np.where(np.isnan(vals), np.nan, np.clip(vals, lo, hi))
    return df


# --------------------------------------------------------------------------- tables
def read_any_table(path: Path) -> pd.DataFrame:
    """Read a CSV / TSV / JSONL / Parquet table by its suffix, columns as they are."""
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix in (".csv", ".csv.gz"):
        return pd.read_csv(path, keep_default_na=True)
    if suffix in (".tsv",):
        return pd.read_csv(path, sep="\t")
    if suffix in (".jsonl", ".jsonl.gz", ".json"):
        return pd.read_json(path, lines=suffix != ".json")
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise ConfigError(f"{path}: unknown table format '{suffix}'; expected .csv, .tsv, .jsonl or .parquet")


def read_table(path: str | Path, text: str = "text", valence: str = "valence", arousal: str = "arousal",
               dominance: str = "dominance", id: str = "", dialogue: str = "", split: str = "",
               vad_range: tuple[float, float] | None = None, require_labels: bool = True) -> pd.DataFrame:
    """Any CSV/JSONL/Parquet through a column mapping; V/A/D columns may be absent if not required."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = read_any_table(path)
    mapping = dict(text=text, valence=valence, arousal=arousal, dominance=dominance)
    needed = ["text"] + (list(VAD_COLUMNS) if require_labels else [])
    for key in needed + [k for k, v in dict(id=id, dialogue=dialogue, split=split).items() if v]:
        col = mapping.get(key) or dict(id=id, dialogue=dialogue, split=split)[key]
        if col not in raw.columns:
            raise ConfigError(f"{path}: column '{col}' (for {key}) not found; columns are "
                              f"{', '.join(map(str, raw.columns))}; set --{key if key != 'text' else 'text'}"
                              f"-column")
    n = len(raw)
    df = pd.DataFrame({
        "utterance_id": raw[id].astype(str) if id else [f"row{i:06d}" for i in range(n)],
        "dialogue_id": None,
        "session": -1, "speaker": None, "start": np.nan, "end": np.nan,
        "text": raw[text].fillna("").astype(str), "emotion": None,
    })
    # without a dialogue column every row is its own dialogue
    df["dialogue_id"] = raw[dialogue].astype(str) if dialogue else df["utterance_id"]
    for c in VAD_COLUMNS:
        col = mapping[c]
        df[c] = pd.to_numeric(raw[col], errors="coerce") if col in raw.columns else np.nan
    if split:
        names = raw[split].astype(str).str.strip().str.lower()
        bad = sorted(set(names) - set(SPLIT_NAMES))
        if bad:
            raise ConfigError(f"{path}: column '{split}' has values {bad}; expected one of "
                              f"{sorted(SPLIT_NAMES)}")
        df["split"] = names.map(SPLIT_NAMES)
    if df["utterance_id"].duplicated().any():
        dup = df["utterance_id"][df["utterance_id"].duplicated()].iloc[0]
        raise ConfigError(f"{path}: column '{id}' is not unique (e.g. {dup!r}); expected one id per row")
    return clip_vad(df, vad_range, source=str(path))


def read_emobank(path: str | Path) -> pd.DataFrame:
    """EmoBank's ``emobank.csv`` (``id,split,V,A,D,text``; split train/dev/test)."""
    src = SOURCES["emobank"]
    return read_table(path, vad_range=src["vad_range"], **src["columns"])


def read_synthetic(n_dialogues: int = 40, seed: int = 0) -> pd.DataFrame:
    """The built-in SYNTHETIC corpus (sessions 1-5, all labeled) in the common columns."""
    from erc.data.synthetic import generate_corpus

    u = generate_corpus(n_dialogues=n_dialogues, seed=seed).utterances
    return u[list(COLUMNS)].reset_index(drop=True)


def detect_format(data: str) -> str:
    if data == "synthetic":
        return "synthetic"
    p = Path(data)
    if p.is_dir():
        return "iemocap"
    if p.is_file():
        if p.name.lower().startswith("emobank"):
            return "emobank"
        return "table"
    raise ConfigError(f"--path {data}: neither 'synthetic' nor an existing folder or file")


def load_frame(cfg, require_labels: bool = True) -> tuple[pd.DataFrame, str]:
    """Read ``cfg.path`` (an UtteranceDataConfig) into the common frame; returns (frame, format)."""
    fmt = cfg.format if cfg.format != "auto" else detect_format(cfg.path)
    if fmt == "synthetic":
        df = read_synthetic(cfg.synthetic_dialogues, cfg.synthetic_seed)
    elif fmt == "iemocap":
        df = read_iemocap(cfg.path)
    elif fmt == "emobank":
        df = read_emobank(cfg.path)
    elif fmt == "table":
        df = read_table(cfg.path, text=cfg.text_column, valence=cfg.valence_column,
                        arousal=cfg.arousal_column, dominance=cfg.dominance_column,
                        id=cfg.id_column, dialogue=cfg.dialogue_column, split=cfg.split_column,
                        require_labels=require_labels)
    else:
        raise ConfigError(f"field 'format': expected one of auto/synthetic/iemocap/emobank/table, got {fmt!r}")
    return df, fmt
