"""The real COSMIC / MELD / IEMOCAP files in ../shared/data (skipped when absent)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits
from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from tests.conftest import require_data


def _counts(s):
    return tuple(len(s.split(n)) for n in ("train", "valid", "test")), sum(
        len(d) for n in ("train", "valid", "test") for d in s.split(n))


def test_cosmic_iemocap_counts_and_timing_join():
    pkl = require_data("cosmic", "iemocap.pkl")
    root = require_data("iemocap", "IEMOCAP_full_release")
    s = load_splits(DialogueDataConfig(dataset="cosmic_iemocap", path=str(pkl), modalities=["text", "timing"],
                                       release_root=str(root), normalize=[]))
    assert _counts(s) == ((108, 12, 31), 7433)     # every utterance matched a release transcription
    assert all(d.dialogue_id.startswith("Ses05") for d in s.test)
    timing = np.concatenate([d.features["timing"] for d in s.train + s.valid + s.test])
    assert timing.shape == (7433, 4) and np.isfinite(timing).all()
    assert (timing[:, 0] > 0).all()                # real durations
    first = s.train[0]                              # Ses03F_impro06 opens "How you doing?" (M)
    assert first.dialogue_id == "Ses03F_impro06" and first.texts[0] == "How you doing?"


def test_cosmic_iemocap_join_agrees_with_release_labels():
    """Matched utterances of sessions 1-4 carry the same emotion in the release (or its ``xxx``)."""
    pkl = require_data("cosmic", "iemocap.pkl")
    root = require_data("iemocap", "IEMOCAP_full_release")
    from erc.data.timing import join_release_by_text
    from erc.data.utterances import read_iemocap

    corpus = read_corpus(get_spec("cosmic_iemocap"), pkl)
    rel = read_iemocap(root)
    got = join_release_by_text(list(corpus.dialogues.values()), rel, "real")
    emo = dict(zip(rel.utterance_id, rel.emotion))
    names = corpus.spec.label_names
    agree = other = 0
    for k, d in corpus.dialogues.items():
        if k.startswith("Ses05"):
            continue
        for lab, uid in zip(d.labels, got[k][2]):
            r = emo[uid]
            agree += r == names[lab]
            other += r not in (names[lab], "xxx")
    assert other == 0 and agree > 5700


def test_cosmic_meld_counts_and_csv_timing():
    pkl = require_data("cosmic", "meld.pkl")
    csv = require_data("meld")
    s = load_splits(DialogueDataConfig(dataset="cosmic_meld", path=str(pkl), meld_csv_dir=str(csv),
                                       modalities=["text", "timing"]))
    assert _counts(s) == ((1038, 114, 280), 13708)
    assert s.num_classes == 7 and s.sentiment_names == ("neutral", "positive", "negative")
    assert "\x92" not in "".join(t for d in s.train for t in d.texts)   # cp1252 repaired


def test_meld_csv_counts():
    csv = require_data("meld")
    s = load_splits(DialogueDataConfig(dataset="meld_csv", path=str(csv), modalities=["text", "timing"]))
    assert _counts(s) == ((1038, 114, 280), 13708)


def test_inspect_real_cosmic_iemocap(project_root):
    pkl = require_data("cosmic", "iemocap.pkl")
    out = subprocess.run([sys.executable, "cli.py", "inspect", str(pkl)], cwd=project_root,
                         capture_output=True, text=True, check=True).stdout
    assert "reader: cosmic_iemocap" in out
    assert "train:   108 dialogues,   5163 utterances" in out
    assert "valid:    12 dialogues" in out and "test :    31 dialogues" in out
    assert "dialogues: 151, utterances: 7433" in out
