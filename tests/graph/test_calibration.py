"""Calibration metrics against hand computations; temperature scaling on a miscalibrated fixture."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from erc.core.calibration import (
    brier_score,
    calibration_metrics,
    calibration_metrics_from_logits,
    expected_calibration_error,
    fit_temperature,
    flatten_report,
    maximum_calibration_error,
    negative_log_likelihood,
    plot_reliability_diagram,
    reliability_bins,
    softmax,
    temperature_scaling_report,
)

# Six hand-made 3-class predictions. Confidences and correctness:
#   0.90 correct, 0.95 wrong   -> bin 14 (14/15=0.933.. < c <= 1)? 0.90 is in bin 13 (0.8667, 0.9333]
#   0.60 correct, 0.55 correct -> 0.60 in bin 8 (0.5333, 0.6], 0.55 in bin 8 too
#   0.40 wrong                 -> bin 5 (0.3333, 0.4]
#   0.34 correct               -> bin 5 as well
PROBS = np.array([
    [0.90, 0.05, 0.05],   # label 0, correct, conf 0.90
    [0.025, 0.95, 0.025],  # label 0, wrong,  conf 0.95
    [0.20, 0.60, 0.20],   # label 1, correct, conf 0.60
    [0.55, 0.25, 0.20],   # label 0, correct, conf 0.55
    [0.30, 0.30, 0.40],   # label 0, wrong,  conf 0.40 (argmax 2)
    [0.33, 0.33, 0.34],   # label 2, correct, conf 0.34
])
LABELS = np.array([0, 0, 1, 0, 0, 2])


def test_ece_equals_hand_computation():
    # Bins of width 1/15: (0.8667, 0.9333] holds {0.90 correct} -> |1 - 0.90| = 0.10
    #                     (0.9333, 1.0]    holds {0.95 wrong}   -> |0 - 0.95| = 0.95
    #                     (0.5333, 0.6]    holds {0.60, 0.55 both correct} -> |1 - 0.575| = 0.425
    #                     (0.3333, 0.4]    holds {0.40 wrong, 0.34 correct} -> |0.5 - 0.37| = 0.13
    hand = (1 / 6) * 0.10 + (1 / 6) * 0.95 + (2 / 6) * 0.425 + (2 / 6) * 0.13
    assert expected_calibration_error(PROBS, LABELS) == pytest.approx(hand, abs=1e-12)
    assert maximum_calibration_error(PROBS, LABELS) == pytest.approx(0.95, abs=1e-12)


def test_ece_matches_slow_reference_loop_on_random_predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 6)) * 3
    probs = softmax(logits)
    labels = rng.integers(0, 6, size=500)
    # obviously-correct reference: for each bin (lo, hi], loop over examples
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, 16)
    ref = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        members = [i for i in range(500) if lo < conf[i] <= hi]
        if members:
            acc = np.mean([pred[i] == labels[i] for i in members])
            ref += len(members) / 500 * abs(acc - np.mean(conf[members]))
    assert expected_calibration_error(probs, labels) == pytest.approx(ref, abs=1e-12)
    assert reliability_bins(probs, labels).count.sum() == 500


def test_bin_edges_are_right_closed():
    # confidence exactly 0.6 = 9/15 belongs to bin 8 = (8/15, 9/15]
    rb = reliability_bins(np.array([[0.6, 0.4]]), np.array([0]))
    assert rb.count[8] == 1 and rb.count.sum() == 1


def test_nll_brier_by_hand_and_unlabelled_rows_dropped():
    probs = np.array([[0.5, 0.5], [0.8, 0.2], [0.1, 0.9]])
    labels = np.array([0, 1, -1])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 2)
    # (0.5^2 + 0.5^2 + 0.8^2 + 0.8^2) / 2
    assert brier_score(probs, labels) == pytest.approx((0.5 + 1.28) / 2)
    m = calibration_metrics(probs, labels)
    assert set(m) == {"ece", "mce", "nll", "brier", "accuracy", "confidence"}
    assert m["accuracy"] == pytest.approx(0.5)  # first is a tie -> argmax 0 correct; second wrong
    assert m["confidence"] == pytest.approx(0.65)


def test_perfect_confident_predictions_are_calibrated():
    probs = np.eye(4)[[0, 1, 2, 3, 1]]
    labels = np.array([0, 1, 2, 3, 1])
    m = calibration_metrics(probs, labels)
    assert m["ece"] == 0.0 and m["mce"] == 0.0 and m["brier"] == 0.0
    assert m["nll"] == pytest.approx(0.0, abs=1e-9)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="rows"):
        calibration_metrics(np.ones((3, 2)) / 2, np.array([0, 1]))
    with pytest.raises(ValueError, match="class indices"):
        calibration_metrics(np.ones((2, 2)) / 2, np.array([0, 5]))


def _overconfident_fixture(seed: int, n: int = 2000, k: int = 4, scale: float = 4.0):
    """Logits of a model that is right ~60% of the time but reports ~99% confidence."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    base = rng.normal(size=(n, k))
    correct = rng.random(n) < 0.6
    target = np.where(correct, labels, (labels + rng.integers(1, k, size=n)) % k)
    base[np.arange(n), target] += 2.0
    return base * scale, labels


