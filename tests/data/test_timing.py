"""Timing features on a hand-made dialogue, and the release joins."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits
from erc.data.synthetic_pickles import write_layout_pickle
from erc.data.timing import join_release_by_text, normalize_text, timing_features
from erc.data.validate import DataValidationError


def test_timing_features_known_answers():
    start = [0.0, 2.5, 2.0, 6.0]
    end = [2.0, 4.0, 3.0, 6.05]
    texts = ["one two three four", "a b c", "hi", "ok go"]
    got = timing_features(np.array(start), np.array(end), texts)
    expected = np.array([
        # duration, words/s, gap to previous, overlap with previous
        [2.0, 4 / 2.0, 0.0, 0.0],     # first turn: no previous
        [1.5, 3 / 1.5, 0.5, 0.0],     # starts 0.5 s after 2.0
        [1.0, 1 / 1.0, 0.0, 2.0],     # starts at 2.0, previous ended at 4.0: 2 s overlap
        [0.05, 2 / 0.1, 3.0, 0.0],    # duration under 0.1 s: rate uses 0.1 s
    ], dtype=np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_normalize_text():
    assert normalize_text("  Don't  KNOW... ") == "dontknow"
    assert normalize_text("Café—now") == normalize_text("cafe now")


class _Len(SimpleNamespace):
    def __init__(self, ns):
        super().__init__(**vars(ns))

    def __len__(self):
        return len(self.texts)


def _release():
    return pd.DataFrame({
        "utterance_id": ["D_F000", "D_M000", "D_F001", "D_M001", "D_F002"],
        "dialogue_id": ["D"] * 5, "speaker": ["F", "M", "F", "M", "F"],
        "start": [0.0, 1.0, 2.0, 3.0, 4.0], "end": [0.9, 1.9, 2.9, 3.9, 4.9],
        "text": ["Yeah.", "Hello there", "Yeah.", "[LAUGHTER] no", "Yeah!"]})


def test_release_join_in_order_with_duplicates():
    # COSMIC-like: utterance 1 dropped; repeated "Yeah." must take the LATER transcript lines in order
    dlg = _Len(SimpleNamespace(dialogue_id="D", speakers=["F", "F", "M"],
                               texts=["yeah", "Yeah", "[laughter] No."]))
    got = join_release_by_text([dlg], _release(), "test")
    start, end, uids = got["D"]
    assert uids == ["D_F000", "D_F001", "D_M001"]
    np.testing.assert_allclose(start, [0.0, 2.0, 3.0])


def test_release_join_fails_loudly():
    dlg = _Len(SimpleNamespace(dialogue_id="D", speakers=["F", "M"], texts=["Yeah.", "Goodbye"]))
    other = _Len(SimpleNamespace(dialogue_id="E", speakers=["F"], texts=["x"]))
    with pytest.raises(DataValidationError, match=r"2 utterance\(s\).*D#1 \(M: 'Goodbye'\), E#0"):
        join_release_by_text([dlg, other], _release(), "test")


def test_cosmic_pickle_timing_join_on_synthetic_release(tmp_path, synthetic_corpus, synthetic_release):
    """COSMIC layout built from the corpus (no utterance ids) gets the corpus's own timestamps."""
    path = write_layout_pickle(tmp_path / "c.pkl", "cosmic_iemocap", corpus=synthetic_corpus)
    s = load_splits(DialogueDataConfig(dataset="cosmic_iemocap", path=str(path), modalities=["timing"],
                                       release_root=str(synthetic_release), normalize=[], timing_transform="none"))
    df = synthetic_corpus.utterances.set_index("dialogue_id")
    for d in s.train + s.valid + s.test:
        g = df.loc[[d.dialogue_id]]
        want = timing_features(g["start"].to_numpy(), g["end"].to_numpy(), list(g["text"]))
        np.testing.assert_allclose(d.features["timing"], want, rtol=1e-4, atol=1e-4)
    assert sum(len(d) for d in s.train + s.valid + s.test) == len(synthetic_corpus.utterances)


def test_graphsmile_pickle_timing_by_utterance_id(tmp_path, synthetic_corpus, synthetic_release):
    path = write_layout_pickle(tmp_path / "i6.pkl", "iemocap6", corpus=synthetic_corpus)
    s = load_splits(DialogueDataConfig(dataset="iemocap6", path=str(path), modalities=["text", "timing"],
                                       release_root=str(synthetic_release), normalize=[]))   # default log1p
    d = s.test[0]
    g = synthetic_corpus.utterances[synthetic_corpus.utterances.dialogue_id == d.dialogue_id]
    np.testing.assert_allclose(d.features["timing"][:, 0], np.log1p((g["end"] - g["start"]).to_numpy()),
                               rtol=1e-4)


def test_timing_unavailable_is_an_error(tmp_path):
    path = write_layout_pickle(tmp_path / "m.pkl", "meld", n_dialogues=4)
    with pytest.raises(DataValidationError, match="cannot provide \\['timing'\\]"):
        load_splits(DialogueDataConfig(dataset="meld", path=str(path), modalities=["text", "timing"]))
