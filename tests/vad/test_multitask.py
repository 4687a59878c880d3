"""Multi-task fine-tuning: an emotion head beside V/A/D, its loss by hand, saved and reloaded, learning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.data.registry import CLASS_SETS


def test_loss_is_mse_plus_weighted_cross_entropy_on_labelled_rows(tiny_encoder_dir):
    from erc.vad.model import VADRegressor

    labels6 = CLASS_SETS["iemocap6"].labels
    model = VADRegressor.from_encoder_name(str(tiny_encoder_dir), emotion_labels=labels6,
                                           emotion_loss_weight=0.5).eval()
    model.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    enc = model.tokenizer(["so happy", "what now", "leave me alone", "fine"], padding=True, return_tensors="pt")
    vad = torch.tensor([[2.0, 3.0, 4.0], [1.0, 2.0, 3.0], [3.0, 4.0, 5.0], [2.5, 2.5, 2.5]])
    emotion = torch.tensor([0, -100, 3, 5])
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=vad, emotion=emotion)
    z = (vad - torch.tensor([2.0, 3.0, 4.0])) / torch.tensor([1.0, 1.0, 1.0])
    mse = ((out.pred - z) ** 2).mean()
    logits = out.emotion_logits[[0, 2, 3]]
    log_softmax = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    ce = -log_softmax[torch.arange(3), torch.tensor([0, 3, 5])].mean()
    assert out.emotion_logits.shape == (4, 6)
    assert torch.allclose(out.loss, mse + 0.5 * ce, atol=1e-6)
    no_emotion = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=vad,
                       emotion=torch.full((4,), -100))
    assert torch.allclose(no_emotion.loss, mse, atol=1e-6)


def test_multitask_run_saves_the_head_and_learns_emotion(tmp_path, tiny_encoder_dir):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.data import build_splits
    from erc.vad.model import VADRegressor
    from erc.vad.train import run_finetune

    cfg = config_from_flat(FinetuneConfig, path="synthetic", synthetic_dialogues=20, epochs=4, lr=3.0e-3,
                           num_threads=1, plots=False, model=str(tiny_encoder_dir), emotion_loss_weight=1.0,
                           output_dir=str(tmp_path / "mt"))
    run_finetune(cfg)
    model = VADRegressor.from_pretrained(tmp_path / "mt" / "best_model").eval()
    assert model.config.emotion_labels == list(CLASS_SETS["iemocap6"].labels)
    assert model.config.emotion_loss_weight == 1.0 and model.emotion_head is not None
    test = build_splits(cfg.data, seed=cfg.seed).datasets["test"]
    names = CLASS_SETS["iemocap6"].labels
    keep = [i for i, e in enumerate(test["emotion"]) if e in names]
    texts = [test["text"][i] for i in keep]
    y = np.array([names.index(test["emotion"][i]) for i in keep])
    enc = model.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).emotion_logits.argmax(-1)
    accuracy = float((pred.numpy() == y).mean())
    majority = float(np.bincount(y).max() / len(y))
    assert accuracy > majority + 0.05, (accuracy, majority)


def test_data_without_emotion_labels_is_refused(tmp_path, tiny_encoder_dir):
    from erc.core.config import ConfigError, config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    table = tmp_path / "t.csv"
    rows = [f"text {i},{1 + i % 5},{2 + i % 3},{3}" for i in range(40)]
    table.write_text("text,valence,arousal,dominance\n" + "\n".join(rows) + "\n")
    cfg = config_from_flat(FinetuneConfig, path=str(table), epochs=1, num_threads=1, plots=False,
                           model=str(tiny_encoder_dir), emotion_loss_weight=1.0, output_dir=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="has no emotion label of the class set iemocap6"):
        run_finetune(cfg)