def test_temperature_scaling_lowers_validation_nll_on_overconfident_fixture():
    val_logits, val_labels = _overconfident_fixture(0)
    test_logits, test_labels = _overconfident_fixture(1)
    rep = temperature_scaling_report(val_logits, val_labels, test_logits, test_labels)
    assert rep["temperature"] > 1.5  # over-confident -> soften
    assert rep["val_after"]["nll"] < rep["val_before"]["nll"] - 0.1
    assert rep["val_after"]["ece"] < rep["val_before"]["ece"]
    assert rep["test_after"]["ece"] < rep["test_before"]["ece"]
    # argmax is unchanged by a temperature
    assert rep["test_after"]["accuracy"] == rep["test_before"]["accuracy"]
    # the fitted T is a minimum of validation NLL: nearby temperatures are no better
    t = rep["temperature"]
    nll = lambda tt: calibration_metrics_from_logits(val_logits, val_labels, tt)["nll"]  # noqa: E731
    assert nll(t) <= nll(t * 1.05) + 1e-9 and nll(t) <= nll(t / 1.05) + 1e-9
    flat = flatten_report(rep)
    assert flat["val_after_nll"] == rep["val_after"]["nll"] and "temperature" in flat


def test_temperature_below_one_for_underconfident_logits():
    logits, labels = _overconfident_fixture(2, scale=0.2)
    t = fit_temperature(torch.tensor(logits), torch.tensor(labels))
    assert t < 1.0


def test_reliability_diagram_png(tmp_path):
    out = plot_reliability_diagram(PROBS, LABELS, tmp_path / "sub" / "rel.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_calibration_from_records_stacks_dialogues():
    from erc.core.calibration import calibration_from_records

    logits = np.log(PROBS)
    records = [{"logits": logits[:2], "label": LABELS[:2]}, {"logits": logits[2:], "label": LABELS[2:]}]
    z, y, m = calibration_from_records(records)
    assert z.shape == (6, 3) and y.tolist() == LABELS.tolist()
    assert m["ece"] == pytest.approx(expected_calibration_error(PROBS, LABELS))


def test_best_epoch_calibration_writes_diagrams_and_flat_figures(tmp_path):
    from erc.core.calibration import best_epoch_calibration

    vz, vy = _overconfident_fixture(3, n=400)
    tz, ty = _overconfident_fixture(4, n=400)
    flat = best_epoch_calibration(vz, vy, tz, ty, tmp_path)
    for name in ("calibration.json", "reliability_test.png", "reliability_test_ts.png"):
        assert (tmp_path / name).is_file()
    assert flat["test_ece"] == pytest.approx(expected_calibration_error(softmax(tz), ty))
    assert flat["valid_ts_nll"] < flat["valid_nll"] and flat["temperature"] > 1


def test_temperature_hits_lower_bound_with_warning_on_perfect_validation(caplog):
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    labels = np.array([0, 1, 0])  # all correct: NLL decreases monotonically as T -> 0
    with caplog.at_level("WARNING"):
        t = fit_temperature(logits, labels)
    assert t < 0.1  # pushed towards the lower bound 0.01 until the gradient vanishes
    assert "no interior minimum" in caplog.text
