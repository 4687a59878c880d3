"""VADRegressor, encode_texts and load_encoder on the tiny local encoder (no network)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from erc.encoders.hf import EncoderLoadError, encode_texts, load_encoder
from erc.vad.model import VADRegressor

TEXTS = ["i feel happy about the trip", "no", "well you know the meeting was angry and furious",
         "okay", "we are so thrilled right now , the news is amazing"]


@pytest.fixture()
def model(tiny_encoder_dir):
    torch.manual_seed(0)
    m = VADRegressor.from_encoder_name(str(tiny_encoder_dir), pooling="mean")
    m.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 3.0], [5.0, 3.0, 3.0]]))
    return m


def test_scaler_fitted_on_targets_and_predictions_on_original_scale(model):
    assert model.scaler_mean.tolist() == pytest.approx([3.0, 3.0, 3.0])
    # population std; a constant column gets std 1 instead of 0
    assert model.scaler_std.tolist() == pytest.approx([np.sqrt(8 / 3), np.sqrt(2 / 3), 1.0])
    y = torch.tensor([[1.5, 4.5, 2.0]])
    assert torch.allclose(model.unscale(model.scale(y)), y)
    # a zero head predicts 0 on the standardised scale = the training mean on the original scale
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    expected = np.array([3.0 + np.sqrt(8 / 3), 3.0 - np.sqrt(2 / 3), 3.5])
    assert np.allclose(model.predict(TEXTS), expected, atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        model.fit_scaler(np.array([[1.0, np.nan, 2.0]]))


def test_loss_is_mse_on_standardised_targets(model):
    model.eval()
    enc = model.tokenizer(TEXTS[:3], padding=True, return_tensors="pt")
    labels = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [2.5, 2.5, 2.5]])
    out = model(enc["input_ids"], enc["attention_mask"], labels=labels)
    manual = ((out["pred"] - (labels - model.scaler_mean) / model.scaler_std) ** 2).mean()
    assert torch.allclose(out["loss"], manual)
    assert torch.allclose(out["vad"], out["pred"] * model.scaler_std + model.scaler_mean)


def test_save_load_round_trip_identical(model, tmp_path):
    before = model.predict(TEXTS, batch_size=2)
    emb = model.embed(TEXTS)
    model.save_pretrained(tmp_path / "m")
    loaded = VADRegressor.from_pretrained(tmp_path / "m")
    assert loaded.pooling == "mean" and loaded.max_length == model.max_length
    assert torch.equal(loaded.scaler_mean, model.scaler_mean) and torch.equal(loaded.scaler_std, model.scaler_std)
    np.testing.assert_array_equal(loaded.predict(TEXTS, batch_size=3), before)
    np.testing.assert_array_equal(loaded.embed(TEXTS), emb)
    # the folder is also a plain HF encoder folder
    enc, tok = load_encoder(str(tmp_path / "m"))
    assert enc.config.hidden_size == model.encoder.config.hidden_size


def test_encode_texts_input_order_and_padding_invariance(tiny_encoder_dir):
    enc, tok = load_encoder(str(tiny_encoder_dir))
    for pooling in ("cls", "mean"):
        batched = encode_texts(enc, tok, TEXTS, pooling=pooling, batch_size=4)
        single = np.stack([encode_texts(enc, tok, [t], pooling=pooling)[0] for t in TEXTS])
        assert batched.shape == (len(TEXTS), enc.config.hidden_size)
        np.testing.assert_allclose(batched, single, atol=1e-5)  # padding and sorting change nothing
    with torch.no_grad():
        ids = tok([TEXTS[0]], return_tensors="pt")
        ref = enc(**ids).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(encode_texts(enc, tok, [TEXTS[0]], pooling="mean")[0], ref, atol=1e-5)


def test_load_encoder_errors_point_to_local_options(tmp_path):
    with pytest.raises(EncoderLoadError, match=r"could not download.*--model PATH.*builtin:tiny"):
        load_encoder("erc-toolkit-tests/no-such-model")  # HF_HUB_OFFLINE=1 in conftest
    with pytest.raises(EncoderLoadError, match="does not exist"):
        load_encoder(str(tmp_path / "missing"))
    with pytest.raises(EncoderLoadError, match="no config.json"):
        load_encoder(str(tmp_path))
    with pytest.raises(EncoderLoadError, match="not a VADRegressor folder"):
        VADRegressor.from_pretrained(tmp_path)
