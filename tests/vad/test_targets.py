"""``finetune`` on any label set: targets vad / emotion / sentiment, per-target loss weights, selection on
any head's validation metric, corpora without V/A/D (MELD-like), cross-fitting by folds of training
dialogues, older configs and folders meaning what they meant."""
from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch

from erc.data.registry import IEMOCAP_TO_SENTIMENT, MELD_EMOTIONS, POLARITY

# synthetic emotions (IEMOCAP codes) as MELD names, so a MELD-format corpus carries a learnable signal
TO_MELD = {"hap": "joy", "sad": "sadness", "neu": "neutral", "ang": "anger", "exc": "surprise", "fru": "disgust"}
MELD_SPLIT = {1: "train", 2: "train", 3: "train", 4: "dev", 5: "test"}      # synthetic session -> MELD file


@pytest.fixture(scope="module")
def meld_folder(tmp_path_factory, synthetic_corpus):
    """The synthetic corpus written as MELD's {train,dev,test}_sent_emo.csv: emotion and sentiment, no V/A/D."""
    folder = tmp_path_factory.mktemp("meld")
    u = synthetic_corpus.utterances
    for split in ("train", "dev", "test"):
        rows = []
        for d, (dlg, g) in enumerate(u[u["session"].map(MELD_SPLIT) == split].groupby("dialogue_id", sort=True)):
            for i, (_, r) in enumerate(g.iterrows()):
                rows.append({"Sr No.": len(rows) + 1, "Utterance": r["text"], "Speaker": r["speaker"],
                             "Emotion": TO_MELD[r["emotion"]], "Sentiment": IEMOCAP_TO_SENTIMENT[r["emotion"]],
                             "Dialogue_ID": d, "Utterance_ID": i, "Season": 1, "Episode": 1,
                             "StartTime": f"00:00:{i:02d},000", "EndTime": f"00:00:{i:02d},900"})
        pd.DataFrame(rows).to_csv(folder / f"{split}_sent_emo.csv", index=False)
    return folder


def _cfg(tmp_path, name, tiny_encoder_dir, **kw):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig

    args = dict(path="synthetic", synthetic_dialogues=15, epochs=1, lr=3.0e-3, num_threads=1, plots=False,
                model=str(tiny_encoder_dir), output_dir=str(tmp_path / name))
    args.update(kw)
    return config_from_flat(FinetuneConfig, **args)


# ------------------------------------------------------------------------------------------- config
def test_targets_resolve_from_the_older_emotion_loss_weight(tmp_path, tiny_encoder_dir):
    plain = _cfg(tmp_path, "a", tiny_encoder_dir)
    assert plain.resolved_targets() == ("vad",) and plain.resolved_weights() == {"vad": 1.0}
    old = _cfg(tmp_path, "b", tiny_encoder_dir, emotion_loss_weight=0.5)
    assert old.resolved_targets() == ("vad", "emotion") and old.resolved_weights() == {"vad": 1.0, "emotion": 0.5}
    new = _cfg(tmp_path, "c", tiny_encoder_dir, targets=["sentiment", "vad"], loss_weights={"sentiment": 0.25})
    assert new.resolved_targets() == ("vad", "sentiment")             # TARGETS order, whatever the YAML order
    assert new.resolved_weights() == {"vad": 1.0, "sentiment": 0.25}


