"""Readers and splits of vad/data.py, on hand-written files with known answers."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from erc.core.config import ConfigError
from erc.data.config import UtteranceDataConfig
from tests.conftest import require_data
from erc.data.utterances import read_emobank, read_iemocap, read_table
from erc.vad.data import assign_splits, build_splits, labeled_mask, read_prediction_input

# Every quirk of shared/data/README.md: non-utterance lines, per-annotator lines, a comment,
# `xxx`, V = 5.5 and D = 0.5, latin-1 bytes, CRLF, a turn with a transcript but no
# evaluation, an evaluation with no transcript, and a session without EmoEvaluation.
TRANS_1 = (
    "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\r\n"
    "Ses01F_impro01_M000 [007.5712-010.4750]: Do you have your forms?\r\n"
    "M: Yeah.\r\n"
    "F:[GARBAGE]\r\n"
    "M:\r\n"
    "\r\n"
    "Ses01F_impro01_F001 [010.0100-011.3925]: Caf\xe9 au lait, s'il vous pla\xeet.\r\n"
    "Ses01F_impro01_M001 [010.9266-014.6649]: Let me see them.\r\n"
)
EVAL_1 = (
    "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
    "C-E2:\tNeutral;\t()\n"
    "A-E3:\tval 3; act 2; dom  2;\t()\n\n"
    "[7.5712 - 10.4750]\tSes01F_impro01_M000\tfru\t[5.5000, 3.0000, 0.5000]\n"
    "C-E2:\tFrustration;\t()\n\n"
    "[10.0100 - 11.3925]\tSes01F_impro01_F001\txxx\t[3.5000, 2.0000, 2.5000]\n"
    "C-E1:\tHappiness;\t()\n\n"
    "[20.0000 - 21.0000]\tSes01F_impro01_F009\tang\t[1.0000, 4.0000, 4.0000]\n"
)
TRANS_5 = "Ses05F_impro01_F000 [001.0000-002.0000]: Hello there.\n"


def write_fixture(root: Path) -> Path:
    s1 = root / "Session1" / "dialog"
    (s1 / "transcriptions").mkdir(parents=True)
    (s1 / "EmoEvaluation").mkdir(parents=True)
    (s1 / "transcriptions" / "Ses01F_impro01.txt").write_bytes(TRANS_1.encode("latin-1"))
    (s1 / "EmoEvaluation" / "Ses01F_impro01.txt").write_bytes(EVAL_1.encode("latin-1"))
    s5 = root / "Session5" / "dialog" / "transcriptions"
    s5.mkdir(parents=True)
    (s5 / "Ses05F_impro01.txt").write_text(TRANS_5, encoding="latin-1")
    (root / "README.txt").write_text("not a session\n")
    return root


def test_iemocap_parser_on_every_quirk(tmp_path, caplog):
    root = write_fixture(tmp_path)
    with caplog.at_level(logging.WARNING, logger="erc.vad.data"):
        df = read_iemocap(root)
    assert df["utterance_id"].tolist() == ["Ses01F_impro01_F000", "Ses01F_impro01_M000",
                                           "Ses01F_impro01_F001", "Ses01F_impro01_M001",
                                           "Ses05F_impro01_F000"]
    assert df["dialogue_id"].tolist() == ["Ses01F_impro01"] * 4 + ["Ses05F_impro01"]
    assert df["session"].tolist() == [1, 1, 1, 1, 5]
    assert df["speaker"].tolist() == ["F", "M", "F", "M", "F"]
    assert df.loc[0, "start"] == pytest.approx(6.2901) and df.loc[0, "end"] == pytest.approx(8.2357)
    assert df.loc[2, "text"] == "Café au lait, s'il vous plaît."  # latin-1, CR stripped
    assert df["emotion"].tolist()[:3] == ["neu", "fru", "xxx"]
    # clipped into [1, 5]
    assert df.loc[1, ["valence", "arousal", "dominance"]].tolist() == [5.0, 3.0, 1.0]
    assert df.loc[2, ["valence", "arousal", "dominance"]].tolist() == [3.5, 2.0, 2.5]
    # transcript without evaluation, and the session without EmoEvaluation: unlabeled rows
    assert labeled_mask(df).tolist() == [True, True, True, False, False]
    assert df.loc[3, "emotion"] is None and np.isnan(df.loc[4, "valence"])
    clip_msgs = [r.getMessage() for r in caplog.records if "clipped" in r.getMessage()]
    assert len(clip_msgs) == 1 and "2 V/A/D value(s) in 1 utterance(s)" in clip_msgs[0]
    assert any("1 evaluated turns have no transcript" in r.getMessage() for r in caplog.records)


def test_iemocap_malformed_vad_names_file_and_field(tmp_path):
    root = write_fixture(tmp_path)
    f = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    f.write_text(EVAL_1.replace("[2.5000, 2.5000, 2.5000]", "[2.5000, n/a, 2.5000]"), encoding="latin-1")
    with pytest.raises(ValueError, match=r"Ses01F_impro01\.txt:3: field \[V, A, D\]"):
        read_iemocap(root)
    with pytest.raises(FileNotFoundError, match="SessionN"):
        read_iemocap(tmp_path / "Session1")


def test_real_iemocap_counts():
    root = require_data("iemocap", "IEMOCAP_full_release")
    df = read_iemocap(root)
    lab = df[labeled_mask(df)]
    s14 = lab[lab["session"].between(1, 4)]
    assert len(s14) == 7869
    assert s14["dialogue_id"].nunique() == 120
    assert not labeled_mask(df[df["session"] == 5]).any()  # session 5: text only in this copy
    assert lab[["valence", "arousal", "dominance"]].to_numpy().min() >= 1.0
    assert lab[["valence", "arousal", "dominance"]].to_numpy().max() <= 5.0


def test_real_emobank_split_column():
    path = require_data("emobank", "emobank.csv")
    df = read_emobank(path)
    masks, mode = assign_splits(df, UtteranceDataConfig(path=str(path)), default_mode="column")
    assert mode == "column" and labeled_mask(df).all()
    assert {k: int(m.sum()) for k, m in masks.items()} == {"train": 8062, "validation": 1000, "test": 1000}


def test_session_splits_and_leave_one_out(tmp_path, synthetic_release):
    cfg = UtteranceDataConfig(path=str(synthetic_release), test_sessions=[4])
    sp = build_splits(cfg)  # session 5 of the synthetic release is unlabeled
    frame = sp.frame
    sess = dict(zip(frame["utterance_id"], frame["session"]))
    assert {sess[u] for u in sp.datasets["train"]["utterance_id"]} == {1, 2, 3}
    assert {sess[u] for u in sp.datasets["validation"]["utterance_id"]} == {4}
    assert sp.test_is_validation
    with pytest.raises(ConfigError, match="test split has no labeled utterances"):
        build_splits(UtteranceDataConfig(path=str(synthetic_release)))  # default test = 5, unlabeled
    loso = build_splits(UtteranceDataConfig(path="synthetic", leave_one_session_out=2))
    sess = dict(zip(loso.frame["utterance_id"], loso.frame["session"]))
    assert {sess[u] for u in loso.datasets["test"]["utterance_id"]} == {2}
    assert {sess[u] for u in loso.datasets["validation"]["utterance_id"]} == {1}
    assert {sess[u] for u in loso.datasets["train"]["utterance_id"]} == {3, 4, 5}
    with pytest.raises(ConfigError, match="overlap"):
        build_splits(UtteranceDataConfig(path="synthetic", train_sessions=[1, 4]))


def test_synthetic_source_all_labeled_five_sessions():
    sp = build_splits(UtteranceDataConfig(path="synthetic", synthetic_dialogues=10))
    assert labeled_mask(sp.frame).all() and sorted(sp.frame["session"].unique()) == [1, 2, 3, 4, 5]
    assert sum(len(d) for d in sp.datasets.values()) == len(sp.frame)


def test_dialogue_split_is_seeded_and_never_splits_a_dialogue(tmp_path, synthetic_corpus):
    u = synthetic_corpus.utterances
    path = tmp_path / "t.jsonl"
    u.rename(columns={"text": "utt", "valence": "v"}).to_json(path, orient="records", lines=True)
    cfg = UtteranceDataConfig(path=str(path), text_column="utt", valence_column="v", id_column="utterance_id",
                              dialogue_column="dialogue_id", valid_fraction=0.2, test_fraction=0.2)
    a, b = build_splits(cfg, seed=3), build_splits(cfg, seed=3)
    assert a.mode == "dialogue"
    assert a.datasets["test"]["utterance_id"] == b.datasets["test"]["utterance_id"]
    assert build_splits(cfg, seed=4).datasets["test"]["utterance_id"] != a.datasets["test"]["utterance_id"]
    dl = {name: set(ds["dialogue_id"]) for name, ds in a.datasets.items()}
    assert not (dl["train"] & dl["test"]) and not (dl["train"] & dl["validation"]) and not (dl["validation"] & dl["test"])
    assert len(dl["test"]) == 8 and len(dl["validation"]) == 8  # 0.2 * 40 dialogues each
    assert sum(len(d) for d in a.datasets.values()) == len(u)


def test_table_formats_and_column_errors(tmp_path):
    df = pd.DataFrame({"sid": ["a", "b", "c"], "sentence": ["x y", "z", "w"], "V": [3.0, 2.0, 6.0],
                       "A": [1.0, 2.0, 3.0], "D": [2.0, 2.0, 2.0], "part": ["train", "dev", "test"]})
    df.to_parquet(tmp_path / "t.parquet")
    df.to_csv(tmp_path / "emobank.csv", index=False)
    t = read_table(tmp_path / "t.parquet", text="sentence", valence="V", arousal="A", dominance="D",
                   id="sid", split="part", vad_range=(1.0, 5.0))
    assert t["split"].tolist() == ["train", "validation", "test"] and t["valence"].tolist() == [3.0, 2.0, 5.0]
    with pytest.raises(ConfigError, match=r"column 'text' \(for text\) not found"):
        read_table(tmp_path / "t.parquet")
    df.rename(columns={"sid": "id", "sentence": "text", "part": "split"}).to_csv(tmp_path / "emobank.csv", index=False)
    eb = read_emobank(tmp_path / "emobank.csv")
    assert eb["utterance_id"].tolist() == ["a", "b", "c"] and eb["dialogue_id"].tolist() == ["a", "b", "c"]
    bad = df.rename(columns={"sid": "id", "sentence": "text"}).assign(split=["train", "holdout", "test"])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match="holdout"):
        read_table(tmp_path / "bad.csv", valence="V", arousal="A", dominance="D", split="split")


def test_prediction_inputs(tmp_path):
    (tmp_path / "t.txt").write_text("first line\n\nsecond line\n")
    p = read_prediction_input(tmp_path / "t.txt")
    assert p["utterance_id"].tolist() == ["line000001", "line000003"] and p["text"].tolist() == ["first line", "second line"]
    pd.DataFrame({"id": ["u1", "u2"], "text": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    assert read_prediction_input(tmp_path / "t.csv", id_column="id")["utterance_id"].tolist() == ["u1", "u2"]
    root = write_fixture(tmp_path / "rel")
    assert len(read_prediction_input(root)) == 5  # labeled and unlabeled utterances
