"""Dialogue difficulty on hand-made dialogues; file round trip; the CLI stage on the synthetic corpus."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from erc.core.config import config_from_flat
from erc.data.batch import Dialogue
from erc.graph.difficulty import (
    DifficultyConfig,
    label_difficulty,
    label_difficulty_one,
    load_difficulty,
    loss_difficulty,
    model_difficulty,
    run_difficulty,
    save_difficulty,
)


def _dlg(did: str, labels: list[int], d: int = 3) -> Dialogue:
    n = len(labels)
    return Dialogue(dialogue_id=did, features={"text": np.zeros((n, d), np.float32)},
                    labels=np.asarray(labels, np.int64), speakers=np.zeros(n, np.int64))


def test_label_difficulty_by_hand():
    # one emotion throughout: entropy 0, no shifts
    assert label_difficulty_one([2, 2, 2, 2], 4) == 0.0
    # [0, 0, 1, 1]: p = (1/2, 1/2) -> H = log 2, / log 4 = 0.5 ; shifts 1 of 3 pairs
    assert label_difficulty_one([0, 0, 1, 1], 4) == pytest.approx(0.5 + 1 / 3)
    # [0, 1, 2, 3]: uniform over 4 -> 1.0 ; every pair shifts -> 1.0
    assert label_difficulty_one([0, 1, 2, 3], 4) == pytest.approx(2.0)
    # unlabelled utterances are skipped: labelled sequence [0, 1, 0] -> p=(2/3,1/3), shifts 2/2
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(4)
    assert label_difficulty_one([0, -1, 1, -1, 0], 4) == pytest.approx(h + 1.0)
    assert label_difficulty_one([-1, -1], 4) == 0.0
    scores = label_difficulty([_dlg("easy", [2, 2, 2]), _dlg("hard", [0, 1, 2, 3])], num_classes=4)
    assert scores["easy"] < scores["hard"]
    with pytest.raises(ValueError, match="num_classes"):
        label_difficulty_one([0, 5], 4)


def test_loss_difficulty_means_per_dialogue():
    losses = torch.tensor([1.0, 3.0, 0.5, 9.0, 2.0])
    batch = torch.tensor([0, 0, 1, 1, 1])
    labels = torch.tensor([0, 1, 2, -1, 1])  # the 9.0 node is unlabelled
    assert loss_difficulty(losses, batch, ["a", "b"], labels) == {"a": 2.0, "b": 1.25}


def test_model_difficulty_uses_per_utterance_cross_entropy():
    d1, d2 = _dlg("d1", [0, 1]), _dlg("d2", [1, 1, -1])

    def logits_fn(batch):  # fixed logits: class 0 strongly everywhere
        return torch.tensor([[2.0, 0.0]]).repeat(batch.num_nodes, 1)

    got = model_difficulty(logits_fn, [d1, d2], batch_size=1)
    lo, hi = -math.log(math.exp(2) / (math.exp(2) + 1)), -math.log(1 / (math.exp(2) + 1))
    assert got["d1"] == pytest.approx((lo + hi) / 2)
    assert got["d2"] == pytest.approx(hi)


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_save_load_round_trip(tmp_path, suffix):
    scores = {"Ses01F_impro01": 0.25, "b": 1.5, "c": 0.0}
    path = save_difficulty(tmp_path / f"d{suffix}", scores, {"Ses01F_impro01": 3, "b": 4, "c": 5})
    assert load_difficulty(path) == scores
    if suffix == ".csv":
        lines = path.read_text().splitlines()
        assert lines[0] == "dialogue_id,difficulty,num_utterances"
        assert lines[1].startswith("c,")  # sorted easy -> hard


def test_load_difficulty_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("dialogue_id,difficulty\na,0.5\nb,hard\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 3: field 'difficulty'"):
        load_difficulty(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,score\na,1\n")
    with pytest.raises(ValueError, match="missing column"):
        load_difficulty(nocol)
    with pytest.raises(FileNotFoundError, match="cli.py difficulty"):
        load_difficulty(tmp_path / "absent.csv")


def test_run_difficulty_on_synthetic_corpus_labels(tmp_path):
    """The training split's dialogues and only those are scored (a test dialogue in a curriculum file would
    be a leak), and a score equals entropy/log C + shift rate computed here by hand."""
    from collections import Counter

    from erc.data.dialogues import load_splits

    out = tmp_path / "diff.csv"
    cfg = config_from_flat(DifficultyConfig, dataset="synthetic", synthetic_dialogues=20, output=str(out))
    scores = run_difficulty(cfg)
    assert out.is_file() and (tmp_path / "diff.config.yaml").is_file()
    assert load_difficulty(out) == pytest.approx(scores)
    splits = load_splits(cfg.data)
    assert sorted(scores) == sorted(d.dialogue_id for d in splits.train)
    assert not set(scores) & {d.dialogue_id for d in [*splits.valid, *splits.test]}
    hand = {}
    for d in splits.train:
        y = [int(v) for v in d.labels if v >= 0]
        counts = Counter(y)
        entropy = -sum(c / len(y) * math.log(c / len(y)) for c in counts.values()) / math.log(splits.num_classes)
        shifts = sum(a != b for a, b in zip(y, y[1:])) / (len(y) - 1)
        hand[d.dialogue_id] = entropy + shifts
    assert scores == pytest.approx(hand, abs=1e-12)
    assert len(set(np.round(list(hand.values()), 9))) > 1     # the corpus has easier and harder dialogues
