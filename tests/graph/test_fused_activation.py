"""leaky_relu_dropout: leaky ReLU then inverted dropout with dropout_keep_mask's draws, values and
gradients equal bit for bit to the composed autograd reference on the same mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from erc.data.batch import Dialogue, collate_dialogues
from erc.graph.layers import dropout_keep_mask, leaky_relu_dropout
from erc.graph.model import GraphModelConfig, GraphSmile


def _reference(z, p, training, slope=0.01):
    """The composed form: leaky ReLU, then the same keep mask scaled by 1 / (1 - p)."""
    y = F.leaky_relu(z, slope)
    if training and p > 0:
        y = y * dropout_keep_mask(y, p) * (1.0 / (1.0 - p))
    return y


def _both(z0: torch.Tensor, p: float, slope: float = 0.01):
    """(output, dL/dz) of the composed reference and of the fused function, same seed, same upstream grad."""
    g = torch.randn_like(z0)
    got = []
    for fused in (False, True):
        z = z0.clone().requires_grad_(True)
        torch.manual_seed(7)
        y = leaky_relu_dropout(z * 1, p, True, slope) if fused else _reference(z * 1, p, True, slope)
        y.backward(g)
        got.append((y.detach(), z.grad, torch.rand(1)))   # the RNG after: same draws consumed
    return got


def test_keep_mask_rate_and_seed():
    x = torch.empty(1000, 1000)
    for p in (0.1, 0.5):
        torch.manual_seed(0)
        keep = dropout_keep_mask(x, p)
        assert keep.dtype == torch.bool and keep.shape == x.shape
        assert abs(keep.float().mean().item() - (1 - p)) < 0.002   # 1e6 draws: std 5e-4
        torch.manual_seed(0)
        assert torch.equal(dropout_keep_mask(x, p), keep)
    assert dropout_keep_mask(x, 0.0).all()


def test_fused_equals_composed_bitwise():
    torch.manual_seed(0)
    z0 = torch.randn(37, 19)
    z0[0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    (y_ref, g_ref, r_ref), (y, g, r) = _both(z0, 0.2)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref) and torch.equal(r, r_ref)
    assert (y == 0).any() and (y < 0).any()                     # both branches and dropped elements exercised
    kept = y != 0
    assert torch.allclose(y[kept], F.leaky_relu(z0)[kept] / 0.8)   # kept elements scaled by 1 / (1 - p)
    (y_ref, g_ref, _), (y, g, _) = _both(z0.double(), 0.5, slope=0.2)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_eval_and_p0_are_plain_leaky_relu():
    z = torch.tensor([[-2.0, 0.0, 3.0]])
    assert torch.equal(leaky_relu_dropout(z.clone(), 0.2, False), torch.tensor([[-0.02, 0.0, 3.0]]))
    assert torch.equal(leaky_relu_dropout(z.clone(), 0.0, True), torch.tensor([[-0.02, 0.0, 3.0]]))


def test_model_training_step_equals_composed_model():
    """A GraphSmile training step with the fused activation equals one with the composed autograd form on
    the same draws: same losses and gradients, bit for bit."""
    import erc.graph.layers as layers
    import erc.graph.model as model_mod

    rng = torch.Generator().manual_seed(0)
    dialogues = [Dialogue(dialogue_id=f"d{i}", speakers=(torch.arange(n) % 2).numpy(),
                          features={"text": torch.randn(n, 6, generator=rng).numpy(),
                                    "audio": torch.randn(n, 5, generator=rng).numpy()},
                          labels=torch.randint(0, 3, (n,), generator=rng).numpy())
                 for i, n in enumerate((6, 4))]
    batch = collate_dialogues(dialogues)
    cfg = GraphModelConfig(input_dims={"text": 6, "audio": 5}, num_classes=3, hidden_dim=8, layers=[2],
                           win_p=2, win_f=1, dropout=0.3, shift_win=3)

    def step(composed: bool):
        torch.manual_seed(0)
        m = GraphSmile(cfg).train()
        fused = layers.leaky_relu_dropout

        layers.leaky_relu_dropout = model_mod.leaky_relu_dropout = _reference if composed else fused
        try:
            out = m(batch)
        finally:
            layers.leaky_relu_dropout = model_mod.leaky_relu_dropout = fused
        loss = out.emotion_logits.square().sum() + out.shift_logits.sum()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]

    (l_ref, g_ref), (l, g) = step(True), step(False)
    assert torch.equal(l, l_ref) and len(g) == len(g_ref) > 10
    assert all(torch.equal(a, b) for a, b in zip(g, g_ref))
