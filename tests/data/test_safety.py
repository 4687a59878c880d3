"""Safe to point at any file: the restricted unpickler, tables kept as written, IEMOCAP labels never lost silently,
and the damaged pickles fuzzing found (issue 15)."""
from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from erc.core.errors import FileFormatError
from erc.data.readers import read_pickle
from erc.data.registry import get_spec
from erc.data.safe_pickle import ALLOWED_GLOBALS, UnsafePickleError, load_pickle
from erc.data.synthetic_pickles import build_layout, write_layout_pickle
from erc.data.utterances import read_iemocap, read_table
from erc.data.validate import DataValidationError
from erc.vad.data import labeled_mask, read_prediction_input
from tests.conftest import require_data


class _System:
    """Pickles as ``os.system(command)``: what a crafted dataset pickle does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def crafted_pickle(path, marker, members: int = 6):
    """A COSMIC-shaped tuple whose first member runs ``touch marker`` when loaded by plain pickle."""
    obj = (_System(f"touch {marker}"),) + tuple({} for _ in range(members - 3)) + ([], [])
    path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path


# --------------------------------------------------------------------------- restricted unpickler
def test_crafted_pickle_runs_under_plain_pickle_but_not_here(tmp_path):
    evil = crafted_pickle(tmp_path / "evil.pkl", tmp_path / "MARKER")
    # control: the payload is live (plain pickle.load runs it), so the refusal below is meaningful
    subprocess.run([sys.executable, "-c", f"import pickle; pickle.load(open({str(evil)!r}, 'rb'))"], check=True)
    assert (tmp_path / "MARKER").exists()
    (tmp_path / "MARKER").unlink()
    for read in (lambda: load_pickle(evil), lambda: read_pickle(evil, get_spec("cosmic_iemocap"))):
        with pytest.raises(UnsafePickleError) as err:
            read()
        assert str(evil) in str(err.value) and f"'{os.system.__module__}.system'" in str(err.value)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
                                         ("builtins", "__import__"), ("subprocess", "Popen"),
                                         ("numpy", "load"), ("pandas", "read_pickle"), ("torch", "load")])
def test_forbidden_globals_are_named_and_never_imported_or_called(tmp_path, module, name):
    # protocol 0 by hand: GLOBAL module name, MARK, one string argument, TUPLE, REDUCE, STOP
    path = tmp_path / "g.pkl"
    path.write_bytes(f"c{module}\n{name}\n(S'1+1'\ntR.".encode())
    assert (module, name) not in ALLOWED_GLOBALS
    with pytest.raises(UnsafePickleError, match=rf"{path}: .*global '{module}\.{name}'"):
        load_pickle(path)


def test_allowed_data_round_trips_in_every_protocol(tmp_path):
    obj = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array(["a", "b"], dtype=object), np.int64(7),
           np.float32(0.5), pd.Series([1.5, 2.5]), {"k": [1, 2]}, {1, 2}, frozenset([3]), slice(1, 4),
           b"xy", bytearray(b"z"), complex(1, 2), range(3), ("t",), None, True)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        back = load_pickle(path)
        np.testing.assert_array_equal(back[0], obj[0])
        assert back[0].dtype == np.float32 and back[1].tolist() == ["a", "b"]
        assert back[2] == 7 and back[3] == np.float32(0.5)
        pd.testing.assert_series_equal(back[4], obj[4])
        assert back[5:] == obj[5:]


def test_numpy1_and_python2_names_resolve(tmp_path):
    # a numpy 1.x file names numpy.core.multiarray; a Python 2 file names __builtin__ (protocol 2 GLOBALs)
    arr = np.array([[1.0, 2.0], [3.0, 4.0]])
    raw = pickle.dumps((arr, {1, 2}), protocol=2)
    assert b"numpy._core.multiarray" in raw and b"__builtin__\nset" in raw
    path = tmp_path / "old.pkl"
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    back = load_pickle(path)
    np.testing.assert_array_equal(back[0], arr)
    assert back[1] == {1, 2}


def test_arrow_backed_pandas_objects_are_refused(tmp_path):
    path = tmp_path / "arrow.pkl"
    path.write_bytes(pickle.dumps(pd.Series(["a", "b"], dtype="str")))
    with pytest.raises(UnsafePickleError, match="global '(pyarrow|pandas.arrays)"):
        load_pickle(path)


def test_damaged_pickle_is_named(tmp_path):
    path = write_layout_pickle(tmp_path / "c.pkl", "cosmic_iemocap", n_dialogues=4)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(FileFormatError, match=rf"{path}: not a readable pickle"):
        read_pickle(path, get_spec("cosmic_iemocap"))


def test_real_cosmic_pickles_load_through_the_restricted_unpickler():
    ie = read_pickle(require_data("cosmic", "iemocap.pkl"), get_spec("cosmic_iemocap"))
    assert len(ie.dialogues) == 151 and ie.num_utterances == 7433
    assert [len(ie.splits[s]) for s in ("train", "test", "valid")] == [108, 31, 12]
    meld = read_pickle(require_data("cosmic", "meld.pkl"), get_spec("cosmic_meld"))
    assert [len(meld.splits[s]) for s in ("train", "test", "valid")] == [1038, 280, 114]


def test_pandas_series_per_dialogue_values_are_read(tmp_path):
    spec = get_spec("cosmic_iemocap")
    obj = list(build_layout("cosmic_iemocap", n_dialogues=4, seed=1))
    labels = {k: pd.Series(v) for k, v in obj[1].items()}
    path = write_layout_pickle(tmp_path / "s.pkl", "cosmic_iemocap", [obj[0], labels, *obj[2:]])
    corpus = read_pickle(path, spec)
    for k, v in obj[1].items():
        np.testing.assert_array_equal(corpus.dialogues[k].labels, v)


# --------------------------------------------------------------------------- damaged layouts (found by fuzzing)
def _mutated(tmp_path, field: str, value, dataset: str = "cosmic_iemocap", whole: bool = False):
    """The layout with ``field``'s entry for the first training dialogue (or, ``whole``, the member) replaced."""
    spec = get_spec(dataset)
    obj = list(build_layout(dataset, n_dialogues=4, seed=2))
    i = spec.fields.index(field)
    first = obj[spec.fields.index("trainVid")][0]
    if isinstance(obj[i], dict) and not whole:
        obj[i] = {**obj[i], first: value}
    else:
        obj[i] = value
    return write_layout_pickle(tmp_path / "m.pkl", dataset, obj), spec, first


