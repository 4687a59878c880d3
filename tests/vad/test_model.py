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


# ---- the transformers model folder -----------------------------------------------------------
def _head_known(model):
    """Zero weights, known bias: every text predicts bias * std + mean (a known answer)."""
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([1.0, -1.0, 0.5]))
    return np.array([3.0 + np.sqrt(8 / 3), 3.0 - np.sqrt(2 / 3), 3.5])


def test_folder_is_a_standard_transformers_model(model, tmp_path):
    import json

    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    from erc.vad.model import VADConfig

    before = model.predict(TEXTS)
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "erc-vad" and cfg["architectures"] == ["VADRegressor"]
    assert cfg["encoder"]["model_type"] == "roberta" and cfg["encoder"]["hidden_size"] == 32  # nested, whole
    assert cfg["pooling"] == "mean" and cfg["problem_type"] == "regression"
    assert cfg["id2label"] == {"0": "valence", "1": "arousal", "2": "dominance"}
    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
        assert {"head.weight", "head.bias", "scaler_mean", "scaler_std"} <= keys
        assert torch.equal(fh.get_tensor("scaler_std"), model.scaler_std)
    assert all(k.startswith(("encoder.", "head.", "scaler_")) for k in keys)
    assert not (tmp_path / "m" / "vad_config.json").exists()
    assert isinstance(AutoConfig.from_pretrained(tmp_path / "m"), VADConfig)
    auto = AutoModel.from_pretrained(tmp_path / "m")
    assert type(auto) is VADRegressor and auto.tokenizer is not None
    np.testing.assert_array_equal(auto.predict(TEXTS), before)


def test_transformers_pipeline_reads_vad_on_the_data_scale(model, tmp_path):
    from transformers import pipeline

    expected = _head_known(model)
    model.save_pretrained(tmp_path / "m")
    pipe = pipeline("text-classification", model=str(tmp_path / "m"), function_to_apply="none", top_k=None)
    out = pipe(TEXTS[:2])
    for scores in out:
        got = {s["label"]: s["score"] for s in scores}
        assert got == pytest.approx(dict(zip(("valence", "arousal", "dominance"), expected)), abs=1e-5)


def test_seeded_construction_draws_the_head_as_a_plain_linear(tiny_encoder_dir):
    """The head is torch's default Linear init, drawn once: the same numbers as nn.Linear(32, 3)
    under the same seed, and the global RNG left where that draw leaves it."""
    torch.manual_seed(7)
    m = VADRegressor.from_encoder_name(str(tiny_encoder_dir))
    after_model = torch.rand(4)
    torch.manual_seed(7)
    ref = torch.nn.Linear(32, 3)
    after_ref = torch.rand(4)
    assert torch.equal(m.head.weight, ref.weight) and torch.equal(m.head.bias, ref.bias)
    assert torch.equal(after_model, after_ref)


def _write_legacy_folder(model, folder):
    """The folder layout written before the transformers format, built by hand."""
    import json

    from safetensors.torch import save_file

    model.encoder.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    save_file({"head.weight": model.head.weight.detach().clone(), "head.bias": model.head.bias.detach().clone(),
               "scaler_mean": model.scaler_mean.clone(), "scaler_std": model.scaler_std.clone()},
              str(folder / "vad_head.safetensors"))
    (folder / "vad_config.json").write_text(json.dumps({
        "format": "erc-toolkit VADRegressor v1", "pooling": "mean", "dropout": 0.1, "max_length": 128,
        "target_names": ["valence", "arousal", "dominance"], "hidden_size": 32,
        "scaler_mean": model.scaler_mean.tolist(), "scaler_std": model.scaler_std.tolist()}))
    (folder / "NOTES.txt").write_text("kept\n")


def test_legacy_folder_loads_and_converts_with_one_command(model, tmp_path, capsys):
    from transformers import AutoModel

    from erc.cli import main

    expected = _head_known(model)
    old = tmp_path / "old"
    _write_legacy_folder(model, old)
    legacy = VADRegressor.from_pretrained(old)
    np.testing.assert_allclose(legacy.predict(TEXTS), np.tile(expected, (len(TEXTS), 1)), atol=1e-5)
    np.testing.assert_allclose(legacy.embed(TEXTS), model.embed(TEXTS), atol=1e-6)
    assert main(["convert-vad", str(old), str(tmp_path / "new")]) == 0
    assert (tmp_path / "new" / "config.json").is_file() and not (tmp_path / "new" / "vad_config.json").exists()
    assert (tmp_path / "new" / "NOTES.txt").read_text() == "kept\n"
    converted = AutoModel.from_pretrained(tmp_path / "new")
    np.testing.assert_allclose(converted.predict(TEXTS), np.tile(expected, (len(TEXTS), 1)), atol=1e-5)
    assert converted.pooling == "mean"
    for args, message in (([str(old), str(tmp_path / "new")], "not an empty folder"),  # never overwrites
                          ([str(tmp_path / "new"), str(tmp_path / "newer")], "no vad_config.json")):
        with pytest.raises(SystemExit) as exc:
            main(["convert-vad", *args])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_folder_without_head_weights_is_refused(model, tmp_path):
    from safetensors.torch import load_file, save_file

    model.save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if not k.startswith("head.")}, str(weights), metadata={"format": "pt"})
    with pytest.raises(EncoderLoadError, match=r"head\.bias.*missing"):
        VADRegressor.from_pretrained(tmp_path / "m")


def test_encoder_of_a_vad_folder_loads_without_the_vad_classes(model, tmp_path):
    """erc.encoders (a lower layer) reads the encoder out of a V/A/D folder by itself."""
    from erc.encoders.hf import load_encoder

    model.save_pretrained(tmp_path / "m")
    enc, tok = load_encoder(str(tmp_path / "m"))
    assert type(enc) is type(model.encoder)
    for (name, a), (_, b) in zip(enc.state_dict().items(), model.encoder.state_dict().items()):
        assert torch.equal(a, b), name
    np.testing.assert_allclose(encode_texts(enc, tok, TEXTS, pooling="mean"), model.embed(TEXTS), atol=1e-6)


def test_push_to_hub_uploads_the_whole_folder(model, tmp_path, monkeypatch):
    """push_to_hub is transformers' own; offline, its upload step is replaced by a copy."""
    import shutil

    import transformers.utils.hub as hub
    from transformers import AutoModel

    class _Api:
        def create_repo(self, repo_id, **kw):
            return type("Repo", (), {"repo_id": repo_id})()

    class _Card:
        def save(self, path):
            open(path, "w").write("card\n")

    uploaded = tmp_path / "uploaded"

    def upload(self, working_dir, repo_id, **kw):
        shutil.copytree(working_dir, uploaded)
        return repo_id

    monkeypatch.setattr(hub, "hf_api", lambda: _Api())
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *a, **k: _Card())
    monkeypatch.setattr(VADRegressor, "_upload_modified_files", upload)
    before = model.predict(TEXTS)
    assert model.push_to_hub("someone/vad-test") == "someone/vad-test"
    assert (uploaded / "tokenizer.json").is_file() and (uploaded / "model.safetensors").is_file()
    np.testing.assert_array_equal(AutoModel.from_pretrained(uploaded).predict(TEXTS), before)
