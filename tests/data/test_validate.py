"""Every validation error names the file, the dialogue and the field."""
from __future__ import annotations

import numpy as np
import pytest

from erc.data.readers import read_pickle
from erc.data.registry import get_spec
from erc.data.synthetic_pickles import build_layout, write_layout_pickle
from erc.data.validate import DataValidationError


def _broken(tmp_path, name, mutate):
    spec = get_spec(name)
    f = dict(zip(spec.fields, build_layout(name, n_dialogues=6, seed=1)))
    vid = f["trainVid"][0]
    mutate(f, vid)
    path = write_layout_pickle(tmp_path / "broken.pkl", name, [f[k] for k in spec.fields])
    return path, spec, vid


def _expect(path, spec, *patterns):
    with pytest.raises(DataValidationError) as info:
        read_pickle(path, spec)
    msg = str(info.value)
    assert str(path) in msg
    for p in patterns:
        assert p in msg, msg
    return msg


def test_wrong_tuple_length(tmp_path):
    obj = build_layout("graphsmile_iemocap4", n_dialogues=4)
    path = write_layout_pickle(tmp_path / "short.pkl", "graphsmile_iemocap4", obj)
    _expect(path, get_spec("iemocap6"), "expected a 12-tuple", "videoText0", "'iemocap6'", "got a 9-tuple")


def test_feature_dim_differs_from_registry(tmp_path):
    def m(f, vid):
        f["videoAudio"][vid] = np.zeros((len(f["videoLabels"][vid]), 1000), np.float32)
    _expect(*_broken(tmp_path, "iemocap6", m)[:2], "videoAudio", "expected feature dimension 1582", "got 1000")


def test_feature_dim_differs_between_utterances(tmp_path):
    def m(f, vid):
        rows = [np.zeros(342, np.float32) for _ in f["videoLabels"][vid]]
        rows[2] = np.zeros(341, np.float32)
        f["videoVisual"][vid] = rows
    path, spec, vid = _broken(tmp_path, "iemocap6", m)
    _expect(path, spec, vid, "videoVisual", "utterance 0 has 342, utterance 2 has 341")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features(tmp_path, bad):
    def m(f, vid):
        f["videoText2"][vid][1, 5] = bad
    path, spec, vid = _broken(tmp_path, "iemocap6", m)
    _expect(path, spec, vid, "videoText2", "non-finite", "utterance 1, feature 5")


def test_lengths_differ(tmp_path):
    def m(f, vid):
        f["videoSpeakers"][vid] = f["videoSpeakers"][vid][:-1]
    path, spec, vid = _broken(tmp_path, "iemocap6", m)
    n = len(dict(zip(spec.fields, build_layout("iemocap6", n_dialogues=6, seed=1)))["videoLabels"][vid])
    _expect(path, spec, vid, "lengths", f"videoLabels={n}", f"videoSpeakers={n - 1}")


def test_empty_dialogue(tmp_path):
    def m(f, vid):
        for k in f:
            if not k.endswith("Vid"):
                f[k][vid] = []
    path, spec, vid = _broken(tmp_path, "cosmic_iemocap", m)
    _expect(path, spec, vid, "empty dialogue")


def test_label_out_of_range(tmp_path):
    def m(f, vid):
        f["videoLabels"][vid] = [6] + list(f["videoLabels"][vid])[1:]
    path, spec, vid = _broken(tmp_path, "cosmic_iemocap", m)
    _expect(path, spec, vid, "videoLabels", "label 6 at utterance 0 outside the class range 0..5")


def test_sentiment_out_of_range(tmp_path):
    def m(f, vid):
        f["videoSentiments"][vid] = [3] * len(f["videoLabels"][vid])
    path, spec, vid = _broken(tmp_path, "meld", m)
    _expect(path, spec, vid, "videoSentiments", "outside the class range 0..2")


def test_ids_in_two_splits(tmp_path):
    def m(f, vid):
        f["testVid"] = list(f["testVid"]) + [vid]
    path, spec, vid = _broken(tmp_path, "iemocap6", m)
    _expect(path, spec, vid, "trainVid/testVid", "two splits")


def test_split_id_without_data(tmp_path):
    def m(f, vid):
        f["testVid"] = list(f["testVid"]) + ["ghost"]
    path, spec, _ = _broken(tmp_path, "iemocap6", m)
    _expect(path, spec, "'ghost'", "testVid", "no entry in videoLabels")


def test_fractional_labels_in_class_layout(tmp_path):
    def m(f, vid):
        f["videoLabels"][vid] = [0.5] * len(f["videoLabels"][vid])
    path, spec, vid = _broken(tmp_path, "graphsmile_iemocap4", m)
    _expect(path, spec, vid, "videoLabels", "fractional")
