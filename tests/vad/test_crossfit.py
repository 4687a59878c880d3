"""``embed --cross-fit K``: each training session's dialogues are embedded by an encoder fine-tuned
without that session; everything else by the fine-tuned model itself."""
from __future__ import annotations

import json

import numpy as np
import pytest

N_DIALOGUES = 20      # synthetic dialogue i is in session i % 5 + 1 (ids Syn0S_dlgNNN)


def _session(dialogue_id: str) -> int:
    return int(dialogue_id[3:5])


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_encoder_dir):
    """A tiny fine-tuning on synthetic sessions 1-3 (validation 4, test 5): its best_model folder."""
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    out = tmp_path_factory.mktemp("crossfit") / "finetune"
    run_finetune(config_from_flat(FinetuneConfig, path="synthetic", synthetic_dialogues=N_DIALOGUES, epochs=1,
                                  lr=3.0e-3, num_threads=1, plots=False, model=str(tiny_encoder_dir),
                                  train_sessions=[1, 2, 3], valid_sessions=[4], test_sessions=[5],
                                  output_dir=str(out)))
    return out / "best_model"


def _embed(out, model, **kw):
    from erc.core.config import config_from_flat
    from erc.data.text import read_embeddings
    from erc.vad.config import EmbedConfig
    from erc.vad.embed import run_embed

    cfg = config_from_flat(EmbedConfig, dataset="synthetic", synthetic_dialogues=N_DIALOGUES, model=str(model),
                           num_threads=1, output=str(out), **kw)
    return read_embeddings(run_embed(cfg))


def test_fold_groups_are_consecutive_and_near_even():
    from erc.core.config import ConfigError
    from erc.vad.crossfit import fold_groups

    assert fold_groups([3, 1, 2], 2) == [[1, 2], [3]]
    assert fold_groups([1, 2, 3, 4], 2) == [[1, 2], [3, 4]]
    assert fold_groups([1, 2], 2) == [[1], [2]]
    with pytest.raises(ConfigError, match="expected 2 to 2 folds"):
        fold_groups([1, 2], 3)
    with pytest.raises(ConfigError, match="at least 2 training sessions"):
        fold_groups([1], 2)


def test_each_training_session_is_embedded_by_an_encoder_that_never_saw_it(tmp_path, finetuned):
    table = _embed(tmp_path / "cf" / "emb.npz", finetuned, cross_fit=2)
    folds = tmp_path / "cf" / "cross_fit"
    # fold 1-2 trains on session 3 only, fold 3 on sessions 1-2; validation and test as the full run
    for name, train in (("fold_1-2", [3]), ("fold_3", [1, 2])):
        m = json.loads((folds / name / "metrics.json").read_text())
        assert m["sessions"] == {"train": train, "validation": [4], "test": [5]}

    plain_full = _embed(tmp_path / "full.npz", finetuned)
    plain_12 = _embed(tmp_path / "f12.npz", folds / "fold_1-2" / "best_model")
    plain_3 = _embed(tmp_path / "f3.npz", folds / "fold_3" / "best_model")
    sessions = np.array([_session(d) for d in table.dialogue_ids])
    for ref in (plain_full, plain_12, plain_3):      # same rows in the same order
        assert list(ref.dialogue_ids) == list(table.dialogue_ids)
        assert list(ref.positions) == list(table.positions)
    expect = {1: plain_12, 2: plain_12, 3: plain_3, 4: plain_full, 5: plain_full}
    for s, ref in expect.items():
        rows = sessions == s
        assert rows.any()
        np.testing.assert_allclose(table.embeddings[rows], ref.embeddings[rows], atol=1e-5)
    # the fold encoders really differ from the full model on the sessions they replace
    rows = np.isin(sessions, [1, 2, 3])
    assert np.abs(table.embeddings[rows] - plain_full.embeddings[rows]).max() > 1e-3

    record = json.loads((tmp_path / "cf" / "emb.npz.cross_fit.json").read_text())
    enc = {e["name"]: e for e in record["encoders"]}
    assert list(enc) == ["fold_1-2", "fold_3", "full"]
    assert enc["fold_1-2"]["held_out_sessions"] == [1, 2] and enc["fold_1-2"]["train_sessions"] == [3]
    assert enc["full"]["held_out_sessions"] == [] and enc["full"]["train_sessions"] == [1, 2, 3]
    for name, ss in (("fold_1-2", [1, 2]), ("fold_3", [3]), ("full", [4, 5])):
        rows = np.isin(sessions, ss)
        assert enc[name]["utterances"] == int(rows.sum())
        assert enc[name]["dialogues"] == len(set(np.asarray(table.dialogue_ids)[rows]))
    assert enc["fold_3"]["finetune_metrics"]["sessions"]["train"] == [1, 2]


def test_finished_folds_are_reused(tmp_path, finetuned):
    first = _embed(tmp_path / "a" / "emb.npz", finetuned, cross_fit=3, cross_fit_dir=str(tmp_path / "folds"))
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "folds").glob("fold_*/metrics.json")}
    assert len(stamps) == 3
    again = _embed(tmp_path / "b" / "emb.npz", finetuned, cross_fit=3, cross_fit_dir=str(tmp_path / "folds"))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps       # no fold was trained again
    np.testing.assert_allclose(again.embeddings, first.embeddings, atol=1e-6)


def test_cross_fit_errors_name_the_field(tmp_path, finetuned, tiny_encoder_dir):
    from erc.core.config import ConfigError, config_from_flat
    from erc.vad.config import EmbedConfig

    with pytest.raises(ConfigError, match="field 'cross_fit': expected 0 .* at least 2"):
        config_from_flat(EmbedConfig, cross_fit=1)
    with pytest.raises(ConfigError, match="not a fine-tuned V/A/D folder"):
        _embed(tmp_path / "x.npz", tiny_encoder_dir, cross_fit=2)
    with pytest.raises(ConfigError, match="expected 2 to 3 folds"):
        _embed(tmp_path / "y.npz", finetuned, cross_fit=4)
    with pytest.raises(ConfigError, match="field 'finetune_config'.*no such file"):
        _embed(tmp_path / "z.npz", finetuned, cross_fit=2, finetune_config=str(tmp_path / "missing.yaml"))
    assert not list(tmp_path.glob("*.npz"))


def test_cross_fit_needs_a_session_split(tmp_path, finetuned):
    """A fine-tuning split by dialogue has no sessions to hold out: one clear error, nothing written."""
    import shutil

    import yaml

    from erc.core.config import ConfigError

    run = tmp_path / "run"
    shutil.copytree(finetuned, run / "best_model")
    cfg = yaml.safe_load((finetuned.parent / "config.yaml").read_text())
    cfg["data"]["split"] = "dialogue"
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="splits by dialogue; cross-fitting .* needs a session split"):
        _embed(tmp_path / "e" / "emb.npz", run / "best_model", cross_fit=2)
    assert not (tmp_path / "e").exists()
    # a leave-one-session-out fine-tuning that validates on a slice has no whole validation session to keep
    cfg["data"].update(split="session", leave_one_session_out=4, loso_validation="slice")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="validates on a slice .* needs whole ones"):
        _embed(tmp_path / "e" / "emb.npz", run / "best_model", cross_fit=2)
    assert not (tmp_path / "e").exists()
