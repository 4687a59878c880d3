"""Model cards generated from a finetune run (erc.vad.card)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from erc.vad.card import finetune_card_info, render_model_card, write_model_card
from erc.core.config import config_from_flat
from erc.vad.config import FinetuneConfig
from erc.vad.model import VADRegressor

TEST = {"mse": 0.2, "rmse": 0.4472, "mae": 0.35, "pearson": 0.61, "ccc": 0.55,
        "valence_ccc": 0.71234, "valence_pearson": 0.75, "valence_rmse": 0.5, "valence_mae": 0.4,
        "arousal_ccc": 0.5, "arousal_pearson": 0.55, "arousal_rmse": 0.45, "arousal_mae": 0.33,
        "dominance_ccc": 0.44, "dominance_pearson": float("nan"), "dominance_rmse": 0.39, "dominance_mae": 0.31}
RESULT = {"split": "session", "test_is_validation": False, "n_train": 300, "n_validation": 80, "n_test": 90,
          "epochs_run": 3, "best_epoch": 2, "metric_for_best": "val_ccc", "num_processes": 1,
          "test": TEST, "validation": {**TEST, "ccc": 0.6}}


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_of_an_iemocap_run(tmp_path, synthetic_release):
    cfg = config_from_flat(FinetuneConfig, path=str(synthetic_release), model="roberta-base", epochs=3,
                           train_sessions=[1, 2], valid_sessions=[3], test_sessions=[4])
    info = finetune_card_info(cfg, RESULT)
    assert info["data_format"] == "iemocap" and info["encoder"] == "roberta-base"
    assert info["split"] == "by session: train [1, 2], validation [3], test [4]"
    text = render_model_card(tmp_path, info)
    meta = _front_matter(text)
    assert meta["base_model"] == "roberta-base" and meta["library_name"] == "transformers"
    results = meta["model-index"][0]["results"]
    values = {m["name"]: m["value"] for r in results for m in r["metrics"]}
    assert values["valence CCC"] == pytest.approx(0.71234) and values["dominance RMSE"] == pytest.approx(0.39)
    assert "dominance Pearson r" not in values                      # NaN is left out, not written as nan
    assert "IEMOCAP is acted English dyadic speech" in text         # the limitation the data implies
    assert "| valence | 0.712 (0.712) | 0.750 (0.750) | 0.500 (0.500) | 0.400 (0.400) |" in text
    assert "| dominance | 0.440 (0.440) | - (-) |" in text
    assert "| mean / overall | 0.550 (0.600) |" in text
    assert "train 300, validation 80, test 90" in text and "| best epoch | 2 |" in text


def test_card_of_a_synthetic_run_says_it_is_not_emotion_data(tmp_path, tiny_encoder_dir):
    torch.manual_seed(0)
    model = VADRegressor.from_encoder_name(str(tiny_encoder_dir))
    model.fit_scaler(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 3.0]]))
    model.save_pretrained(tmp_path / "best_model")
    cfg = FinetuneConfig(model=str(tiny_encoder_dir))
    path = write_model_card(tmp_path / "best_model", finetune_card_info(cfg, {**RESULT, "test_is_validation": True}))
    text = path.read_text()
    assert path.name == "README.md" and "base_model" not in _front_matter(text)  # a local folder is no Hub model
    assert "SYNTHETIC template data" in text and "test figures are validation figures" in text
    assert "valence mean 2.000 std 1.000, arousal mean 3.000 std 1.000, dominance mean 3.000 std 1.000" in text
    # the card is part of the folder and the folder still loads
    assert VADRegressor.from_pretrained(tmp_path / "best_model").pooling == "cls"
