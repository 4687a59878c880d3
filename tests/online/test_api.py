"""OnlinePredictor: a dialogue pushed turn by turn gives the causal model's offline predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from erc.core.config import config_from_flat
from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from erc.graph.config import GraphTrainConfig, PredictGraphConfig
from erc.graph.predict import run_predict_graph
from erc.graph.train import run_train_graph
from erc.online.api import OnlineModelError, OnlinePredictor, TurnError

from tests.online.conftest import TINY


def _offline(best, tmp_path) -> pd.DataFrame:
    out = tmp_path / "pred.csv"
    run_predict_graph(PredictGraphConfig(model_dir=str(best), output=str(out), splits=["test"]))
    return pd.read_csv(out)


def _test_dialogues():
    corpus = read_corpus(get_spec("synthetic"), None, synthetic_dialogues=24, synthetic_seed=0)
    return [(k, corpus.dialogues[k]) for k in corpus.splits["test"]]


def _stream(online: OnlinePredictor, with_features: bool = True) -> pd.DataFrame:
    rows = []
    for k, d in _test_dialogues():
        chat = online.start(k)
        for t in range(len(d.texts)):
            feats = {m: d.features[m][t] for m in ("audio", "visual")} if with_features else None
            r = online.push(chat, d.texts[t], d.speakers[t], features=feats, start=d.start[t], end=d.end[t])
            rows.append({"dialogue_id": k, "position": r["turn"], "emotion": r["emotion"],
                         "sentiment": r["sentiment"],
                         **{f"p_{n}": p for n, p in r["emotion_probabilities"].items()},
                         **{f"p_sentiment_{n}": p for n, p in r["sentiment_probabilities"].items()}})
        assert [h["turn"] for h in chat.history] == list(range(len(d.texts)))
    return pd.DataFrame(rows)


def _assert_same(streamed: pd.DataFrame, offline: pd.DataFrame, atol: float) -> None:
    m = offline.merge(streamed, on=["dialogue_id", "position"], suffixes=("", "_online"))
    assert len(m) == len(offline) == len(streamed) > 0
    cols = [c for c in offline.columns if c.startswith("p_")]
    np.testing.assert_allclose(m[[f"{c}_online" for c in cols]].to_numpy(), m[cols].to_numpy(), rtol=0, atol=atol)
    assert (m.emotion == m.emotion_online).all() and (m.sentiment == m.sentiment_online).all()


def test_pushing_turn_by_turn_equals_the_offline_causal_model(causal_model, tmp_path):
    """Text (hashed), audio, visual and timing: six pair graphs, timing computed turn by turn."""
    online = OnlinePredictor.from_pretrained(causal_model)
    _assert_same(_stream(online), _offline(causal_model, tmp_path), atol=1e-5)


def test_encoder_text_with_past_context_equals_offline(tmp_path, tiny_encoder_dir):
    """Text from `erc embed` with one past turn of context: each turn is encoded alone, with its past turn."""
    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed

    emb = run_embed(EmbedConfig(dataset="synthetic", synthetic_dialogues=24, model=str(tiny_encoder_dir),
                                pooling="mean", context_past=1, output=str(tmp_path / "e.npz"), batch_size=8))
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, modalities=["text"], layers=[2],
                                     text_source="embeddings", text_embeddings=str(emb), output_dir=str(tmp_path / "g")))
    best = tmp_path / "g" / "seed_0" / "best_model"
    online = OnlinePredictor.from_pretrained(best)
    # the embeddings file was written in padded batches, a turn is encoded alone: float noise only
    _assert_same(_stream(online, with_features=False), _offline(best, tmp_path), atol=1e-4)


def test_future_context_embeddings_are_refused(tmp_path, tiny_encoder_dir):
    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed

    emb = run_embed(EmbedConfig(dataset="synthetic", synthetic_dialogues=24, model=str(tiny_encoder_dir),
                                context_future=1, output=str(tmp_path / "e.npz"), batch_size=8))
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, modalities=["text"], layers=[1], epochs=1,
                                     text_source="embeddings", text_embeddings=str(emb), output_dir=str(tmp_path / "g")))
    with pytest.raises(OnlineModelError, match="read 1 future turn"):
        OnlinePredictor.from_pretrained(tmp_path / "g" / "seed_0" / "best_model")


def test_a_non_causal_model_is_refused(tmp_path):
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, win_f=2, epochs=1, modalities=["text"], layers=[1],
                                     output_dir=str(tmp_path / "g")))
    with pytest.raises(OnlineModelError, match=r"reads 2 future turn\(s\) \(win_f\).*causal"):
        OnlinePredictor.from_pretrained(tmp_path / "g" / "seed_0" / "best_model")


def test_bad_turns_name_the_field_and_change_nothing(causal_model):
    online = OnlinePredictor.from_pretrained(causal_model)
    chat = online.start()
    ok = {"audio": np.zeros(32), "visual": np.zeros(24)}
    cases = [
        (dict(text="", speaker="F", features=ok, start=0.0, end=1.0), "text: expected a non-empty string"),
        (dict(text="hi", speaker="", features=ok, start=0.0, end=1.0), "speaker: expected"),
        (dict(text="hi", speaker="F", features=ok), "start, end: the model uses timing"),
        (dict(text="hi", speaker="F", features=ok, start=2.0, end=1.0), "end >= start"),
        (dict(text="hi", speaker="F", features={"audio": np.zeros(32)}, start=0.0, end=1.0),
         r"features.visual: the model uses 'visual' features; expected a list of 24 numbers"),
        (dict(text="hi", speaker="F", features={**ok, "audio": np.zeros(5)}, start=0.0, end=1.0),
         "features.audio: expected 32 numbers, got 5"),
        (dict(text="hi", speaker="F", features={**ok, "audio": ["x"] * 32}, start=0.0, end=1.0),
         "features.audio: expected a list of 32 numbers"),
        (dict(text="hi", speaker="F", features={**ok, "audio": np.full(32, np.nan)}, start=0.0, end=1.0),
         "features.audio: expected finite numbers"),
        (dict(text="hi", speaker="F", features={**ok, "smell": [1.0]}, start=0.0, end=1.0),
         r"features: unknown modality \['smell'\]"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TurnError, match=message):
            online.push(chat, **kwargs)
    assert len(chat) == 0 and len(chat.stream) == 0 and chat.last_end is None   # nothing half-added
    first = online.push(chat, "hello there", "F", features=ok, start=0.0, end=1.0)
    online.push(chat, "so angry right now", "M", features=ok, start=1.2, end=2.0)
    assert chat.history[0] == first                                          # a later turn changes no earlier one
    assert set(first["emotion_probabilities"]) == {"hap", "sad", "neu", "ang", "exc", "fru"}
    assert abs(sum(first["emotion_probabilities"].values()) - 1.0) < 1e-5
    assert online.describe()["features_required"] == ["audio", "visual"]
