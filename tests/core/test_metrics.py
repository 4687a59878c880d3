import numpy as np
import pytest

from erc.core.metrics import ccc, classification_metrics, pearson_r, regression_metrics
from erc.data.registry import VAD_NAMES


def test_ccc_known_values():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert ccc(x, x) == pytest.approx(1.0)
    # shifted by 1: cov = var = 1.25, mean diff 1 -> 2*1.25 / (1.25 + 1.25 + 1) = 2.5/3.5
    assert ccc(x + 1, x) == pytest.approx(2.5 / 3.5)
    assert pearson_r(x + 1, x) == pytest.approx(1.0)


def test_regression_metrics_per_dimension():
    true = np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 4.0], [3.0, 4.0, 5.0]])
    pred = true.copy()
    pred[:, 1] += 1.0
    m = regression_metrics(pred, true, VAD_NAMES)
    assert m["valence_mse"] == 0.0 and m["arousal_mse"] == 1.0
    assert m["mse"] == pytest.approx(1 / 3)
    assert m["arousal_pearson"] == pytest.approx(1.0)


def test_classification_metrics_confusion():
    m = classification_metrics([0, 0, 1, 2], [0, 1, 1, 2], ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert m["per_class_f1"]["c"] == 1.0
