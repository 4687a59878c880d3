"""erc.hrg.model on tiny local backbones: label scoring, predicted history, gradients, freezing, caching."""
from __future__ import annotations

import math

import pytest
import torch

from erc.core.config import ConfigError, config_from_flat
from erc.data.dialogues import load_splits
from erc.hrg.config import HRGTrainConfig
from erc.hrg.data import HRGDataset, make_hrg_loader
from erc.hrg.model import build_model, load_hrg_model, save_hrg_model

SMALL = dict(window=3, gat_heads=2, gat_head_dim=8, fusion_layers=1, scorer_dim=8, dropout=0.0, max_length=48)


def _setup(backbone, head="generate", modalities=("text", "audio", "timing"), **over):
    cfg = config_from_flat(HRGTrainConfig, dataset="synthetic", synthetic_dialogues=10,
                           modalities=list(modalities), backbone=str(backbone), head=head, **{**SMALL, **over})
    splits = load_splits(cfg.data_config())
    torch.manual_seed(0)
    model = build_model(cfg.model_fields(), cfg.modalities, splits.dims, splits.label_names,
                        splits.sentiment_names, cfg.align_weight, cfg.temperature)
    ds = HRGDataset(splits.train, model.info.tokenizer, cfg.max_length)
    batch = next(iter(make_hrg_loader(ds, model.info.pad_id, 3)))
    return model, batch, splits


def _corrupt(batch, seed=1):
    g = torch.Generator().manual_seed(seed)
    db = batch.dialogues
    db.labels = torch.randint(-1, 6, db.labels.shape, generator=g)
    db.sentiments = torch.randint(-1, 3, db.sentiments.shape, generator=g)
    return batch


@pytest.mark.parametrize("head", ["generate", "classify"])
def test_predicted_history_never_reads_gold_labels(tiny_t5_dir, head):
    model, batch, _ = _setup(tiny_t5_dir, head)
    model.eval()
    ref = model.predict(batch, history="predicted")
    gold = model.predict(batch, history="gold")
    batch = _corrupt(batch)
    again = model.predict(batch, history="predicted")
    assert torch.equal(ref.emotion_scores, again.emotion_scores)
    assert torch.equal(ref.sentiment_scores, again.sentiment_scores)
    # the gold ablation does read them: the same corruption changes its scores (the test can fail)
    assert not torch.allclose(gold.emotion_scores, model.predict(batch, history="gold").emotion_scores)


def test_every_generated_label_is_a_valid_class_scored_like_a_reference(tiny_t5_dir):
    model, batch, splits = _setup(tiny_t5_dir)
    model.eval()
    out = model.predict(batch)
    c, s = splits.num_classes, splits.num_sentiments
    assert out.emotion_scores.shape == (batch.num_nodes, c) and out.sentiment_scores.shape == (batch.num_nodes, s)
    assert ((out.emotion_pred >= 0) & (out.emotion_pred < c)).all()
    assert ((out.sentiment_pred >= 0) & (out.sentiment_pred < s)).all()
    # reference: the decoder's own log-probability of "<word> &" given the same memory, by teacher forcing
    tok = model.info.tokenizer
    ctx = model.context(batch)
    labels = model.label_table(batch.dialogues.speakers)
    hist = labels[batch.dialogues.speakers, torch.zeros_like(batch.dialogues.labels),
                  torch.zeros_like(batch.dialogues.labels)]
    targets = torch.tensor([0, 4])
    mem, mask = model.memory(ctx, targets, hist)
    got, _ = model.generate_scores(ctx, targets, hist)
    for row in range(2):
        for k, word in enumerate(["happy", "sad", "neutral", "angry", "excited", "frustrated"]):
            seq = tok(f"{word} &", add_special_tokens=False)["input_ids"]
            dec = torch.tensor([[model.info.decoder_start_id] + seq[:-1]])
            logits = model.backbone(encoder_outputs=(mem[row:row + 1],), attention_mask=mask[row:row + 1].long(),
                                    decoder_input_ids=dec).logits[0]
            ref = sum(float(torch.log_softmax(logits[i].detach(), -1)[t]) for i, t in enumerate(seq))
            assert got[row, k].item() == pytest.approx(ref, abs=1e-4)


def test_label_words_the_tokenizer_cannot_spell_are_refused(tiny_t5_dir):
    from erc.hrg.model import HRGModel, HRGModelConfig
    from erc.hrg.backbone import load_backbone

    cfg = HRGModelConfig(modalities=["text"], label_names=["neutral", "surprise", "fear"],
                         sentiment_names=["neutral", "positive", "negative"], **SMALL)
    with pytest.raises(ConfigError, match="cannot spell"):
        HRGModel(cfg, load_backbone(str(tiny_t5_dir), "generate"))


def test_removing_graph_edges_changes_the_output(tiny_t5_dir):
    model, batch, _ = _setup(tiny_t5_dir)
    model.eval()
    full = model.predict(batch, graph_edges="hybrid").emotion_scores
    alone = model.predict(batch, graph_edges="self").emotion_scores
    first = batch.dialogues.position == 0          # a first turn has no context: same either way
    assert torch.allclose(full[first], alone[first], atol=1e-5)
    assert not torch.allclose(full[~first], alone[~first], atol=1e-4)


