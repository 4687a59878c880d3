"""GraphPredictor (erc.graph.api) and the graph model card, against predict-graph on the same dialogues."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from erc.core.config import ConfigError
from erc.core.io import read_json
from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from erc.graph.api import GraphPredictor
from erc.graph.config import GraphTrainConfig, PredictGraphConfig
from erc.graph.predict import run_predict_graph
from erc.core.config import config_from_flat
from erc.graph.train import run_train_graph

TINY = dict(dataset="synthetic", synthetic_dialogues=24, hidden_dim=16, win_p=2, win_f=2, shift_win=3,
            batch_size=4, eval_batch_size=3, lr=3.0e-3, num_threads=1, progress=False, valid_fraction=0.2,
            epochs=1, seeds=1)


def _reference(best, tmp_path) -> pd.DataFrame:
    out = tmp_path / "pred.csv"
    run_predict_graph(PredictGraphConfig(model_dir=str(best), output=str(out), splits=["test"]))
    return pd.read_csv(out)


def _raw_test_dialogues(with_features: bool = True) -> list[dict]:
    corpus = read_corpus(get_spec("synthetic"), None, synthetic_dialogues=24, synthetic_seed=0)
    out = []
    for k in corpus.splits["test"]:
        d = corpus.dialogues[k]
        item = {"dialogue_id": k, "texts": d.texts, "speakers": d.speakers, "start": d.start, "end": d.end}
        if with_features:
            item["features"] = dict(d.features)             # raw audio/visual, as the dataset has them
        out.append(item)
    return out


def _compare(pred: pd.DataFrame, ref: pd.DataFrame) -> None:
    m = ref.merge(pred, on=["dialogue_id", "position"], suffixes=("", "_api"))
    assert len(m) == len(ref) == len(pred)
    cols = [c for c in ref.columns if c.startswith("p_")]
    np.testing.assert_allclose(m[[f"{c}_api" for c in cols]].to_numpy(), m[cols].to_numpy(), atol=1e-5)
    assert (m.emotion == m.emotion_api).all() and (m.sentiment == m.sentiment_api).all()


def test_predictor_equals_predict_graph_on_raw_dialogues_and_card(tmp_path):
    mods = ["text", "audio", "visual", "timing"]
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, modalities=mods, layers=[1] * 6, output_dir=str(tmp_path / "g")))
    best = tmp_path / "g" / "seed_0" / "best_model"
    predictor = GraphPredictor.from_pretrained(best)
    dialogues = _raw_test_dialogues()
    _compare(predictor.predict(dialogues, as_frame=True), _reference(best, tmp_path))
    nested = predictor.predict(dialogues[:2])
    assert [len(x) for x in nested] == [len(d["texts"]) for d in dialogues[:2]]
    assert [r["position"] for r in nested[0]] == list(range(len(dialogues[0]["texts"])))
    bad = dict(dialogues[0], features={"visual": dialogues[0]["features"]["visual"]})
    with pytest.raises(ConfigError, match=r"dialogue 0: the model uses 'audio' features \(32 per utterance\)"):
        predictor.predict([bad])
    # the card written with the folder reports the selected epoch's numbers
    card = (best / "README.md").read_text()
    meta = read_json(best / "model_config.json")
    assert f"| weighted_f1 | {meta['valid']['weighted_f1']:.3f} | {meta['test']['weighted_f1']:.3f} |" in card
    assert "text (256 features), audio (32 features), visual (24 features), timing (4 features)" in card
    assert "acted English dyadic speech" in card and "hap, sad, neu, ang, exc, fru" in card
    assert 'GraphPredictor.from_pretrained("best_model")' in card             # not its temporary name


def test_predictor_embeds_text_like_the_run(tmp_path, tiny_encoder_dir):
    """Text from embeddings of a fine-tuned V/A/D folder: its own pooling (cls), not embed's --pooling."""
    import torch

    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed
    from erc.vad.model import VADRegressor

    torch.manual_seed(0)
    folder = VADRegressor.from_encoder_name(str(tiny_encoder_dir), pooling="cls").save_pretrained(tmp_path / "vad")
    emb = run_embed(EmbedConfig(dataset="synthetic", synthetic_dialogues=24, model=str(folder), pooling="mean",
                                output=str(tmp_path / "e.npz"), batch_size=8))
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, modalities=["text"], layers=[1],
                                     text_source="embeddings", text_embeddings=str(emb),
                                     output_dir=str(tmp_path / "g")))
    best = tmp_path / "g" / "seed_0" / "best_model"
    pred = GraphPredictor.from_pretrained(best).predict(_raw_test_dialogues(with_features=False), as_frame=True)
    _compare(pred, _reference(best, tmp_path))
