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


def _release_like_frame(sessions=range(1, 6), dialogues=10, unlabeled=(5,)):
    import numpy as np
    import pandas as pd

    rows = [{"utterance_id": f"u{s}_{d}_{i}", "dialogue_id": f"Ses0{s}_d{d}", "session": s, "text": "t",
             "valence": np.nan if s in unlabeled else 3.0, "arousal": 3.0, "dominance": 3.0}
            for s in sessions for d in range(dialogues) for i in range(3)]
    return pd.DataFrame(rows)


def test_slice_validation_takes_a_seeded_fraction_of_the_other_sessions_dialogues():
    """loso_validation 'slice' (the issue's "train on three, select on a slice of them"): test = session K,
    validation = round(valid_fraction x n) whole dialogues of the other labeled sessions, train = the rest
    of them; the same seed gives the same slice, another seed another one."""
    from erc.data.config import UtteranceDataConfig
    from erc.data.splits import carve_count
    from erc.vad.data import assign_splits, session_sets

    df = _release_like_frame()
    cfg = UtteranceDataConfig(split="session", leave_one_session_out=2, loso_validation="slice", valid_fraction=0.2)
    masks, mode = assign_splits(df, cfg, seed=7)
    dlg = {name: set(df.loc[m, "dialogue_id"]) for name, m in masks.items()}
    assert mode == "session" and sorted(set(df.loc[masks["test"], "session"])) == [2]
    assert len(dlg["validation"]) == carve_count(0.2, 30) == 6                      # 3 sessions x 10 dialogues
    assert sorted(set(df.loc[masks["validation"] | masks["train"], "session"])) == [1, 3, 4]  # 5: unlabeled
    assert not dlg["validation"] & dlg["train"] and not (dlg["validation"] | dlg["train"]) & dlg["test"]
    assert len(dlg["train"]) == 24 and (masks["train"] | masks["validation"]).sum() == 90
    assert session_sets(cfg, [1, 2, 3, 4]) == ([1, 3, 4], [], [2])
    again, _ = assign_splits(df, cfg, seed=7)
    other, _ = assign_splits(df, cfg, seed=8)
    assert (again["validation"] == masks["validation"]).all()
    assert set(df.loc[other["validation"], "dialogue_id"]) != dlg["validation"]
    # the default keeps the session before the test session
    plain, _ = assign_splits(df, UtteranceDataConfig(split="session", leave_one_session_out=2), seed=7)
    assert sorted(set(df.loc[plain["validation"], "session"])) == [1]


def test_folds_with_slice_validation_train_on_every_other_session(tmp_path, tiny_encoder_dir):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    out = tmp_path / "loso_slice"
    summary = run_finetune(config_from_flat(FinetuneConfig, path="synthetic", synthetic_dialogues=20, epochs=1,
                                            lr=3.0e-3, num_threads=1, plots=False, model=str(tiny_encoder_dir),
                                            folds=[2, 3], loso_validation="slice", valid_fraction=0.25,
                                            output_dir=str(out)))
    for k in (2, 3):
        s = json.loads((out / f"fold_{k}" / "metrics.json").read_text())["sessions"]
        others = [x for x in (1, 2, 3, 4, 5) if x != k]
        assert s["test"] == [k] and s["train"] == others and set(s["validation"]) <= set(others)
    assert "slice of the other sessions' dialogues" in summary["note"]
    card = (out / "fold_2" / "best_model" / "README.md").read_text()
    assert "validation 0.25 of the other sessions' dialogues" in card


def test_the_new_loso_field_at_its_default_keeps_the_identity_of_runs_recorded_before_it():
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.stage import FINETUNE_IDENTITY

    plain = FINETUNE_IDENTITY.identity("finetune", config_from_flat(FinetuneConfig, path="synthetic"))
    assert "data.loso_validation" not in plain.config and "data.leave_one_session_out" in plain.config
    sliced = FINETUNE_IDENTITY.identity("finetune", config_from_flat(FinetuneConfig, path="synthetic",
                                                                     loso_validation="slice"))
    assert sliced.config["data.loso_validation"] == "slice" and sliced.fingerprint != plain.fingerprint
