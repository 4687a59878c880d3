"""`cli.py inspect` and `cli.py load-data` on synthetic files."""
from __future__ import annotations

import subprocess
import sys

import pytest

from erc.data.inspect import describe
from erc.data.synthetic_pickles import build_layout, write_layout_pickle


def test_describe_graphsmile_iemocap6(tmp_path):
    obj = build_layout("iemocap6", n_dialogues=8, seed=5)
    path = write_layout_pickle(tmp_path / "i6.pkl", "iemocap6", obj)
    out = describe(path)
    first = obj[10][0]                                   # trainVid[0]
    n_train = sum(len(obj[2][v]) for v in obj[10])
    assert "reader: iemocap6 (layout pickle)" in out
    assert "tuple fields (12): videoIDs, videoSpeakers, videoLabels, videoText0" in out
    assert f"train: {len(obj[10]):5d} dialogues, {n_train:6d} utterances" in out
    assert "valid: not in file (carved from train" in out
    assert "feature dims: text 4 layer(s) x 1024, audio 1582, visual 342" in out
    labels = [("hap", "sad", "neu", "ang", "exc", "fru")[i] for i in obj[2][first]]
    assert f"first dialogue: {first} ({len(labels)} utterances)" in out
    assert "  speakers: " + " ".join(obj[1][first]) in out
    assert "  labels:   " + " ".join(labels) in out
    assert f"first transcript: {obj[1][first][0]}: {obj[9][first][0]!r}" in out
    total = sum(len(v) for v in obj[2].values())
    hist = [sum(int(x == k) for v in obj[2].values() for x in v) for k in range(6)]
    assert f"label histogram: 0 hap: {hist[0]}, 1 sad: {hist[1]}" in out and sum(hist) == total


def test_describe_tells_9_tuples_apart(tmp_path):
    for name in ("graphsmile_iemocap4", "dialoguegcn_iemocap", "mosei"):
        out = describe(write_layout_pickle(tmp_path / f"{name}.pkl", name, n_dialogues=4))
        assert f"reader: {name} " in out and f"matching registry entries: {name}\n" in out


def test_describe_unknown_file(tmp_path):
    p = tmp_path / "x.pkl"
    p.write_bytes(__import__("pickle").dumps((1, 2, 3)))
    with pytest.raises(ValueError, match="no registered reader matches"):
        describe(p)


def test_cli_inspect_and_load_data(tmp_path, project_root):
    path = write_layout_pickle(tmp_path / "c.pkl", "cosmic_meld", n_dialogues=6)
    r = subprocess.run([sys.executable, "cli.py", "inspect", str(path)], cwd=project_root,
                       capture_output=True, text=True, check=True)
    assert "reader: cosmic_meld" in r.stdout
    r = subprocess.run([sys.executable, "cli.py", "load-data", "--dataset", "cosmic_iemocap", "--path", str(
        write_layout_pickle(tmp_path / "i.pkl", "cosmic_iemocap", n_dialogues=6)), "--modalities", "text",
        "--text-source", "hash", "--hash-dim", "32"], cwd=project_root, capture_output=True, text=True, check=True)
    assert "dims: text 32" in r.stdout
    r = subprocess.run([sys.executable, "cli.py", "load-data", "--modalities", "text", "smell"],
                       cwd=project_root, capture_output=True, text=True)
    assert r.returncode == 2 and "modalities: unknown ['smell']" in r.stderr
