"""GraphStream: a causal model run turn by turn equals the same model run on the whole dialogue."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.data.batch import Dialogue, collate_dialogues
from erc.graph.model import GraphModelConfig, GraphSmile
from erc.graph.streaming import GraphStream, NotCausalError


def _dialogue(n: int, dims: dict[str, int], seed: int) -> Dialogue:
    rng = np.random.default_rng(seed)
    return Dialogue(dialogue_id=f"d{seed}", features={m: rng.normal(size=(n, d)).astype(np.float32)
                                                      for m, d in dims.items()},
                    labels=np.zeros(n, dtype=np.int64), speakers=np.arange(n) % 2)


def _model(dims: dict[str, int], win_p: int, layers: list[int], propagation: str = "csr", norm: str = "sym") -> GraphSmile:
    torch.manual_seed(0)
    cfg = GraphModelConfig(input_dims=dims, num_classes=4, hidden_dim=16, layers=layers, win_p=win_p, win_f=0,
                           max_distance=5, dropout=0.3, shift_win=3, propagation=propagation, norm=norm,
                           batchnorm_modalities=["text"])
    model = GraphSmile(cfg).double()
    with torch.no_grad():                              # relation weights that differ per distance bucket
        for stack in model.graphs.values():
            stack.relation_weight.copy_(torch.linspace(-2.0, 2.0, stack.relation_weight.numel()))
        for norm in model.norms.values():
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.mark.parametrize("norm", ["sym", "row"])
@pytest.mark.parametrize("dims,win_p,layers", [
    ({"text": 6}, 3, [4]),                               # temporal graph, window shorter than the dialogue
    ({"text": 6}, -1, [3]),                              # whole past, distances clipped at max_distance
    ({"text": 6}, 0, [2]),                               # no context at all: a self loop only
    ({"text": 6, "audio": 5, "visual": 4}, 2, [2, 3, 1]),   # three pair graphs, six representations
])
def test_stream_equals_offline_forward(dims, win_p, layers, norm):
    model = _model(dims, win_p, layers, norm=norm)
    d = _dialogue(11, dims, seed=1)
    with torch.no_grad():
        offline = model(collate_dialogues([d]))          # features are cast to the model's float64
    stream = GraphStream(model)
    for t in range(len(d)):
        out = stream.step({m: torch.from_numpy(d.features[m][t]).double() for m in dims})
        torch.testing.assert_close(out.emotion_logits, offline.emotion_logits[t], rtol=0, atol=1e-10)
        torch.testing.assert_close(out.sentiment_logits, offline.sentiment_logits[t], rtol=0, atol=1e-10)
    assert len(stream) == len(d)


def test_past_turns_are_not_changed_by_later_ones():
    """The causal model's offline output for a prefix equals its output inside the longer dialogue."""
    dims = {"text": 6}
    model = _model(dims, 2, [3])
    d = _dialogue(9, dims, seed=2)
    with torch.no_grad():
        full = model(collate_dialogues([d])).emotion_logits
        prefix = Dialogue("p", {"text": d.features["text"][:5]}, d.labels[:5], d.speakers[:5])
        part = model(collate_dialogues([prefix])).emotion_logits
    torch.testing.assert_close(part.float(), full[:5].float(), rtol=0, atol=1e-5)


def test_float32_stream_matches_to_float_precision():
    dims = {"text": 6, "audio": 3}
    model = _model(dims, 4, [5]).float()
    d = _dialogue(20, dims, seed=3)
    with torch.no_grad():
        offline = model(collate_dialogues([d]))
    stream = GraphStream(model)
    logits = torch.stack([stream.step({m: torch.from_numpy(d.features[m][t]) for m in dims}).emotion_logits
                          for t in range(len(d))])
    torch.testing.assert_close(logits, offline.emotion_logits, rtol=0, atol=1e-5)
    assert torch.equal(logits.argmax(-1), offline.emotion_logits.argmax(-1))


def test_window_cache_is_bounded():
    model = _model({"text": 6}, 3, [2])
    stream = GraphStream(model)
    for t in range(50):
        stream.step({"text": torch.zeros(6, dtype=torch.float64)})
    rows = stream.stacks[0][2].cache[0][0]
    assert rows.view().shape == (4, 16)          # win_p + 1 rows, not 50


def test_non_causal_model_is_refused():
    cfg = GraphModelConfig(input_dims={"text": 4}, hidden_dim=8, layers=[1], win_p=2, win_f=2)
    with pytest.raises(NotCausalError, match="win_f"):
        GraphStream(GraphSmile(cfg))
