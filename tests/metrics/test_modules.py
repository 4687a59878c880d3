"""The evaluate modules in erc/metrics, loaded by path, against hand computations."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest

from erc.core import metrics as core
from erc.core.metrics import metric_path

# Hand computation, two dimensions, three rows:
#   dim a: pred [1, 2, 3], true [1, 2, 4]  -> errors 0, 0, -1
#          MSE 1/3, MAE 1/3; means 2 and 7/3; var_p 2/3, var_t 14/9, cov 1 (population)
#          Pearson 1 / sqrt(2/3 * 14/9) = 0.98198; CCC 2 / (2/3 + 14/9 + 1/9) = 6/7
#   dim b: pred [2, 2, 2] (constant)     -> Pearson undefined (NaN), CCC 0 / (0 + 2/3 + 0) = 0
#          true [1, 2, 3]: errors 1, 0, -1 -> MSE 2/3, MAE 2/3
PRED = [[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]]
TRUE = [[1.0, 1.0], [2.0, 2.0], [4.0, 3.0]]


def test_vad_regression_module_by_path_matches_the_hand_computation():
    vad = evaluate.load(str(metric_path("vad_regression")), keep_in_memory=True)
    r = vad.compute(predictions=PRED, references=TRUE, names=["a", "b"])
    assert r["a_mse"] == pytest.approx(1 / 3) and r["a_mae"] == pytest.approx(1 / 3)
    assert r["a_rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert r["a_pearson"] == pytest.approx(1 / math.sqrt(2 / 3 * 14 / 9))
    assert r["a_ccc"] == pytest.approx(6 / 7)
    assert math.isnan(r["b_pearson"]) and r["b_ccc"] == 0.0
    assert r["b_mse"] == pytest.approx(2 / 3)
    assert r["mse"] == pytest.approx((1 + 2) / 6) and r["mae"] == pytest.approx(3 / 6)
    assert r["pearson"] == pytest.approx(r["a_pearson"])          # the mean leaves the undefined one out
    assert r["ccc"] == pytest.approx((6 / 7 + 0) / 2)
    # one column as plain floats; names default to "value"
    one = vad.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 4.0])
    assert one["value_ccc"] == pytest.approx(6 / 7)


def test_regression_inputs_stay_float64_through_evaluate():
    """float32 features would round 1 + 1e-9 to 1 and give MSE 0."""
    r = core.regression_metrics(np.array([[1.0 + 1e-9]] * 2), np.array([[1.0]] * 2), names=["v"])
    assert r["v_mse"] == pytest.approx(1e-18, rel=1e-6)


def test_emotion_module_by_path_matches_the_hand_computation():
    emo = evaluate.load(str(metric_path("emotion")), keep_in_memory=True)
    # true [0, 0, 1, 2, 2], pred [0, 1, 1, 2, 0]; classes a, b, c, d (d never seen)
    # a: tp 1 fp 1 fn 1 -> F1 1/2; b: tp 1 fp 1 fn 0 -> 2/3; c: tp 1 fp 0 fn 1 -> 2/3; d: 0
    r = emo.compute(predictions=[0, 1, 1, 2, 0], references=[0, 0, 1, 2, 2], label_names=["a", "b", "c", "d"])
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["per_class_f1"] == pytest.approx({"a": 0.5, "b": 2 / 3, "c": 2 / 3, "d": 0.0})
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 2 / 3 + 0) / 4)
    assert r["weighted_f1"] == pytest.approx((2 * 0.5 + 1 * 2 / 3 + 2 * 2 / 3) / 5)   # support 2, 1, 2, 0
    assert r["confusion_matrix"] == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert r["labels"] == ["a", "b", "c", "d"] and r["n"] == 5
    assert emo.compute(predictions=[0, 1], references=[1, 1])["labels"] == ["0", "1"]  # default names


def test_core_metrics_equal_the_modules_on_random_inputs():
    """erc.core.metrics calls the modules' own computation: the same numbers as evaluate.load(...).compute."""
    rng = np.random.default_rng(0)
    emo = evaluate.load(str(metric_path("emotion")), keep_in_memory=True)
    vad = evaluate.load(str(metric_path("vad_regression")), keep_in_memory=True)
    for _ in range(5):
        y_true, y_pred = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
        direct = emo.compute(predictions=y_pred, references=y_true, label_names=["a", "b", "c", "d"])
        assert core.classification_metrics(y_true, y_pred, ["a", "b", "c", "d"]) == direct
        pred, true = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
        assert core.regression_metrics(pred, true, names=["v", "a", "d"]) == pytest.approx(
            vad.compute(predictions=pred, references=true, names=["v", "a", "d"]))
    assert core.regression_metrics(PRED, TRUE, names=["a", "b"])["a_ccc"] == pytest.approx(6 / 7)
    with pytest.raises(ValueError, match="unknown metric module"):
        metric_path("bleu")


def test_the_module_folders_hold_the_computation_they_import():
    """evaluate copies a module's relative imports along: the computation file sits beside each module."""
    for name in ("emotion", "vad_regression"):
        source = (metric_path(name) / f"{name}.py").read_text()
        assert f"from .{name}_scores import " in source
        assert (metric_path(name) / f"{name}_scores.py").is_file()


def test_training_code_does_not_import_evaluate_or_transformers():
    """The graph stage's process computes metrics without evaluate (which imports transformers.pipelines)."""
    code = ("import sys, erc.core.metrics, erc.graph.train, erc.graph.predict; "
            "import erc.core.metrics as m; m.classification_metrics([0, 1], [0, 1], ['a', 'b']); "
            "print(sorted(k for k in ('evaluate', 'transformers', 'datasets') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