@pytest.mark.parametrize("dataset,field,value,expected", [
    ("cosmic_iemocap", "videoLabels", 3, "expected a list with one number per utterance, got int"),
    ("cosmic_iemocap", "videoLabels", ["a", "b"], "expected one number per utterance"),
    ("cosmic_iemocap", "videoLabels", 2.5, "got float"),
    ("cosmic_iemocap", "videoSentence", [1, 2, 3], "expected a string per utterance, got int"),
    ("cosmic_iemocap", "videoSpeakers", [None], "expected a speaker name per utterance, got NoneType"),
    ("cosmic_meld", "videoSpeakers", [[0.0] * 9, [1.0]], "one-hot vector (all of one length)"),
    ("cosmic_meld", "videoSentiments", [0.5], "expected integer class indices"),
    ("graphsmile_iemocap4", "videoAudio", [["x"] * 100], "expected numeric feature vectors"),
])
def test_wrong_values_name_file_dialogue_and_field(tmp_path, dataset, field, value, expected):
    path, spec, first = _mutated(tmp_path, field, value, dataset)
    with pytest.raises(DataValidationError) as err:
        read_pickle(path, spec)
    msg = str(err.value)
    assert msg.startswith(f"{path}: dialogue {first!r}: field '{field}'") and expected in msg