def test_loss_weights_flag_and_config_errors(tmp_path, tiny_encoder_dir):
    from erc.core.config import ConfigError, resolve_config
    from erc.vad.config import FinetuneConfig

    cfg = resolve_config(FinetuneConfig, {"targets": ["emotion", "sentiment"],
                                          "loss_weights": "emotion=2 sentiment=0.5",
                                          "selection_metric": "sentiment_macro_f1"})
    assert cfg.loss_weights == {"emotion": 2.0, "sentiment": 0.5}
    with pytest.raises(ConfigError, match="loss_weights.*'vad' is not a target"):
        _cfg(tmp_path, "x", tiny_encoder_dir, targets=["emotion"], loss_weights={"vad": 1.0},
             selection_metric="emotion_weighted_f1")
    with pytest.raises(ConfigError, match="selection_metric.*sentiment_macro_f1 scores the sentiment head, but "
                                          "targets are \\['vad', 'emotion'\\]"):
        _cfg(tmp_path, "x", tiny_encoder_dir, targets=["vad", "emotion"], selection_metric="sentiment_macro_f1")
    with pytest.raises(ConfigError, match="selection_metric.*ccc scores the vad head"):
        _cfg(tmp_path, "x", tiny_encoder_dir, targets=["emotion"])                 # default selection: ccc
    with pytest.raises(ConfigError, match="emotion_loss_weight.*weighs an emotion head, but targets are \\['vad'\\]"):
        _cfg(tmp_path, "x", tiny_encoder_dir, targets=["vad"], emotion_loss_weight=0.5)
    with pytest.raises(ConfigError, match="loss_weights.*emotion expected > 0"):
        _cfg(tmp_path, "x", tiny_encoder_dir, targets=["vad", "emotion"], loss_weights={"emotion": 0.0})


def test_identity_of_a_config_without_the_new_fields_is_unchanged(tmp_path, tiny_encoder_dir):
    """A run recorded before targets / data.dataset / dialogue folds existed is still the same run."""
    from erc.vad.stage import FINETUNE_IDENTITY

    ident = FINETUNE_IDENTITY.identity("finetune", _cfg(tmp_path, "a", tiny_encoder_dir, emotion_loss_weight=1.0))
    keys = set(ident.config)
    assert not keys & {"targets", "data.dataset", "data.train_dialogue_folds", "data.held_out_fold"}
    assert not any(k.startswith("loss_weights") for k in keys) and ident.config["emotion_loss_weight"] == 1.0
    other = FINETUNE_IDENTITY.identity("finetune", _cfg(tmp_path, "a", tiny_encoder_dir, targets=["vad", "emotion"]))
    assert other.config["targets"] == ["vad", "emotion"]


# ------------------------------------------------------------------------------------------- model
def test_loss_is_the_weighted_sum_of_the_heads_losses(tiny_encoder_dir):
    from erc.vad.model import VADRegressor

    model = VADRegressor.from_encoder_name(str(tiny_encoder_dir), sentiment_labels=POLARITY,
                                           sentiment_loss_weight=0.25, vad_loss_weight=2.0).eval()
    model.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    enc = model.tokenizer(["so happy", "what now", "leave me alone"], padding=True, return_tensors="pt")
    vad = torch.tensor([[2.0, 3.0, 4.0], [1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    sentiment = torch.tensor([2, -100, 0])
    out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=vad, sentiment=sentiment)
    mse = ((out.pred - (vad - torch.tensor([2.0, 3.0, 4.0]))) ** 2).mean()
    logp = torch.log_softmax(out.sentiment_logits[[0, 2]], dim=1)
    ce = -(logp[0, 2] + logp[1, 0]) / 2
    assert out.sentiment_logits.shape == (3, 3) and out.emotion_logits is None
    assert torch.allclose(out.loss, 2.0 * mse + 0.25 * ce, atol=1e-6)

    only = VADRegressor.from_encoder_name(str(tiny_encoder_dir), target_names=(), emotion_labels=MELD_EMOTIONS,
                                          emotion_loss_weight=1.5).eval()
    assert only.heads == ("emotion",) and only.head is None and not hasattr(only, "scaler_mean")
    emo = torch.tensor([4, 0, -100])
    out = only(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], emotion=emo)
    logp = torch.log_softmax(out.emotion_logits[[0, 1]], dim=1)
    assert out.vad is None and torch.equal(out.logits, out.emotion_logits)       # logits: the first head
    assert torch.allclose(out.loss, 1.5 * -(logp[0, 4] + logp[1, 0]) / 2, atol=1e-6)
    none = only(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], emotion=torch.full((3,), -100))
    assert float(none.loss.detach()) == 0.0 and none.loss.requires_grad                   # a batch with no label: zero
    assert only.config.problem_type == "single_label_classification"
    assert only.config.id2label[4] == MELD_EMOTIONS[4]


