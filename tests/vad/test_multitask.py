"""Multi-task fine-tuning: an emotion head beside V/A/D, its loss by hand, saved and reloaded, learning."""
from __future__ import annotations

import csv
import json

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
    # the run scores its emotion head on test (and validation every epoch): the same numbers as by hand
    from sklearn.metrics import f1_score

    metrics = json.loads((tmp_path / "mt" / "metrics.json").read_text())["test"]
    assert metrics["n_emotion"] == len(y)
    assert metrics["emotion_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["emotion_weighted_f1"] == pytest.approx(
        f1_score(y, pred.numpy(), labels=list(range(len(names))), average="weighted", zero_division=0), abs=1e-12)
    log = list(csv.DictReader((tmp_path / "mt" / "train_log.csv").open()))
    assert len(log) == 4 and all(0.0 <= float(r["val_emotion_weighted_f1"]) <= 1.0 for r in log)
    assert len({int(r["n_val_emotion"]) for r in log}) == 1 and int(log[0]["n_val_emotion"]) > 0
    from erc.vad.stage import _finetune_summary                      # the pipeline's summary.md says it too

    text = "\n".join(_finetune_summary(cfg, str))
    assert f"Emotion head (iemocap6, {len(y)} test utterances in its class set): accuracy {accuracy:.3f}" in text


def test_selection_on_the_emotion_head_picks_its_best_validation_epoch(tmp_path, tiny_encoder_dir):
    from erc.core.config import ConfigError, config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    args = dict(path="synthetic", synthetic_dialogues=20, epochs=4, lr=3.0e-3, num_threads=1, plots=False,
                model=str(tiny_encoder_dir), selection_metric="emotion_weighted_f1")
    with pytest.raises(ConfigError, match="selection_metric.*needs emotion_loss_weight > 0"):
        config_from_flat(FinetuneConfig, **args, output_dir=str(tmp_path / "none"))
    result = run_finetune(config_from_flat(FinetuneConfig, **args, emotion_loss_weight=1.0,
                                           output_dir=str(tmp_path / "sel")))
    log = list(csv.DictReader((tmp_path / "sel" / "train_log.csv").open()))
    scores = [float(r["val_emotion_weighted_f1"]) for r in log]
    assert result["metric_for_best"] == "val_emotion_weighted_f1"
    assert result["best_epoch"] == 1 + scores.index(max(scores))       # first of ties, as select_best
    assert result["validation"]["emotion_weighted_f1"] == pytest.approx(max(scores), abs=1e-12)


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
