"""Report helpers with known answers: the fine-tune seed summary and the tables."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from erc.compare.report import emotion_table, finetuned_seed_summary, seed_summary_table

DIMS = ("valence", "arousal", "dominance")


def _vad(x):
    return {"test": {**{f"{d}_{m}": x for d in DIMS for m in ("pearson", "ccc")}, "rmse": x}}


def test_seed_summary_mean_and_sample_std():
    settings = [SimpleNamespace(name="a", kind="fine-tuned"), SimpleNamespace(name="b", kind="fine-tuned"),
                SimpleNamespace(name="z", kind="zero-shot")]
    emo = {"iemocap4": {"settings": {n: {"summary": {k: {"mean": x} for k in ("accuracy", "weighted_f1", "macro_f1")}}
                                     for n, x in (("a", 0.5), ("b", 0.7), ("z", 0.1))}}}
    s = finetuned_seed_summary({"vad": {"a": _vad(0.4), "b": _vad(0.6), "z": _vad(0.0)}, "emotion": emo}, settings)
    assert s["models"] == ["a", "b"]
    assert s["emotion"]["iemocap4"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert s["emotion"]["iemocap4"]["accuracy"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s["vad_test"]["valence_pearson"]["mean"] == pytest.approx(0.5)
    head, rows = seed_summary_table(s)
    assert ["iemocap4 accuracy (forest)", "0.600 ± 0.141"] in rows
    assert finetuned_seed_summary({"vad": {}, "emotion": {}}, settings[:1]) is None  # one model: no summary


def test_emotion_table_row():
    per_seed = [{"best_params": {"max_depth": 8}, "cv_score": 0.4}, {"best_params": {"max_depth": 8}, "cv_score": 0.6}]
    entry = {"labels": ["x", "y"], "settings": {"s": {
        "uses_labels": False, "per_seed": per_seed,
        "summary": {"accuracy": {"mean": 0.5, "std": 0.01}, "weighted_f1": {"mean": 0.4, "std": 0.02},
                    "macro_f1": {"mean": 0.3, "std": 0.03}, "per_class_f1": {"x": 0.25, "y": 0.75}}}}}
    head, rows = emotion_table(entry)
    assert head[:5] == ["setting", "labels used (V/A/D)", "accuracy", "weighted F1", "macro F1"]
    assert rows == [["s", "no", "0.500 ± 0.010", "0.400 ± 0.020", "0.300 ± 0.030", "0.250", "0.750",
                     "0.500", "max_depth=8"]]