# ------------------------------------------------------------------------------------------- runs
@pytest.mark.parametrize("targets", [["vad"], ["emotion"], ["sentiment"], ["emotion", "sentiment"],
                                     ["vad", "emotion", "sentiment"]])
def test_each_target_set_trains_and_writes_its_heads(tmp_path, tiny_encoder_dir, targets):
    from safetensors import safe_open

    from erc.vad.model import VADRegressor
    from erc.vad.predict import run_predict
    from erc.vad.train import run_finetune

    selection = "ccc" if "vad" in targets else f"{targets[-1]}_weighted_f1"
    result = run_finetune(_cfg(tmp_path, "run", tiny_encoder_dir, targets=targets, selection_metric=selection))
    best = tmp_path / "run" / "best_model"
    assert result["heads"] == targets
    with safe_open(str(best / "model.safetensors"), framework="pt") as fh:
        keys = {k for k in fh.keys() if not k.startswith("encoder.")}
    expected = {"vad": {"head.weight", "head.bias", "scaler_mean", "scaler_std"},
                "emotion": {"emotion_head.weight", "emotion_head.bias"},
                "sentiment": {"sentiment_head.weight", "sentiment_head.bias"}}
    assert keys == set().union(*(expected[t] for t in targets))
    model = VADRegressor.from_pretrained(best)
    assert list(model.heads) == targets
    card = (best / "README.md").read_text()
    assert "Heads: " + ", ".join(f"`{t}`" for t in targets) in card
    for t in ("emotion", "sentiment"):
        assert (f"| {t} | " in card) == (t in targets)
        assert (f"n_{t}" in result["test"]) == (t in targets)
    assert ("| valence |" in card) == ("vad" in targets)
    log_header = (tmp_path / "run" / "train_log.csv").read_text().splitlines()[0].split(",")
    assert ("val_ccc" in log_header) == ("vad" in targets)
    assert ("val_sentiment_macro_f1" in log_header) == ("sentiment" in targets)
    # predict writes what heads exist: the V/A/D columns, and a class + its probability per classifier
    texts = tmp_path / "in.txt"
    texts.write_text("I am so happy\nleave me alone\n")
    run_predict(__import__("erc.vad.config", fromlist=["PredictConfig"]).PredictConfig(
        model_dir=str(best), input=str(texts), output=str(tmp_path / "pred.csv")))
    rows = list(csv.DictReader((tmp_path / "pred.csv").open()))
    cols = ["utterance_id"] + (["valence", "arousal", "dominance"] if "vad" in targets else []) + \
        [c for t in ("emotion", "sentiment") if t in targets for c in (t, f"{t}_prob")]
    assert list(rows[0]) == cols and len(rows) == 2
    if "sentiment" in targets:
        assert rows[0]["sentiment"] in POLARITY and 1 / 3 <= float(rows[0]["sentiment_prob"]) <= 1.0


def test_selection_on_a_sentiment_metric_picks_its_logged_best_epoch(tmp_path, tiny_encoder_dir):
    from erc.vad.train import run_finetune

    result = run_finetune(_cfg(tmp_path, "sel", tiny_encoder_dir, epochs=4, targets=["vad", "sentiment"],
                               selection_metric="sentiment_macro_f1"))
    log = list(csv.DictReader((tmp_path / "sel" / "train_log.csv").open()))
    scores = [float(r["val_sentiment_macro_f1"]) for r in log]
    assert len(scores) == 4 and result["metric_for_best"] == "val_sentiment_macro_f1"
    assert result["best_epoch"] == 1 + scores.index(max(scores))       # first of ties, as select_best
    assert result["validation"]["sentiment_macro_f1"] == pytest.approx(max(scores), abs=1e-12)
    mean = run_finetune(_cfg(tmp_path, "mean", tiny_encoder_dir, epochs=2, selection_metric="mean_ccc"))
    assert mean["metric_for_best"] == "val_ccc"                         # mean_ccc: another name of val_ccc
    per_dim = run_finetune(_cfg(tmp_path, "dim", tiny_encoder_dir, epochs=3, selection_metric="arousal_ccc"))
    values = [float(r["val_arousal_ccc"]) for r in csv.DictReader((tmp_path / "dim" / "train_log.csv").open())]
    assert per_dim["best_epoch"] == 1 + values.index(max(values))