def test_training_loss_reaches_the_implicit_scorers_and_alignment_terms(tiny_t5_dir):
    model, batch, _ = _setup(tiny_t5_dir)
    model.train()
    out = model(batch)
    assert set(out.parts) == {"loss_task", "loss_primary", "loss_semantic", "loss"}
    assert out.parts["loss"] == pytest.approx(out.parts["loss_task"] + 1.0e-3 * (
        out.parts["loss_primary"] + out.parts["loss_semantic"]), rel=1e-5)
    assert out.parts["loss_primary"] > 0 and out.parts["loss_semantic"] > 0
    out.loss.backward()
    for m in ("text", "audio", "timing"):
        for name, p in model.graphs[m].scorer.named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"{m}.{name}"


def test_assembled_encoder_decoder_freezes_only_pretrained_weights(tiny_bert_dir):
    model, batch, _ = _setup(tiny_bert_dir, "generate", modalities=("text",))
    assert model.info.kind == "assembled"
    assert any("crossattention" in n for n in model.info.new_params)
    model.set_backbone_frozen(True)
    model.train()
    assert not model.backbone.training                      # frozen: no dropout, cacheable
    model(batch).loss.backward()
    named = dict(model.backbone.named_parameters())
    cross = [n for n in model.info.new_params if "crossattention" in n]
    assert all(named[n].grad is not None and float(named[n].grad.abs().sum()) > 0 for n in cross)
    assert all(p.grad is None for n, p in named.items() if n.startswith("encoder."))
    model.set_backbone_frozen(False)
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_frozen_cache_encodes_each_dialogue_once_and_matches(tiny_t5_dir):
    model, batch, _ = _setup(tiny_t5_dir, "classify")
    model.set_backbone_frozen(True, cache=False)
    plain, _ = model.encode_turns(batch)
    model.set_backbone_frozen(True, cache=True)
    cached, mask = model.encode_turns(batch)
    assert len(model._turn_cache) == batch.dialogues.num_dialogues
    keep = mask.unsqueeze(-1)                                 # padding is masked everywhere downstream
    assert torch.allclose(plain * keep, cached * keep, atol=1e-5)
    calls = []
    hook = model.backbone.register_forward_hook(lambda *a: calls.append(1))
    model.encode_turns(batch)
    hook.remove()
    assert calls == []                                        # second time: from the cache


def test_classify_head_on_an_encoder_and_save_load(tiny_bert_dir, tmp_path):
    model, batch, splits = _setup(tiny_bert_dir, "classify", modalities=("text", "visual"))
    assert model.info.kind == "encoder"
    model.eval()
    out = model.predict(batch)
    assert ((out.emotion_pred >= 0) & (out.emotion_pred < splits.num_classes)).all()
    save_hrg_model(model, tmp_path / "m")
    again, meta = load_hrg_model(tmp_path / "m")
    assert meta["model"]["head"] == "classify"
    assert torch.equal(again.predict(batch).emotion_scores, out.emotion_scores)
    probs = torch.softmax(out.emotion_scores, -1).sum(-1)
    assert torch.allclose(probs, torch.ones_like(probs)) and math.isfinite(float(out.emotion_scores.sum()))


@pytest.mark.parametrize("dataset,head,backbone", [("iemocap6", "generate", "t5"), ("meld", "classify", "bert")])
def test_graphsmile_layout_pickles_with_audio_and_visual(tmp_path, synthetic_corpus, tiny_t5_dir, tiny_bert_dir,
                                                         dataset, head, backbone):
    """GraphSmile-layout pickles (synthetic values in the exact layout): transcripts + audio + visual."""
    from erc.data.synthetic_pickles import write_layout_pickle

    kwargs = {"corpus": synthetic_corpus} if dataset == "iemocap6" else {"n_dialogues": 10}
    path = write_layout_pickle(tmp_path / f"{dataset}.pkl", dataset, **kwargs)
    cfg = config_from_flat(HRGTrainConfig, dataset=dataset, path=str(path), modalities=["text", "audio", "visual"],
                           backbone=str(tiny_t5_dir if backbone == "t5" else tiny_bert_dir), head=head, **SMALL)
    splits = load_splits(cfg.data_config())
    assert splits.dims["audio"] == {"iemocap6": 1582, "meld": 300}[dataset]
    model = build_model(cfg.model_fields(), cfg.modalities, splits.dims, splits.label_names,
                        splits.sentiment_names, cfg.align_weight, cfg.temperature)
    batch = next(iter(make_hrg_loader(HRGDataset(splits.train, model.info.tokenizer, cfg.max_length),
                                      model.info.pad_id, 2)))
    out = model(batch)
    assert math.isfinite(out.parts["loss"]) and out.parts["loss_semantic"] > 0   # 3 modality pairs aligned
    model.eval()
    pred = model.predict(batch)
    assert ((pred.emotion_pred >= 0) & (pred.emotion_pred < splits.num_classes)).all()
    assert ((pred.sentiment_pred >= 0) & (pred.sentiment_pred < splits.num_sentiments)).all()
