"""Parsed corpora as typed DatasetDicts, cached by the content of their source files."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Value

from erc.data import utterances
from erc.data.registry import IEMOCAP6_EMOTIONS
from erc.data.utterance_dataset import EMOTIONS, load_utterance_dataset, to_dataset_dict


@pytest.fixture()
def counted_reader(monkeypatch):
    calls = []
    real = utterances.read_iemocap

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(utterances, "read_iemocap", counting)
    return calls


def test_iemocap_release_typed_and_equal_to_the_reader(tmp_path, synthetic_release, counted_reader):
    root = shutil.copytree(synthetic_release, tmp_path / "release")
    dsd = load_utterance_dataset(str(root), cache_dir=tmp_path / "cache")
    assert list(dsd) == ["all"] and len(counted_reader) == 1
    ds = dsd["all"]
    assert ds.features["emotion"] == ClassLabel(names=list(EMOTIONS))
    assert ds.features["emotion"].names[:6] == list(IEMOCAP6_EMOTIONS)     # ids 0-5 are IEMOCAP-6's ids
    assert ds.features["sentiment"] == ClassLabel(names=["negative", "neutral", "positive"])
    assert ds.features["session"] == Value("int32") and ds.features["valence"] == Value("float64")
    frame = utterances.read_iemocap(root)
    assert ds["utterance_id"] == frame["utterance_id"].tolist() and ds["text"] == frame["text"].tolist()
    emotion = ds.features["emotion"]
    got = [None if i < 0 else emotion.int2str(i) for i in ds["emotion"]]
    assert got == [None if pd.isna(e) else e for e in frame["emotion"]]
    sentiment = {"ang": 0, "sad": 0, "fru": 0, "neu": 1, "hap": 2, "exc": 2}
    assert ds["sentiment"] == [sentiment.get(e, -1) for e in got]
    valence = np.array([np.nan if v is None else v for v in ds["valence"]])
    np.testing.assert_array_equal(valence, frame["valence"].to_numpy())        # NaN (unlabeled) <-> null
    assert set(ds["session"]) == {1, 2, 3, 4, 5} and any(e is None for e in got)   # session 5 unlabeled


def test_second_call_reads_the_cache_and_changed_content_parses_again(tmp_path, synthetic_release,
                                                                       counted_reader):
    root = shutil.copytree(synthetic_release, tmp_path / "release")
    cache = tmp_path / "cache"
    first = load_utterance_dataset(str(root), cache_dir=cache)["all"]
    second = load_utterance_dataset(str(root), cache_dir=cache)["all"]
    assert len(counted_reader) == 1 and second["text"] == first["text"]
    transcript = sorted(root.glob("Session1/dialog/transcriptions/*.txt"))[0]
    stat = transcript.stat()
    os.utime(transcript, (stat.st_atime + 100, stat.st_mtime + 100))          # time stamp only: no re-parse
    load_utterance_dataset(str(root), cache_dir=cache)
    assert len(counted_reader) == 1
    text = transcript.read_text(encoding="latin-1")
    line = next(ln for ln in text.splitlines() if "]: " in ln)
    old_words = line.split("]: ", 1)[1]
    new_words = "x" * len(old_words)                                           # same size, other content
    transcript.write_text(text.replace(line, line.replace(old_words, new_words)), encoding="latin-1")
    os.utime(transcript, (stat.st_atime, stat.st_mtime))                      # and the old time stamp
    third = load_utterance_dataset(str(root), cache_dir=cache)["all"]
    assert len(counted_reader) == 2 and new_words in third["text"] and old_words not in third["text"]
    assert len(list(cache.iterdir())) == 2                                     # one entry per content


def test_table_keeps_its_split_column_as_splits(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,text,valence,arousal,dominance,split\n"
                    "u1,a,3.0,2.0,1.0,dev\nu2,b,1.0,1.0,1.0,train\nu3,c,,4.0,4.0,test\n")
    dsd = load_utterance_dataset(str(path), cache_dir=tmp_path / "cache", id="id", split="split")
    assert list(dsd) == ["train", "validation", "test"]                  # dev -> validation, in that order
    assert dsd["validation"]["utterance_id"] == ["u1"] and dsd["validation"]["text"] == ["a"]
    assert dsd["test"]["valence"] == [None] and dsd["test"]["arousal"] == [4.0]
    assert dsd["train"]["emotion"] == [-1] and dsd["train"]["session"] == [-1]
    with pytest.raises(utterances.ConfigError, match="apply to tables only"):
        load_utterance_dataset("synthetic", cache_dir=tmp_path / "cache", id="id")


def test_emotion_codes_beyond_the_release_list_are_appended_sorted():
    df = utterances.read_synthetic(n_dialogues=2).head(3).copy()
    df["emotion"] = ["joy", None, "ang"]
    ds = to_dataset_dict(df, "test")["all"]
    assert ds.features["emotion"].names == [*EMOTIONS, "joy"]
    assert ds["emotion"] == [len(EMOTIONS), -1, 3] and ds["sentiment"] == [-1, -1, 0]


def test_real_iemocap_release(tmp_path):
    from tests.conftest import require_data

    root = require_data("iemocap", "IEMOCAP_full_release")
    ds = load_utterance_dataset(str(root), cache_dir=tmp_path / "cache")["all"]
    frame = utterances.read_iemocap(root)
    assert len(ds) == len(frame) and ds["utterance_id"] == frame["utterance_id"].tolist()
    names = ds.features["emotion"].names
    counts = pd.Series([names[i] if i >= 0 else "(none)" for i in ds["emotion"]]).value_counts()
    assert counts.to_dict() == frame["emotion"].fillna("(none)").value_counts().to_dict()
    assert counts["(none)"] > 0 and counts["xxx"] > 0            # unevaluated turns and no-majority turns


def test_build_splits_parses_a_release_once_and_repeats_its_warnings(tmp_path, synthetic_release, counted_reader,
                                                                     caplog, monkeypatch):
    """The fine-tuning data path goes through the cache: the frame equals the reader's, the second run does
    not parse, and what the parser warned about (here a header that does not parse) is said again."""
    import logging

    from erc.data.config import UtteranceDataConfig
    from erc.data.utterance_dataset import load_frame_cached
    from erc.vad.data import build_splits

    monkeypatch.setenv("ERC_DATASETS_CACHE", str(tmp_path / "cache"))
    root = shutil.copytree(synthetic_release, tmp_path / "release")
    emo = sorted((root / "Session1" / "dialog" / "EmoEvaluation").glob("*.txt"))[0]
    lines = emo.read_text(encoding="latin-1").splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("["))
    lines[i] = lines[i].replace("]", "", 1)                       # a header missing its closing bracket
    emo.write_text("\n".join(lines) + "\n", encoding="latin-1")
    cfg = UtteranceDataConfig(path=str(root), format="iemocap", split="session", train_sessions=[1, 2],
                              valid_sessions=[3], test_sessions=[4])
    with caplog.at_level(logging.WARNING):
        first = build_splits(cfg)
    assert len(counted_reader) == 1 and "do not parse" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        second = build_splits(cfg)
    assert len(counted_reader) == 1                                  # read from the cache, not parsed
    assert "do not parse" in caplog.text and "(from the cached parse)" in caplog.text
    for name in ("train", "validation", "test"):
        assert first.datasets[name].to_pandas().equals(second.datasets[name].to_pandas())
    cached, fmt = load_frame_cached(cfg)
    parsed = utterances.read_iemocap(root)
    assert fmt == "iemocap"
    pd.testing.assert_frame_equal(cached[list(parsed.columns)], parsed.reset_index(drop=True), check_dtype=False)
