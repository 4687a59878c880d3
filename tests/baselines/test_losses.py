"""The masked NLL against hand computations, with padding and with class weights."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from erc.baselines.losses import inverse_frequency_weights, masked_nll


def _padded():
    """2 dialogues padded to 3 turns (lengths 3 and 1), 3 classes; probabilities chosen by hand."""
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
                          [[0.25, 0.25, 0.5], [0.98, 0.01, 0.01], [0.01, 0.01, 0.98]]])
    target = torch.tensor([[0, 1, 2], [1, 0, 0]])        # the pads carry a real-looking class (the original's)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    return probs.log(), target, mask


def test_padding_is_excluded_from_sum_and_count():
    lp, target, mask = _padded()
    # real turns: p(y) = 0.5, 0.8, 0.6, 0.25
    want = -(math.log(0.5) + math.log(0.8) + math.log(0.6) + math.log(0.25)) / 4
    assert float(masked_nll(lp, target, mask)) == pytest.approx(want, rel=1e-6)
    # padding written as target -1 instead of a mask: the same value
    t2 = target.masked_fill(mask == 0, -1)
    assert float(masked_nll(lp, t2)) == pytest.approx(want, rel=1e-6)
    # the pads' probabilities do not matter
    lp2 = lp.clone()
    lp2[1, 1:] = torch.tensor([0.5, 0.25, 0.25]).log()
    assert float(masked_nll(lp2, target, mask)) == pytest.approx(want, rel=1e-6)


def test_class_weights_give_the_weighted_mean_over_real_turns():
    lp, target, mask = _padded()
    w = torch.tensor([2.0, 0.5, 1.0])
    # classes of the real turns: 0, 1, 2, 1 -> weights 2, 0.5, 1, 0.5 (sum 4)
    want = -(2 * math.log(0.5) + 0.5 * math.log(0.8) + 1 * math.log(0.6) + 0.5 * math.log(0.25)) / 4.0
    assert float(masked_nll(lp, target, mask, weight=w)) == pytest.approx(want, rel=1e-6)
    # scaling every weight leaves the weighted mean unchanged
    assert float(masked_nll(lp, target, mask, weight=10 * w)) == pytest.approx(want, rel=1e-6)


def test_no_labelled_turn_is_an_exact_zero_with_a_gradient_path():
    lp = torch.zeros(2, 3, requires_grad=True)
    loss = masked_nll(lp, torch.tensor([-1, -1]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert lp.grad is not None and float(lp.grad.abs().sum()) == 0.0


def test_inverse_frequency_weights():
    labels = [np.array([0, 0, 0, 1]), np.array([1, 2, -1, 0])]   # counts 4, 2, 1 of 7 labelled
    w = inverse_frequency_weights(labels, 4)                     # class 3 absent: the largest weight
    assert w == pytest.approx([7 / 4, 7 / 2, 7 / 1, 7 / 1])
