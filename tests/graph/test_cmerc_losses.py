"""Each CMERC loss is zero (or its known minimum) on a constructed ideal case, positive otherwise."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from erc.graph.cmerc_config import CMERCConfig
from erc.graph.cmerc_losses import (
    cmerc_extra_loss,
    confidence_ranking_loss,
    context_contrastive_loss,
    modality_contrastive_loss,
    supervised_contrastive_loss,
)


def _logits_with_conf(conf: list[float], pred: list[int], k: int = 3) -> torch.Tensor:
    """Logits whose softmax has max prob ``conf[i]`` at class ``pred[i]`` (rest shared equally)."""
    rows = []
    for c, p in zip(conf, pred):
        probs = torch.full((k,), (1 - c) / (k - 1))
        probs[p] = c
        rows.append(probs.log())
    return torch.stack(rows)


def test_ranking_loss_zero_when_correct_more_confident_by_margin():
    # correct: 0.9, 0.8 (labels == preds); wrong: 0.5, 0.6
    logits = _logits_with_conf([0.9, 0.8, 0.5, 0.6], [0, 1, 2, 0])
    labels = torch.tensor([0, 1, 0, 1])
    assert confidence_ranking_loss(logits, labels, margin=0.1).item() == pytest.approx(0.0, abs=1e-7)


def test_ranking_loss_by_hand_when_order_violated():
    # correct 0.6 and 0.9; wrong 0.8. pairs: (0.6,0.8): relu(0.1-(-0.2)) = 0.3 ; (0.9,0.8): relu(0.1-0.1)=0
    logits = _logits_with_conf([0.6, 0.9, 0.8], [0, 1, 2])
    labels = torch.tensor([0, 1, 0])
    loss = confidence_ranking_loss(logits, labels, margin=0.1)
    assert loss.item() == pytest.approx(0.3 / 2, abs=1e-6)
    logits.requires_grad_(True)
    confidence_ranking_loss(logits, labels, margin=0.1).backward()
    assert logits.grad.abs().sum() > 0  # gradient reaches the confidences


def test_ranking_loss_against_slow_reference_and_ignores_unlabelled():
    torch.manual_seed(0)
    logits = torch.randn(30, 5) * 2
    labels = torch.randint(0, 5, (30,))
    labels[:4] = -1
    conf = logits.softmax(-1).max(-1).values
    pred = logits.argmax(-1)
    pos = [i for i in range(30) if labels[i] >= 0 and pred[i] == labels[i]]
    neg = [j for j in range(30) if labels[j] >= 0 and pred[j] != labels[j]]
    ref = sum(max(0.0, 0.2 - (conf[i] - conf[j]).item()) for i in pos for j in neg) / (len(pos) * len(neg))
    assert confidence_ranking_loss(logits, labels, margin=0.2).item() == pytest.approx(ref, rel=1e-5)


def test_ranking_loss_zero_without_both_groups():
    logits = _logits_with_conf([0.9, 0.4], [0, 1])
    assert confidence_ranking_loss(logits, torch.tensor([0, 1])).item() == 0.0  # all correct


def _slow_supcon(u: torch.Tensor, y: list[int], tau: float) -> float:
    u = F.normalize(u, dim=-1)
    terms = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denom = sum(math.exp((u[i] @ u[a]).item() / tau) for a in range(len(y)) if a != i)
        terms.append(-sum(math.log(math.exp((u[i] @ u[p]).item() / tau) / denom) for p in pos) / len(pos))
    return sum(terms) / len(terms)


def test_supcon_matches_slow_reference():
    torch.manual_seed(1)
    u = torch.randn(9, 4)
    y = [0, 1, 0, 2, 1, 1, 0, 3, -1]  # class 3 has no positive (not an anchor), -1 dropped
    got = supervised_contrastive_loss(u, torch.tensor(y), temperature=0.5).item()
    keep = [i for i, v in enumerate(y) if v >= 0]
    assert got == pytest.approx(_slow_supcon(u[keep], [y[i] for i in keep], 0.5), rel=1e-5)


def test_modality_loss_zero_on_ideal_case_positive_otherwise():
    # 2 modalities, 4 utterances: each utterance's text and audio reps identical, utterances orthogonal
    base = torch.eye(4) * 1.0
    ideal = modality_contrastive_loss({"t": base, "a": base.clone()}, temperature=0.05)
    # one positive per anchor -> minimum log 1 = 0; orthogonal negatives at tau 0.05 leave ~6 e^-20
    assert ideal.item() == pytest.approx(0.0, abs=1e-6)
    shuffled = modality_contrastive_loss({"t": base, "a": base[[1, 2, 3, 0]]}, temperature=0.05)
    assert shuffled.item() > 1.0
    torch.manual_seed(0)
    rand = modality_contrastive_loss([torch.randn(4, 4), torch.randn(4, 4)], temperature=0.05)
    assert rand.item() > ideal.item()


def test_modality_loss_three_modalities_minimum_is_log2():
    base = torch.eye(5)
    ideal = modality_contrastive_loss([base, base, base], temperature=0.02)
    assert ideal.item() == pytest.approx(math.log(2), abs=1e-5)


def test_modality_loss_rejects_mismatched_shapes_and_single_modality():
    with pytest.raises(ValueError, match="same N, d"):
        modality_contrastive_loss([torch.randn(3, 4), torch.randn(3, 5)])
    with pytest.raises(ValueError, match=">= 2"):
        modality_contrastive_loss({"t": torch.randn(3, 4)})


def test_context_loss_minimal_on_ideal_case_positive_otherwise():
    # 3 emotions x 2 utterances; ideal: same-emotion reps identical, classes orthogonal
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    ideal_reps = torch.eye(3)[labels]
    ideal = context_contrastive_loss(ideal_reps, labels, temperature=0.05)
    assert ideal.item() == pytest.approx(0.0, abs=1e-6)  # one positive per anchor -> log 1 = 0
    wrong = context_contrastive_loss(torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])], labels, temperature=0.05)
    assert wrong.item() > 1.0


def test_context_loss_with_two_positives_reaches_log2():
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    ideal = context_contrastive_loss(torch.eye(2)[labels], labels, temperature=0.02)
    assert ideal.item() == pytest.approx(math.log(2), abs=1e-5)


def test_supcon_gradients_are_finite():
    reps = torch.randn(6, 8, requires_grad=True)
    loss = context_contrastive_loss(reps, torch.tensor([0, 0, 1, 1, -1, 2]), temperature=0.1)
    loss.backward()
    assert torch.isfinite(reps.grad).all() and reps.grad.abs().sum() > 0


def test_cmerc_extra_loss_weighted_sum_and_off_by_default():
    torch.manual_seed(0)
    logits = torch.randn(8, 3, requires_grad=True)
    labels = torch.randint(0, 3, (8,))
    reps = {"t": torch.randn(8, 4, requires_grad=True), "a": torch.randn(8, 4, requires_grad=True)}
    fused = torch.randn(8, 6)
    off = cmerc_extra_loss(CMERCConfig(), logits, labels, reps, fused)
    assert off.total.item() == 0.0 and off.parts == {}
    cfg = CMERCConfig(rank_coef=0.5, mscl_coef=0.25, cscl_coef=2.0, cl_temperature=0.2)
    out = cmerc_extra_loss(cfg, logits, labels, reps, fused)
    expect = (0.5 * confidence_ranking_loss(logits, labels, cfg.rank_margin)
              + 0.25 * modality_contrastive_loss(reps, 0.2) + 2.0 * context_contrastive_loss(fused, labels, 0.2))
    assert out.total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert set(out.parts) == {"loss_rank", "loss_mscl", "loss_cscl"}
    out.total.backward()
    assert reps["t"].grad is not None and reps["t"].grad.abs().sum() > 0
    # a single modality: mscl skipped, not an error
    one = cmerc_extra_loss(cfg, logits, labels, {"t": reps["t"]}, fused)
    assert "loss_mscl" not in one.parts


def test_config_defaults_off_and_paper_values():
    cfg = CMERCConfig()
    assert not cfg.curriculum and cfg.rank_coef == cfg.mscl_coef == cfg.cscl_coef == 0.0 and not cfg.any_loss
    iem = CMERCConfig.paper_defaults("IEMOCAP-6")
    assert (iem.rank_coef, iem.mscl_coef, iem.cscl_coef, iem.epoch_ratio) == (0.005, 0.05, 0.05, 0.15)
    meld = CMERCConfig.paper_defaults("meld")
    assert (meld.rank_coef, meld.mscl_coef, meld.cscl_coef, meld.epoch_ratio) == (0.002, 0.15, 0.15, 0.4)
    with pytest.raises(ValueError, match="epoch_ratio"):
        CMERCConfig(epoch_ratio=0.0)


def test_cmerc_loss_for_batch_reads_model_output_fields():
    from types import SimpleNamespace

    from erc.graph.cmerc_losses import cmerc_loss_for_batch

    torch.manual_seed(0)
    out = SimpleNamespace(emotion_logits=torch.randn(5, 3), fused=torch.randn(5, 4),
                          modality_reps={"ta:t": torch.randn(5, 4), "ta:a": torch.randn(5, 4)})
    batch = SimpleNamespace(labels=torch.tensor([0, 1, 1, -1, 2]))
    cfg = CMERCConfig(rank_coef=1.0, mscl_coef=1.0, cscl_coef=1.0)
    got = cmerc_loss_for_batch(out, batch, cfg)
    ref = cmerc_extra_loss(cfg, out.emotion_logits, batch.labels, out.modality_reps, out.fused)
    assert got.total.item() == pytest.approx(ref.total.item()) and got.total.item() > 0


def test_loss_hook_matches_train_graph_contract():
    from types import SimpleNamespace

    from erc.graph.cmerc_losses import make_cmerc_loss_hook

    assert make_cmerc_loss_hook(CMERCConfig()) is None  # all off -> no hook
    # any object with the CMERC field names works (e.g. the train-graph config)
    hook = make_cmerc_loss_hook(SimpleNamespace(rank_coef=0.0, mscl_coef=0.0, cscl_coef=1.0, cl_temperature=0.5))
    out = SimpleNamespace(emotion_logits=torch.randn(4, 2), fused=torch.randn(4, 3), modality_reps={})
    batch = SimpleNamespace(labels=torch.tensor([0, 0, 1, 1]))
    total, parts = hook(out, batch, 3)
    assert set(parts) == {"loss_cscl"}
    assert total.item() == pytest.approx(context_contrastive_loss(out.fused, batch.labels, 0.5).item())
