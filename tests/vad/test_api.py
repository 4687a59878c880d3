"""The Python API of the V/A/D stage: VADPredictor."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from erc.vad import VADPredictor
from erc.vad.model import VADRegressor


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_encoder_dir):
    torch.manual_seed(0)
    m = VADRegressor.from_encoder_name(str(tiny_encoder_dir), pooling="mean")
    m.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 3.0], [5.0, 3.0, 3.0]]))
    with torch.no_grad():
        m.head.weight.zero_()
        m.head.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    return m.save_pretrained(tmp_path_factory.mktemp("api") / "best_model")


EXPECTED = {"valence": 3.0 + np.sqrt(8 / 3), "arousal": 3.0 - np.sqrt(2 / 3), "dominance": 3.5}


def test_predictor_returns_vad_per_text(folder):
    predict = VADPredictor.from_pretrained(folder, batch_size=2)
    one = predict("I can't believe it!")
    assert one["text"] == "I can't believe it!"
    assert {k: one[k] for k in EXPECTED} == pytest.approx(EXPECTED, abs=1e-5)
    texts = ["i feel happy", "no", "well you know"]
    rows = predict(texts)
    assert [r["text"] for r in rows] == texts
    assert all({k: r[k] for k in EXPECTED} == pytest.approx(EXPECTED, abs=1e-5) for r in rows)
    frame = predict(texts, as_frame=True)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["text", "valence", "arousal", "dominance"]
    np.testing.assert_allclose(frame[["valence", "arousal", "dominance"]].to_numpy(), predict.predict(texts))
    assert predict.embed(texts).shape == (3, 32)
    with pytest.raises(TypeError, match="item 1 is int"):
        predict(["ok", 3])
