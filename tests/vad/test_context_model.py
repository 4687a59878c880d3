"""Context-aware V/A/D: fine-tuning reads each turn with its neighbours in time order, the rule is saved with
the model, and predict / embed rebuild the same inputs."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from erc.data.context import TARGET_MARK, frame_context
from erc.data.utterances import read_synthetic


def test_frame_context_follows_time_not_file_order(tiny_encoder_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    frame = read_synthetic(4, 0)
    ctx = frame_context(frame, 1, 1, tok, 128)
    d0 = frame[frame["dialogue_id"] == frame["dialogue_id"].iloc[0]].sort_values("start")
    a, b, c = (d0.iloc[i] for i in range(3))
    target, context = ctx[b["utterance_id"]]
    assert target == f"{b['speaker']}: {b['text']}"
    assert context == f"{a['speaker']}: {a['text']} | {TARGET_MARK} | {c['speaker']}: {c['text']}"
    assert len(ctx) == len(frame)


@pytest.fixture(scope="module")
def context_run(tmp_path_factory, tiny_encoder_dir):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    out = tmp_path_factory.mktemp("ctx") / "run"
    run_finetune(config_from_flat(FinetuneConfig, path="synthetic", synthetic_dialogues=10, epochs=1, lr=3.0e-3,
                                  num_threads=1, plots=False, model=str(tiny_encoder_dir), context_past=2,
                                  context_future=1, output_dir=str(out)))
    return out


def test_rule_is_saved_and_predict_rebuilds_the_training_inputs(context_run, caplog):
    from erc.vad.model import VADRegressor

    model = VADRegressor.from_pretrained(context_run / "best_model").eval()
    assert (model.config.context_past, model.config.context_future) == (2, 1) and model.uses_context
    frame = read_synthetic(10, 0)
    d0 = frame[frame["dialogue_id"] == frame["dialogue_id"].iloc[0]].sort_values("start")
    pred = model.predict(d0["text"].tolist(), dialogue_ids=d0["dialogue_id"].tolist(),
                         speakers=d0["speaker"].tolist())
    ctx = frame_context(frame, 2, 1, model.tokenizer, model.max_length)     # what fine-tuning tokenised
    pairs = [ctx[u] for u in d0["utterance_id"]]
    enc = model.tokenizer([t for t, _ in pairs], [c for _, c in pairs], truncation=True,
                          max_length=model.max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        by_hand = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])["vad"].numpy()
    np.testing.assert_allclose(pred, by_hand, rtol=1e-5, atol=1e-5)
    with caplog.at_level(logging.WARNING, logger="erc.vad.model"):
        alone = model.predict(d0["text"].tolist())                 # no dialogue ids: one-turn dialogues
    assert "no dialogue ids" in caplog.text
    assert not np.allclose(alone, pred)


def test_embed_uses_the_saved_rule(context_run, tmp_path):
    from erc.core.config import config_from_flat
    from erc.data.readers import read_corpus
    from erc.data.registry import get_spec
    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed
    from erc.vad.model import VADRegressor

    out = run_embed(config_from_flat(EmbedConfig, dataset="synthetic", synthetic_dialogues=6,
                                     model=str(context_run / "best_model"), output=str(tmp_path / "e.npz")))
    with np.load(out) as z:
        emb = z["embeddings"]
    model = VADRegressor.from_pretrained(context_run / "best_model")
    corpus = read_corpus(get_spec("synthetic"), None, synthetic_dialogues=6)
    dlgs = list(corpus.dialogues.values())
    texts = [t for d in dlgs for t in d.texts]
    ids = [d.dialogue_id for d in dlgs for _ in range(len(d))]
    speakers = [s for d in dlgs for s in d.speakers]
    expected = model.embed(texts, dialogue_ids=ids, speakers=speakers)
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(emb, model.embed(texts, dialogue_ids=list(range(len(texts)))), atol=1e-4)


def test_python_api_passes_the_dialogue(context_run):
    from erc.vad import VADPredictor
    from erc.vad.model import VADRegressor

    frame = read_synthetic(10, 0)
    d0 = frame[frame["dialogue_id"] == frame["dialogue_id"].iloc[0]].sort_values("start")
    texts, ids, spk = d0["text"].tolist(), d0["dialogue_id"].tolist(), d0["speaker"].tolist()
    api = VADPredictor.from_pretrained(context_run / "best_model")
    rows = api(texts, dialogue_ids=ids, speakers=spk)
    direct = VADRegressor.from_pretrained(context_run / "best_model").predict(texts, dialogue_ids=ids, speakers=spk)
    np.testing.assert_allclose([[r["valence"], r["arousal"], r["dominance"]] for r in rows], direct, rtol=1e-6)


def test_predict_command_reads_a_table_by_dialogue(context_run, tmp_path):
    """`erc predict --dialogue-column`: rows given out of order come back in input order, each predicted
    with its dialogue's neighbours in row order (a table has no start times)."""
    import pandas as pd

    from erc.core.config import config_from_flat
    from erc.vad.config import PredictConfig
    from erc.vad.model import VADRegressor
    from erc.vad.predict import run_predict

    rows = [("a1", "d1", "A", "so happy today"), ("b1", "d2", "C", "what a mess"), ("a2", "d1", "B", "me too"),
            ("b2", "d2", "D", "leave me alone"), ("a3", "d1", "A", "great")]
    pd.DataFrame(rows, columns=["id", "dlg", "speaker", "text"]).to_csv(tmp_path / "in.csv", index=False)
    cfg = config_from_flat(PredictConfig, model_dir=str(context_run / "best_model"), input=str(tmp_path / "in.csv"),
                           output=str(tmp_path / "out.csv"), id_column="id", dialogue_column="dlg")
    run_predict(cfg)
    got = pd.read_csv(tmp_path / "out.csv", dtype={"utterance_id": str})
    assert got["utterance_id"].tolist() == ["a1", "b1", "a2", "b2", "a3"]
    model = VADRegressor.from_pretrained(context_run / "best_model")
    d1 = model.predict(["so happy today", "me too", "great"], dialogue_ids=["d1"] * 3)
    d2 = model.predict(["what a mess", "leave me alone"], dialogue_ids=["d2"] * 2)
    expected = np.stack([d1[0], d2[0], d1[1], d2[1], d1[2]])
    np.testing.assert_allclose(got[["valence", "arousal", "dominance"]].to_numpy(), expected, rtol=1e-5, atol=1e-5)
