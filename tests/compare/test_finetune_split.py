"""The fine-tuned rows never see the comparison's test split, not even for model selection."""
from __future__ import annotations

from pathlib import Path

import pytest

from erc.compare.config import CompareConfig
from erc.compare.run import finetune_overrides
from erc.core.config import ConfigError, config_from_flat, resolve_config


def test_validation_is_last_training_session_and_test_is_untouched(tmp_path):
    from erc.vad.config import FinetuneConfig

    cfg = config_from_flat(CompareConfig, format="iemocap", path="/x", train_sessions=[3, 1, 2], test_sessions=[4],
                           model="some/encoder", pooling="mean", finetune_epochs=2)
    o = finetune_overrides(cfg, seed=7, run_dir=tmp_path / "r")
    assert o["train_sessions"] == [1, 2] and o["valid_sessions"] == [3] and o["test_sessions"] == [4]
    assert o["path"] == "/x" and o["format"] == "iemocap" and o["split"] == "session"
    assert o["model"] == "some/encoder" and o["pooling"] == "mean"  # same encoder as zero-shot
    assert o["seed"] == 7 and o["epochs"] == 2 and Path(o["output_dir"]) == tmp_path / "r"
    ft = resolve_config(FinetuneConfig, o)  # every override is a real field of the VAD stage
    assert not set(ft.data.valid_sessions) & set(cfg.data.test_sessions)


def test_one_training_session_cannot_hold_out_validation(tmp_path):
    cfg = config_from_flat(CompareConfig, train_sessions=[1], test_sessions=[2])
    with pytest.raises(ConfigError, match="train_sessions"):
        finetune_overrides(cfg, 0, tmp_path)