def test_a_meld_like_corpus_fine_tunes_on_emotion_and_sentiment(tmp_path, tiny_encoder_dir, meld_folder):
    from erc.core.config import ConfigError
    from erc.vad.data import build_splits, emotion_class_set
    from erc.vad.model import VADRegressor
    from erc.vad.train import run_finetune

    cfg = _cfg(tmp_path, "meld", tiny_encoder_dir, dataset="meld_csv", path=str(meld_folder), epochs=2,
               targets=["emotion", "sentiment"], emotion_classes="dataset", selection_metric="emotion_weighted_f1")
    splits = build_splits(cfg.data, seed=cfg.seed, targets=("emotion", "sentiment"),
                          emotion_set=emotion_class_set("dataset", "meld_csv"))
    u = pd.read_csv(meld_folder / "train_sent_emo.csv")
    assert splits.mode == "column" and len(splits.datasets["train"]) == len(u)
    assert len(splits.datasets["validation"]) == len(pd.read_csv(meld_folder / "dev_sent_emo.csv"))
    assert splits.datasets["train"]["sentiment"][:3] == u["Sentiment"].tolist()[:3]
    result = run_finetune(cfg)
    model = VADRegressor.from_pretrained(tmp_path / "meld" / "best_model")
    assert model.heads == ("emotion", "sentiment") and model.config.emotion_labels == list(MELD_EMOTIONS)
    assert result["n_train"] == len(u) and result["test"]["n_emotion"] == result["n_test"]
    card = (tmp_path / "meld" / "best_model" / "README.md").read_text()
    assert "MELD" in card and "the corpus's own train / validation (dev) / test split (meld_csv)" in card
    # V/A/D asked of a corpus without it: one clear error naming the dataset and the target
    with pytest.raises(ConfigError, match="dataset meld_csv has no V/A/D labels, so target 'vad' cannot be trained "
                                          "on it \\(it has: emotion, sentiment\\)"):
        run_finetune(_cfg(tmp_path, "bad", tiny_encoder_dir, dataset="meld_csv", path=str(meld_folder),
                          targets=["vad", "emotion"], emotion_classes="dataset"))
    assert not (tmp_path / "bad").exists()                              # refused before anything is written


def test_a_vad_only_table_trains_vad_and_refuses_sentiment(tmp_path, tiny_encoder_dir):
    from erc.core.config import ConfigError
    from erc.vad.train import run_finetune

    table = tmp_path / "vad_table.csv"
    rows = [f"text number {i},{1 + i % 5},{2 + i % 3},3,{['train', 'dev', 'test'][i % 3]}" for i in range(60)]
    table.write_text("text,valence,arousal,dominance,split\n" + "\n".join(rows) + "\n")
    base = dict(path=str(table), split_column="split")
    assert run_finetune(_cfg(tmp_path, "ok", tiny_encoder_dir, **base))["heads"] == ["vad"]
    with pytest.raises(ConfigError, match=f"--path {table} \\(table\\) has no sentiment labels, so target "
                                          "'sentiment' cannot be trained on it \\(it has: vad\\)"):
        run_finetune(_cfg(tmp_path, "no", tiny_encoder_dir, **base, targets=["vad", "sentiment"]))
    assert not (tmp_path / "no").exists()


