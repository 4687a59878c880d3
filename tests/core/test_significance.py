"""Paired bootstrap of the weighted-F1 difference over test dialogues (erc.core.significance)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from erc.core.significance import (Predictions, dialogue_confusions, paired_bootstrap, pooled_predictions,
                                   weighted_f1_from_confusions)


def _corpus(n_dialogues=20, turns=6, seeds=2, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    d = np.repeat([f"d{i}" for i in range(n_dialogues)], turns)
    y = rng.integers(0, classes, size=len(d))
    return np.tile(d, seeds), np.tile(y, seeds)


def test_identical_predictions_give_p_one_and_zero_interval():
    d, y = _corpus()
    pred = np.random.default_rng(1).integers(0, 3, size=len(y))
    a = Predictions.from_rows(d, y, pred)
    r = paired_bootstrap(a, Predictions.from_rows(d, y, pred.copy()), resamples=2000, seed=3)
    assert r.delta == 0.0 and r.p_value == 1.0
    assert (r.ci_low, r.ci_high) == (0.0, 0.0)


def test_right_everywhere_against_wrong_everywhere_is_significant():
    d, y = _corpus(n_dialogues=12)
    right = Predictions.from_rows(d, y, y)
    wrong = Predictions.from_rows(d, y, (y + 1) % 3)          # wrong on every utterance of every dialogue
    r = paired_bootstrap(right, wrong, resamples=10000, seed=0)
    assert r.delta == pytest.approx(1.0) and r.score_a == 1.0 and r.score_b == 0.0
    assert r.p_value == pytest.approx(1 / 10001) and r.p_value < 0.01
    assert r.ci_low == pytest.approx(1.0) and r.ci_high == pytest.approx(1.0)
    flipped = paired_bootstrap(wrong, right, resamples=500, seed=0)
    assert flipped.delta == pytest.approx(-1.0) and flipped.p_value < 0.01


def test_observed_difference_of_a_hand_made_case():
    # two dialogues, classes 0/1; seeds pooled: A has two seeds, B two seeds
    # dialogue x: gold 0 0 1 ; dialogue y: gold 1 1
    # A seed 1: 0 0 1 | 1 1 (all right); A seed 2: 0 1 1 | 1 0
    # B seed 1: 0 0 0 | 0 0 ; B seed 2: 0 0 1 | 1 1
    d = ["x", "x", "x", "y", "y"] * 2
    y = [0, 0, 1, 1, 1] * 2
    a = Predictions.from_rows(d, y, [0, 0, 1, 1, 1] + [0, 1, 1, 1, 0])
    b = Predictions.from_rows(d, y, [0, 0, 0, 0, 0] + [0, 0, 1, 1, 1])
    # A pooled: class 0 support 4, TP 3, predicted 0 four times (3 right + one gold-1) -> F1 = 6/8 = 0.75
    #           class 1 support 6, TP 5, predicted 1 six times -> F1 = 10/12; weighted = (4*.75 + 6*10/12)/10 = 0.8
    # B pooled: class 0 support 4, TP 4, predicted 0 seven times -> F1 = 8/11; class 1 support 6, TP 3,
    #           predicted 3 -> F1 = 6/9; weighted = (4*8/11 + 6*6/9)/10 = 0.690909...
    expected = 0.8 - (4 * 8 / 11 + 6 * 6 / 9) / 10
    r = paired_bootstrap(a, b, resamples=200, seed=0)
    assert r.delta == pytest.approx(expected, abs=1e-12)
    assert r.score_a == pytest.approx(0.8) and r.dialogues == 2
    assert r.ci_low <= r.delta <= r.ci_high


def test_confusion_path_equals_sklearn_on_resamples():
    d, y = _corpus(n_dialogues=9, turns=5, classes=4, seed=2)
    pred = np.where(np.random.default_rng(5).random(len(y)) < 0.6, y, np.random.default_rng(6).integers(0, 4, len(y)))
    p = Predictions.from_rows(d, y, pred)
    dialogues = sorted(set(d))
    conf = dialogue_confusions(p, dialogues, 4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        picks = rng.integers(0, len(dialogues), size=len(dialogues))
        counts = np.bincount(picks, minlength=len(dialogues)).astype(float)
        rows = np.concatenate([np.flatnonzero(p.dialogue == dialogues[i]) for i in picks])
        want = f1_score(p.label[rows], p.pred[rows], average="weighted", zero_division=0)
        assert weighted_f1_from_confusions(counts @ conf, 4) == pytest.approx(want, abs=1e-12)


def test_same_seed_same_answer_and_different_dialogues_refused():
    d, y = _corpus()
    rng = np.random.default_rng(4)
    a = Predictions.from_rows(d, y, rng.integers(0, 3, len(y)))
    b = Predictions.from_rows(d, y, rng.integers(0, 3, len(y)))
    assert paired_bootstrap(a, b, 300, seed=7) == paired_bootstrap(a, b, 300, seed=7)
    other = Predictions.from_rows(np.char.add(d.astype(str), "_z"), y, y)
    with pytest.raises(ValueError, match="different dialogues"):
        paired_bootstrap(a, other, 10)


def test_pooled_predictions_concatenates_seed_tables():
    p = pooled_predictions([{"dialogue_id": ["a", "b"], "label": [0, 1], "pred": [0, 0]},
                            {"dialogue_id": ["a", "b"], "label": [0, 1], "pred": [1, 1]}])
    assert p.dialogue.tolist() == ["a", "b", "a", "b"] and p.pred.tolist() == [0, 0, 1, 1]