@pytest.mark.parametrize("field,value,expected", [
    ("videoLabels", [1, 2], "field 'videoLabels': expected a dict of dialogue id -> per-utterance values, got list"),
    ("trainVid", {"a": 1}, "field 'trainVid': expected a list of dialogue ids, got dict"),
    ("testVid", ["x", None], "field 'testVid': expected dialogue ids (strings), got None"),
])
def test_wrong_members_name_file_and_field(tmp_path, field, value, expected):
    path, spec, _ = _mutated(tmp_path, field, value, whole=True)
    with pytest.raises(DataValidationError) as err:
        read_pickle(path, spec)
    assert str(err.value) == f"{path}: {expected}"


def test_meld_csv_bad_time_and_bad_bytes_are_named(tmp_path):
    from erc.data.readers import MELD_CSV_SPLITS, read_meld_csv

    header = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
    row = '1,Hi.,Ross,joy,positive,0,0,1,1,"00:00:01,000","00:00:02,500"\n'
    for name in MELD_CSV_SPLITS.values():
        (tmp_path / name).write_text(header + row)
    (tmp_path / "dev_sent_emo.csv").write_text(header + row.replace('"00:00:02,500"', "later"))
    with pytest.raises(DataValidationError) as err:
        read_meld_csv(tmp_path, get_spec("meld_csv"))
    assert str(err.value) == (f"{tmp_path / 'dev_sent_emo.csv'}: dialogue 'valid_0': field 'EndTime': "
                              "expected a time HH:MM:SS,mmm, got 'later'")
    (tmp_path / "dev_sent_emo.csv").write_bytes(header.encode() + b"1,\xff\xfe,Ross\n")
    with pytest.raises(DataValidationError, match=r"dev_sent_emo\.csv: not a readable MELD CSV \(UnicodeDecodeError"):
        read_meld_csv(tmp_path, get_spec("meld_csv"))


# --------------------------------------------------------------------------- tables as written
def test_csv_ids_and_texts_as_written(tmp_path):
    (tmp_path / "p.csv").write_text("id,text\n001,None\n002,NA\n010,null\n011,n/a\n012,\n")
    df = read_prediction_input(tmp_path / "p.csv", id_column="id")
    assert df["utterance_id"].tolist() == ["001", "002", "010", "011", "012"]
    assert df["text"].tolist() == ["None", "NA", "null", "n/a", ""]


def test_vad_columns_still_parse_as_numbers(tmp_path):
    (tmp_path / "t.csv").write_text("id,text,V,A,D,dlg\n001,None,3.5,1,2.25,007\n002,NA,,NA,n/a,007\n")
    t = read_table(tmp_path / "t.csv", id="id", valence="V", arousal="A", dominance="D", dialogue="dlg")
    assert t["utterance_id"].tolist() == ["001", "002"] and t["text"].tolist() == ["None", "NA"]
    assert t["dialogue_id"].tolist() == ["007", "007"]
    assert t.loc[0, ["valence", "arousal", "dominance"]].tolist() == [3.5, 1.0, 2.25]
    assert t.loc[1, ["valence", "arousal", "dominance"]].isna().all()      # missing cells: unlabeled
    assert labeled_mask(t).tolist() == [True, False]


def test_jsonl_and_parquet_ids_and_texts_as_written(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "001", "text": "None", "V": 3.1, "A": "2", "D": 1}\n'
                                      '{"id": 7, "text": "NA", "V": null, "A": 1, "D": 1}\n')
    t = read_table(tmp_path / "t.jsonl", id="id", valence="V", arousal="A", dominance="D")
    assert t["utterance_id"].tolist() == ["001", "7"] and t["text"].tolist() == ["None", "NA"]
    assert t.loc[0, "valence"] == 3.1 and t.loc[0, "arousal"] == 2.0 and np.isnan(t.loc[1, "valence"])
    pd.DataFrame({"id": ["001", "002"], "text": ["None", None], "V": [1.5, None], "A": [1.0, 2.0],
                  "D": [1.0, 2.0]}).to_parquet(tmp_path / "t.parquet")
    t = read_table(tmp_path / "t.parquet", id="id", valence="V", arousal="A", dominance="D")
    assert t["utterance_id"].tolist() == ["001", "002"] and t["text"].tolist() == ["None", ""]
    assert t.loc[0, "valence"] == 1.5 and np.isnan(t.loc[1, "valence"])