# ------------------------------------------------------------------------------------------- cross-fit
def test_dialogue_folds_are_seeded_disjoint_and_cover_every_dialogue():
    from erc.vad.data import dialogue_folds

    ids = [f"d{i}" for i in range(10)] * 2                 # repeated ids count once
    folds = dialogue_folds(ids, 3, seed=42)
    assert sorted(len(f) for f in folds) == [3, 3, 4]
    assert sorted(sum(folds, [])) == sorted(set(ids))
    assert folds == dialogue_folds(list(reversed(ids)), 3, seed=42)     # order of the rows does not matter
    assert folds != dialogue_folds(ids, 3, seed=43)


def test_cross_fit_by_dialogue_folds_never_embeds_a_dialogue_with_an_encoder_that_trained_on_it(
        tmp_path, tiny_encoder_dir, meld_folder):
    from erc.core.config import config_from_dict, config_from_flat, load_yaml
    from erc.data.text import read_embeddings
    from erc.vad.config import EmbedConfig, FinetuneConfig
    from erc.vad.data import build_splits, emotion_class_set
    from erc.vad.embed import run_embed
    from erc.vad.train import run_finetune

    targets = ("emotion", "sentiment")
    run_finetune(_cfg(tmp_path, "ft", tiny_encoder_dir, dataset="meld_csv", path=str(meld_folder),
                      targets=list(targets), emotion_classes="dataset", selection_metric="sentiment_weighted_f1"))
    out = tmp_path / "emb" / "emb.npz"
    cfg = config_from_flat(EmbedConfig, dataset="meld_csv", path=str(meld_folder), num_threads=1, output=str(out),
                           model=str(tmp_path / "ft" / "best_model"), cross_fit=2)
    table = read_embeddings(run_embed(cfg))
    record = json.loads(out.with_name("emb.npz.cross_fit.json").read_text())
    emotion_set = emotion_class_set("dataset", "meld_csv")

    def splits_of(config_yaml):
        ft = config_from_dict(FinetuneConfig, load_yaml(config_yaml), source=str(config_yaml))
        s = build_splits(ft.data, seed=ft.seed, targets=targets, emotion_set=emotion_set).datasets
        return {name: set(s[name]["dialogue_id"]) for name in ("train", "validation", "test")}

    full = splits_of(tmp_path / "ft" / "config.yaml")
    folds = [e for e in record["encoders"] if e["name"] != "full"]
    assert [e["held_out_fold"] for e in folds] == [1, 2]
    held = [set(e["held_out_dialogues"]) for e in folds]
    assert held[0] | held[1] == full["train"] and not held[0] & held[1]
    dialogue_ids = np.asarray(table.dialogue_ids)
    for e, h in zip(folds, held):
        trained = splits_of(tmp_path / "emb" / "cross_fit" / e["name"] / "config.yaml")
        assert not trained["train"] & h                                  # the fold never trained on what it embeds
        assert trained["train"] == full["train"] - h                     # ... and trained on everything else
        assert trained["validation"] == full["validation"] and trained["test"] == full["test"]
        assert e["dialogues"] == len(h) and e["utterances"] == int(np.isin(dialogue_ids, list(h)).sum())
    last = record["encoders"][-1]
    assert last["name"] == "full" and last["dialogues"] == len(full["validation"] | full["test"])
    # the record says so in the embed summary too
    from erc.vad.stage import _embed_summary

    assert "| fold_1 | fold 1 (dialogues) |" in "\n".join(_embed_summary(cfg, str))


# ------------------------------------------------------------------------------------------- old folders
def test_a_folder_written_before_targets_loads_and_predicts_the_same(tmp_path, tiny_encoder_dir):
    """config.json of a V/A/D (+ emotion) folder without the sentiment / vad weight keys loads as it was."""
    from erc.data.registry import CLASS_SETS
    from erc.vad.model import VADRegressor

    model = VADRegressor.from_encoder_name(str(tiny_encoder_dir), emotion_labels=CLASS_SETS["iemocap6"].labels,
                                           emotion_loss_weight=0.5)
    model.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    model.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    raw = json.loads(cfg_path.read_text())
    for key in ("sentiment_labels", "sentiment_loss_weight", "vad_loss_weight"):
        raw.pop(key)
    cfg_path.write_text(json.dumps(raw))
    old = VADRegressor.from_pretrained(tmp_path / "m")
    assert old.heads == ("vad", "emotion") and old.config.vad_loss_weight == 1.0
    assert old.config.problem_type == "regression" and old.config.id2label[0] == "valence"
    texts = ["so happy today", "leave me alone"]
    assert np.array_equal(old.predict(texts), model.eval().predict(texts))
    heads = old.predict_heads(texts)
    assert set(heads) == {"vad", "emotion"} and np.array_equal(heads["vad"], old.predict(texts))
    assert np.allclose(heads["emotion"].sum(1), 1.0, atol=1e-6)


