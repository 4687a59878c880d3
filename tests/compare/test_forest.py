"""The Random Forest on V/A/D: metrics equal scikit-learn's, CV on train only, dialogue-whole folds."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

from erc.compare.forest import ForestGrid, fit_forest, forest_emotion_metrics, summarise_seeds


def fixed_input(seed=0, n=240):
    rng = np.random.default_rng(seed)
    means = np.array([[2.0, 4.0, 3.8], [4.0, 3.0, 3.2], [1.9, 2.2, 2.3], [3.0, 2.5, 2.9]])
    y = np.repeat(np.arange(4), n // 4)
    x = means[y] + rng.normal(0, 0.6, (n, 3))
    groups = np.array([f"d{i % 30}" for i in range(n)])
    return x, y, groups


GRID = ForestGrid(n_estimators=(20,), max_depth=(0, 3), min_samples_leaf=(1, 5))


def test_metrics_equal_sklearn_on_fixed_input():
    x, y, g = fixed_input(0)
    xt, yt, _ = fixed_input(1, n=120)
    names = ["ang", "hap", "sad", "neu"]
    res = forest_emotion_metrics(x, y, xt, yt, names, groups=g, grid=GRID, cv_folds=3, seed=0)
    # independent reference: the same search built directly from scikit-learn
    ref = GridSearchCV(RandomForestClassifier(random_state=0),
                       {"n_estimators": [20], "max_depth": [None, 3], "min_samples_leaf": [1, 5]},
                       scoring="f1_weighted", cv=StratifiedGroupKFold(3, shuffle=True, random_state=0))
    ref.fit(x, y, groups=g)
    y_ref = ref.predict(xt)
    np.testing.assert_array_equal(res.y_pred, y_ref)
    assert res.best_params == ref.best_params_
    assert res.cv_score == pytest.approx(ref.best_score_)
    m = res.metrics
    assert m["accuracy"] == pytest.approx(accuracy_score(yt, y_ref))
    assert m["weighted_f1"] == pytest.approx(f1_score(yt, y_ref, average="weighted"))
    assert m["macro_f1"] == pytest.approx(f1_score(yt, y_ref, average="macro"))
    per = f1_score(yt, y_ref, average=None)
    assert [m["per_class_f1"][n] for n in names] == pytest.approx(list(per))
    assert m["confusion_matrix"] == confusion_matrix(yt, y_ref).tolist()
    assert 0.5 < m["accuracy"] < 1.0  # separable-ish classes: well above chance (0.25)


def test_held_out_points_near_the_boundary_are_classified_by_side():
    # Classes differ in valence only: class 0 at V in 1.0..2.7, class 1 at V in 3.3..5.0 (step 0.1),
    # arousal and dominance constant. The closest points of each class (2.7 and 3.3) are repeated
    # 10 times, so every bootstrap sample holds them and every tree splits at V = 3.0.
    lo = np.round(np.arange(1.0, 2.75, 0.1), 2).tolist() + [2.7] * 9
    hi = np.round(np.arange(3.3, 5.05, 0.1), 2).tolist() + [3.3] * 9
    v = np.array(lo + hi)
    x = np.column_stack([v, np.full(len(v), 2.0), np.full(len(v), 4.5)])
    y = np.array([0] * len(lo) + [1] * len(hi))
    # held out: none of these valences is a training value; 2.95 and 3.05 sit next to the boundary
    v_test = np.array([1.05, 2.75, 2.85, 2.95, 3.05, 3.15, 3.25, 4.95])
    y_test = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert not set(v_test.round(2)) & set(v.round(2))
    x_test = np.column_stack([v_test, np.full(8, 2.0), np.full(8, 4.5)])
    res = forest_emotion_metrics(x, y, x_test, y_test, ["a", "b"], grid=GRID, cv_folds=2)
    np.testing.assert_array_equal(res.y_pred, y_test)
    assert res.metrics["accuracy"] == 1.0 and res.metrics["confusion_matrix"] == [[4, 0], [0, 4]]


def test_cv_folds_keep_dialogues_whole():
    x, y, g = fixed_input(0)
    search = fit_forest(x, y, groups=g, grid=GRID, cv_folds=3)
    assert isinstance(search.cv, StratifiedGroupKFold)
    for tr, va in search.cv.split(x, y, g):
        assert not set(g[tr]) & set(g[va])


def test_too_few_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than 2"):
        fit_forest(np.zeros((3, 3)), np.array([0, 0, 1]), grid=GRID)


def test_summary_mean_and_sample_std():
    rs = [{"accuracy": a, "weighted_f1": a, "macro_f1": a, "per_class_f1": {"x": a}} for a in (0.5, 0.7)]
    s = summarise_seeds(rs)
    assert s["accuracy"]["mean"] == pytest.approx(0.6)
    assert s["accuracy"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert s["per_class_f1"]["x"] == pytest.approx(0.6)
