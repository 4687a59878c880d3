"""Leave-one-session-out: each fold tests its own session only, and the summary is the mean/std of the folds."""
from __future__ import annotations

import json
import statistics

import pytest


def test_folds_hold_out_each_session_and_summarise(tmp_path, tiny_encoder_dir):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    out = tmp_path / "loso"
    summary = run_finetune(config_from_flat(FinetuneConfig, path="synthetic", synthetic_dialogues=20, epochs=1,
                                            lr=3.0e-3, num_threads=1, plots=False, model=str(tiny_encoder_dir),
                                            folds=[2, 3], output_dir=str(out)))
    for k in (2, 3):
        m = json.loads((out / f"fold_{k}" / "metrics.json").read_text())
        s = m["sessions"]
        assert s["test"] == [k] and s["validation"] == [k - 1]
        assert k not in s["train"] and k - 1 not in s["train"] and s["train"]
        assert not m["test_is_validation"]
    folds = {f["test_session"]: f for f in summary["folds"]}
    assert sorted(folds) == [2, 3]
    for key in ("valence_pearson", "arousal_ccc", "ccc"):
        vals = [json.loads((out / f"fold_{k}" / "metrics.json").read_text())["test"][key] for k in (2, 3)]
        assert summary["mean_std"][key]["mean"] == pytest.approx(statistics.mean(vals))
        assert summary["mean_std"][key]["std"] == pytest.approx(statistics.stdev(vals))
    assert json.loads((out / "folds_summary.json").read_text())["mean_std"] == summary["mean_std"]
    assert "| 2 |" in (out / "folds_summary.md").read_text()


def test_folds_need_two_sessions(tmp_path):
    from erc.core.config import ConfigError, config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    with pytest.raises(ConfigError, match="at least two distinct sessions"):
        run_finetune(config_from_flat(FinetuneConfig, path="synthetic", folds=[2], output_dir=str(tmp_path / "x")))


def test_a_session_without_labels_is_never_a_fold_split():
    """The shared IEMOCAP copy has no session-5 labels: fold 1 must validate on session 4, not on 5."""
    import numpy as np
    import pandas as pd

    from erc.data.config import UtteranceDataConfig
    from erc.vad.data import assign_splits

    rows = [{"utterance_id": f"u{s}{i}", "dialogue_id": f"d{s}", "session": s, "text": "t",
             "valence": np.nan if s == 5 else 3.0, "arousal": 3.0, "dominance": 3.0}
            for s in range(1, 6) for i in range(3)]
    df = pd.DataFrame(rows)
    masks, mode = assign_splits(df, UtteranceDataConfig(split="session", leave_one_session_out=1))
    assert mode == "session"
    assert sorted(set(df.loc[masks["validation"], "session"])) == [4]
    assert sorted(set(df.loc[masks["test"], "session"])) == [1]
    assert sorted(set(df.loc[masks["train"], "session"])) == [2, 3]