def test_every_shipped_finetune_and_pipeline_config_plans(project_root, tmp_path):
    """The *_mpnet configs parse; the pipeline ones plan every stage (nothing is run or written)."""
    from erc.core.config import resolve_config
    from erc.pipeline import PipelineConfig, finetune_config, plan
    from erc.vad.config import FinetuneConfig

    for name in ("finetune_meld_mpnet", "vad_iemocap_mpnet", "vad_iemocap_folds_mpnet", "vad_emobank_mpnet"):
        cfg = resolve_config(FinetuneConfig, None, project_root / "configs" / f"{name}.yaml")
        assert cfg.model == "sentence-transformers/all-mpnet-base-v2"
    meld = resolve_config(FinetuneConfig, None, project_root / "configs" / "finetune_meld_mpnet.yaml")
    assert meld.resolved_targets() == ("emotion", "sentiment") and meld.data.dataset == "meld_csv"
    for name, targets in (("pipeline_meld_mpnet", ("emotion", "sentiment")),
                          ("pipeline_iemocap_mpnet", ("vad", "emotion"))):
        cfg = resolve_config(PipelineConfig, {"output_dir": str(tmp_path / name)},
                             project_root / "configs" / f"{name}.yaml")
        assert finetune_config(cfg).resolved_targets() == targets
        assert finetune_config(cfg).model == "sentence-transformers/all-mpnet-base-v2"
        plans = plan(cfg)
        assert [p.name for p in plans][:3] == ["finetune", "embed", "train-graph"]
        assert plans[0].action == "run" and all(p.action == "redo" for p in plans[1:])   # they read its outputs


def test_session_cross_fit_of_an_emotion_and_sentiment_model_holds_out_sessions(tmp_path, tiny_encoder_dir):
    """Data with sessions cross-fits by session whatever the heads: each fold re-runs the same targets."""
    from erc.core.config import config_from_dict, config_from_flat, load_yaml
    from erc.vad.config import EmbedConfig, FinetuneConfig
    from erc.vad.embed import run_embed
    from erc.vad.train import run_finetune

    run_finetune(_cfg(tmp_path, "ft", tiny_encoder_dir, synthetic_dialogues=20, targets=["emotion", "sentiment"],
                      selection_metric="emotion_weighted_f1", train_sessions=[1, 2, 3], valid_sessions=[4],
                      test_sessions=[5]))
    out = tmp_path / "emb" / "emb.npz"
    run_embed(config_from_flat(EmbedConfig, dataset="synthetic", synthetic_dialogues=20, num_threads=1,
                               output=str(out), model=str(tmp_path / "ft" / "best_model"), cross_fit=3))
    record = json.loads(out.with_name("emb.npz.cross_fit.json").read_text())
    assert [e["held_out_sessions"] for e in record["encoders"]] == [[1], [2], [3], []]
    for e in record["encoders"][:3]:
        fold = config_from_dict(FinetuneConfig, load_yaml(tmp_path / "emb" / "cross_fit" / e["name"] / "config.yaml"))
        assert fold.resolved_targets() == ("emotion", "sentiment")
        assert fold.data.train_sessions == [s for s in (1, 2, 3) if s not in e["held_out_sessions"]]
        assert e["finetune_metrics"]["test"]["emotion_weighted_f1"] >= 0.0
