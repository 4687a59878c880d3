"""erc.hrg.align: window InfoNCE against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch

from erc.hrg.align import window_info_nce


def _hand(t: float) -> float:
    """u0 = (1, 0), u1 = (0, 1); v0 = (1, 1), v1 = (0, 1); a = cos 45° = 1/sqrt 2."""
    a = 1 / math.sqrt(2)
    e = lambda x: math.exp(x / t)  # noqa: E731
    l_u0 = -math.log(e(a) / (e(a) + e(0) + e(0)))        # positives v0; negatives v1 (0), u1 (0)
    l_u1 = -math.log(e(1) / (e(1) + e(a) + e(0)))        # positive v1; negatives v0 (a), u0 (0)
    l_v0 = -math.log(e(a) / (e(a) + e(a) + e(a)))        # positive u0; negatives u1 (a), v1 (a)
    l_v1 = -math.log(e(1) / (e(1) + e(0) + e(a)))        # positive u1; negatives u0 (0), v0 (a)
    return (l_u0 + l_u1 + l_v0 + l_v1) / 4


@pytest.mark.parametrize("t", [1.0, 0.5])
def test_info_nce_matches_hand_computation(t):
    u = torch.zeros(2, 3, 2)
    v = torch.zeros(2, 3, 2)
    # window 0: slots 1, 2 valid; slot 0 holds junk that must be ignored
    u[0, 0], v[0, 0] = torch.tensor([5.0, -3.0]), torch.tensor([-2.0, 7.0])
    u[0, 1], u[0, 2] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    v[0, 1], v[0, 2] = torch.tensor([2.0, 2.0]), torch.tensor([0.0, 3.0])   # cosine: scale does not matter
    # window 1: a single valid node has no negative and is left out of the mean
    u[1, 2], v[1, 2] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    valid = torch.tensor([[False, True, True], [False, False, True]])
    assert float(window_info_nce(u, v, valid, t)) == pytest.approx(_hand(t), rel=1e-5)


def test_info_nce_gradient_and_empty_case():
    u = torch.randn(3, 4, 8, requires_grad=True)
    v = torch.randn(3, 4, 8)
    valid = torch.ones(3, 4, dtype=torch.bool)
    loss = window_info_nce(u, v, valid)
    loss.backward()
    assert torch.isfinite(u.grad).all() and float(u.grad.abs().sum()) > 0
    single = torch.zeros(3, 4, dtype=torch.bool)
    single[:, 0] = True
    assert float(window_info_nce(u, v, single).detach()) == 0.0
    # aligned views score lower than shuffled ones
    aligned = window_info_nce(v, v * 2.0, valid)
    shuffled = window_info_nce(v, v.flip(1), valid)
    assert float(aligned) < float(shuffled)
