"""leaky_relu_dropout: the same values, gradients and random draws as F.dropout(F.leaky_relu(z)), bit for bit."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from erc.data.batch import Dialogue, collate_dialogues
from erc.graph.layers import leaky_relu_dropout
from erc.graph.model import GraphModelConfig, GraphSmile


def _both(z0: torch.Tensor, p: float, slope: float = 0.01):
    """(output, dL/dz) of the composed reference and of the fused function, same seed, same upstream grad."""
    g = torch.randn_like(z0)
    got = []
    for fused in (False, True):
        z = z0.clone().requires_grad_(True)
        torch.manual_seed(7)
        y = leaky_relu_dropout(z * 1, p, True, slope) if fused else F.dropout(F.leaky_relu(z * 1, slope), p, True)
        y.backward(g)
        got.append((y.detach(), z.grad, torch.rand(1)))   # the RNG after: same draws consumed
    return got


def test_fused_equals_composed_bitwise():
    torch.manual_seed(0)
    z0 = torch.randn(37, 19)
    z0[0, :3] = torch.tensor([0.0, -0.0, 1e-30])
    (y_ref, g_ref, r_ref), (y, g, r) = _both(z0, 0.2)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref) and torch.equal(r, r_ref)
    assert torch.equal(torch.signbit(g), torch.signbit(g_ref))   # zeros keep their sign too
    assert (y == 0).any() and (y < 0).any()                     # both branches and dropped elements exercised
    (y_ref, g_ref, _), (y, g, _) = _both(z0.double(), 0.5, slope=0.2)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)


def test_eval_and_p0_are_plain_leaky_relu():
    z = torch.tensor([[-2.0, 0.0, 3.0]])
    assert torch.equal(leaky_relu_dropout(z.clone(), 0.2, False), torch.tensor([[-0.02, 0.0, 3.0]]))
    assert torch.equal(leaky_relu_dropout(z.clone(), 0.0, True), torch.tensor([[-0.02, 0.0, 3.0]]))


def test_model_training_step_equals_composed_model():
    """A GraphSmile training step with the fused activation equals one with Sequential(Linear, LeakyReLU, Dropout)
    and dropout(leaky_relu_(...)) in the stacks: same losses and gradients, bit for bit."""
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

        def reference(z, p, training, slope=0.01):
            return F.dropout(F.leaky_relu(z, slope), p, training)

        layers.leaky_relu_dropout = model_mod.leaky_relu_dropout = reference if composed else fused
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