def test_table_bad_number_and_empty_id_are_named(tmp_path):
    (tmp_path / "b.csv").write_text("id,text,V,A,D\n001,x,3,1,2\n002,y,high,1,2\n")
    with pytest.raises(DataValidationError, match=r"b\.csv: column 'V', data row 2: expected a number, got 'high'"):
        read_table(tmp_path / "b.csv", id="id", valence="V", arousal="A", dominance="D")
    (tmp_path / "e.csv").write_text("id,text\n001,x\n,y\n")
    with pytest.raises(DataValidationError, match=r"e\.csv: column 'id', data row 2: empty id"):
        read_table(tmp_path / "e.csv", id="id", require_labels=False)


# --------------------------------------------------------------------------- IEMOCAP: no label lost silently
TRANS = ("Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
         "Ses01F_impro01_M000 [007.5712-010.4750]: Do you have your forms?\n"
         "M: Yeah.\n"
         "Ses01F_impro01_F001 [010.0100-011.3925: Broken line.\n")
EVAL = ("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "[7.5712 - 10.4750\tSes01F_impro01_M000\tfru\t[2.0000, 3.0000, 3.0000]\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n")


def _release(root, sessions=(1,), eval_dirs=("ok",)):
    for s, how in zip(sessions, eval_dirs):
        d = root / f"Session{s}" / "dialog"
        (d / "transcriptions").mkdir(parents=True)
        (d / "transcriptions" / f"Ses0{s}F_impro01.txt").write_text(TRANS.replace("Ses01", f"Ses0{s}"))
        if how != "missing":
            (d / "EmoEvaluation").mkdir()
        if how == "ok":
            (d / "EmoEvaluation" / f"Ses0{s}F_impro01.txt").write_text(EVAL.replace("Ses01", f"Ses0{s}"))
    return root


def test_unparsable_header_and_utterance_lines_are_warned_with_file_and_line(tmp_path, caplog):
    root = _release(tmp_path)
    with caplog.at_level(logging.WARNING):
        df = read_iemocap(root)
    assert df["utterance_id"].tolist() == ["Ses01F_impro01_F000", "Ses01F_impro01_M000"]
    assert df["emotion"].tolist() == ["neu", None]           # M000's header lacks its closing ']'
    msgs = [r.getMessage() for r in caplog.records]
    efile = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    tfile = root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    assert any(f"1 EmoEvaluation line(s) look like a turn header but do not parse" in m and f"{efile}:5" in m
               for m in msgs)
    assert any("1 transcription line(s) look like an utterance but do not parse" in m and f"{tfile}:4" in m
               for m in msgs)


def test_sessions_without_labels_are_warned_with_counts(tmp_path, caplog):
    root = _release(tmp_path, sessions=(1, 2, 3), eval_dirs=("ok", "empty", "missing"))
    with caplog.at_level(logging.WARNING):
        df = read_iemocap(root)
    assert len(df) == 6 and labeled_mask(df).sum() == 1     # Session1 F000 only (M000's header is damaged)
    msgs = [r.getMessage() for r in caplog.records if "no labels for" in r.getMessage()]
    assert len(msgs) == 1
    assert ("no labels for 2 session(s) (EmoEvaluation folder missing in Session3; EmoEvaluation folder "
            "without *.txt files in Session2): their 4 utterance(s) are unlabeled") in msgs[0]


def test_real_release_warns_only_about_session5():
    root = require_data("iemocap", "IEMOCAP_full_release")
    logger = logging.getLogger("erc.data.utterances")
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        read_iemocap(root)
    finally:
        logger.removeHandler(handler)
    msgs = [r.getMessage() for r in records]
    assert not any("do not parse" in m or "get no label" in m for m in msgs)      # no false alarm
    assert sum("no labels for 1 session(s) (EmoEvaluation folder missing in Session5): "
               "their 2196 utterance(s) are unlabeled" in m for m in msgs) == 1
