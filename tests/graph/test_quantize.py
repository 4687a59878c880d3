"""Int8 inference copy of a graph model (erc.graph.quantize): what is quantized, how close, what it refuses."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from erc.core.config import ConfigError, config_from_dict, config_from_flat, load_yaml
from erc.data.config import DialogueDataConfig
from erc.data.dialogues import load_splits, make_loader
from erc.graph.api import GraphPredictor
from erc.graph.config import GraphTrainConfig, PredictGraphConfig
from erc.graph.infer import run_inference
from erc.graph.model import load_graph_model
from erc.graph.predict import load_prediction_dialogues, run_predict_graph
from erc.graph.quantize import maybe_quantize, quantize_int8
from erc.graph.train import run_train_graph

TINY = dict(dataset="synthetic", synthetic_dialogues=24, hidden_dim=64, win_p=2, win_f=2, shift_win=3,
            batch_size=4, eval_batch_size=8, lr=3.0e-3, num_threads=1, progress=False, valid_fraction=0.2,
            epochs=3, seeds=1, modalities=["text", "audio", "visual"], layers=[2, 2, 2])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("q8") / "g"
    run_train_graph(config_from_flat(GraphTrainConfig, TINY, output_dir=str(out)))
    return out / "seed_0" / "best_model"


def _dynamic_linear():
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    return DynamicLinear


def test_int8_copy_quantizes_the_dense_layers_and_leaves_the_model_alone(trained):
    model, _ = load_graph_model(trained)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_int8(model)
    dyn = _dynamic_linear()
    stack = q.graphs["text_audio"]
    assert all(isinstance(c.lin, dyn) for c in stack.convs) and all(isinstance(b, dyn) for b in stack.branches)
    assert isinstance(q.modal_fusion[0], dyn) and all(isinstance(q.proj[m][0], dyn) for m in q.proj)
    assert type(q.emotion_head) is nn.Linear and type(q.shift_head) is nn.Linear   # heads stay float32
    assert q.quantized == "int8" and model.quantized is None and not q.training
    # the float model is untouched: same modules, same weights
    assert type(model.graphs["text_audio"].convs[0].lin) is nn.Linear
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_int8_predictions_are_close_to_float32_but_not_the_same_computation(trained):
    model, meta = load_graph_model(trained)
    (_, dialogues), = load_prediction_dialogues(PredictGraphConfig(model_dir=str(trained), splits=["test"]), meta,
                                                load_yaml(trained / "config.yaml"))
    loader = make_loader(dialogues, 8)
    ref, got = run_inference(model, loader), run_inference(quantize_int8(model), loader)
    diff = np.abs(got.emotion_probs - ref.emotion_probs)
    assert diff.max() > 0                       # the int8 kernels ran (not the float path under another name)
    assert diff.max() < 0.05                    # 8-bit products: probabilities within a few hundredths
    assert (got.emotion_probs.argmax(-1) == ref.emotion_probs.argmax(-1)).mean() >= 0.95
    np.testing.assert_array_equal(got.labels, ref.labels)


def test_predict_graph_and_predictor_take_quantize(trained, tmp_path):
    rows = {}
    for q in ("none", "int8"):
        out = tmp_path / f"pred_{q}.csv"
        run_predict_graph(PredictGraphConfig(model_dir=str(trained), output=str(out), splits=["test"], quantize=q))
        rows[q] = pd.read_csv(out)
    a, b = rows["none"], rows["int8"]
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    assert (a.emotion == b.emotion).mean() >= 0.95
    predictor = GraphPredictor.from_pretrained(trained, quantize="int8")
    assert predictor.model.quantized == "int8"
    assert GraphPredictor.from_pretrained(trained).model.quantized is None


def test_int8_copy_refuses_training_autocast_and_wrong_inputs(trained):
    model, _ = load_graph_model(trained)
    q = quantize_int8(model)
    data = load_yaml(trained / "config.yaml")["data"]
    splits = load_splits(config_from_dict(DialogueDataConfig, data, "test"))
    batch = next(iter(make_loader(splits.test, 4)))
    q.train()
    with pytest.raises(RuntimeError, match="for inference: call .eval"):
        q(batch)
    q.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="without autocast"):
        q(batch)
    with pytest.raises(ValueError, match=r"expected a float32 model, parameter .* is torch.float64"):
        quantize_int8(model.double())
    assert maybe_quantize(model, "none") is model
    with pytest.raises(ValueError, match=r"quantize: expected one of \('none', 'int8'\), got 'int4'"):
        maybe_quantize(model, "int4")
    with pytest.raises(ConfigError, match="quantize: unknown 'int4'"):
        config_from_dict(PredictGraphConfig, {"quantize": "int4"}, "cmd")
