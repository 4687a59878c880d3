"""train-graph: selection rule, determinism, resume, loss modes, 2-process evaluation, predict-graph."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from erc.core.config import config_from_flat
from erc.core.io import read_json
from erc.graph.config import GraphTrainConfig, PredictGraphConfig
from erc.graph.losses import LossCombiner
from erc.graph.train import select_best_epoch
from tests.conftest import free_port, run_processes

TINY = dict(dataset="synthetic", synthetic_dialogues=24, hidden_dim=16, layers=[1, 1, 1], win_p=2, win_f=2,
            shift_win=3, batch_size=4, eval_batch_size=3, lr=3.0e-3, num_threads=1, progress=False,
            valid_fraction=0.2)


def _flags(d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else "--no-" + k.replace("_", "-"))
        elif isinstance(v, list):
            out += [flag, *map(str, v)]
        else:
            out += [flag, str(v)]
    return out


def test_selection_picks_first_best_validation_epoch_never_test():
    valid = [0.50, 0.62, 0.71, 0.69, 0.71, float("nan"), 0.70]
    test = [0.90, 0.10, 0.20, 0.99, 0.30, 0.95, 0.40]       # must not matter
    assert select_best_epoch(valid) == 2
    assert select_best_epoch(valid[:2]) == 1
    assert select_best_epoch([float("nan"), 0.1]) == 1
    assert test[select_best_epoch(valid)] == 0.20
    with pytest.raises(ValueError):
        select_best_epoch([float("nan")])


def test_loss_modes():
    losses = {"emo": torch.tensor(2.0), "sen": torch.tensor(1.0), "sft": torch.tensor(0.5)}
    assert float(LossCombiner("emo_sen_sft", (1.0, 0.6, 0.4))(losses)) == pytest.approx(2.0 + 0.6 + 0.2)
    ep = LossCombiner("epoch", (1.0, 1.0, 1.0), epochs=4)
    # epoch 0: a = 1/4 -> 2 * 0.25 + 1.5 * 0.75 ; last epoch: emotion only
    assert float(ep(losses, 0)) == pytest.approx(0.5 + 1.125)
    assert float(ep(losses, 3)) == pytest.approx(2.0)
    auto = LossCombiner("auto")
    assert [p.shape for p in auto.parameters()] == [torch.Size([3])]
    # sigma = 1: sum 0.5 * L + log 2
    assert float(auto(losses)) == pytest.approx(0.5 * 3.5 + 3 * math.log(2.0))


def _run(tmp_path, name, **over):
    from erc.graph.train import run_train_graph

    cfg = config_from_flat(GraphTrainConfig, {**TINY, "output_dir": str(tmp_path / name), **over})
    return run_train_graph(cfg)


def test_deterministic_selection_consistent_and_resume_exact(tmp_path):
    a = _run(tmp_path, "a", epochs=4)
    b = _run(tmp_path, "b", epochs=4, release_memory=True)    # malloc_trim after each step or not: same numbers
    ha = pd.read_csv(tmp_path / "a" / "epochs.csv")
    hb = pd.read_csv(tmp_path / "b" / "epochs.csv")
    pd.testing.assert_frame_equal(ha, hb)                                  # identical 1-process runs
    assert a["test_weighted_f1_mean"] == b["test_weighted_f1_mean"]
    # activations recomputed in the backward (dropout masks replayed): the same gradients, the same run
    r = _run(tmp_path, "r", epochs=4, recompute_graphs=True)
    pd.testing.assert_frame_equal(ha, pd.read_csv(tmp_path / "r" / "epochs.csv"))
    assert r["test_weighted_f1_mean"] == a["test_weighted_f1_mean"]
    # the reported epoch is the best VALIDATION epoch of the CSV, and its test score is what the
    # saved best model's predictions give
    best = int(np.nanargmax(ha["valid_weighted_f1"].to_numpy()))
    assert a["per_seed"][0]["best_epoch"] == best
    pred = pd.read_csv(tmp_path / "a" / "seed_0" / "best_model" / "test_predictions.csv")
    from sklearn.metrics import f1_score
    assert f1_score(pred.label, pred.pred, average="weighted", labels=range(6)) == pytest.approx(
        a["test_weighted_f1_mean"])
    # interrupted after 2 epochs, resumed to 4: same history as the uninterrupted run
    _run(tmp_path, "c", epochs=2)
    _run(tmp_path, "c", epochs=4)
    hc = pd.read_csv(tmp_path / "c" / "epochs.csv")
    pd.testing.assert_frame_equal(ha, hc)


def test_release_memory_trims_after_loading_and_once_per_training_step(tmp_path, monkeypatch):
    import erc.graph.train as train
    from erc.core.harness import release_free_heap

    assert release_free_heap() is sys.platform.startswith("linux")   # glibc here (CI and dev machines)
    calls = []
    monkeypatch.setattr(train, "release_free_heap", lambda: calls.append(1))
    _run(tmp_path, "on", epochs=2, release_memory=True)
    n_train = 24 - 5 - 5                     # synthetic: 24 dialogues, 5 test (session 5), 5 valid (0.2 of 24)
    steps = 2 * math.ceil(n_train / TINY["batch_size"])
    assert len(calls) == 1 + steps           # once after loading the data, then once per optimizer step
    _run(tmp_path, "off", epochs=2)          # the default: once after loading only
    assert len(calls) == 1 + steps + 1


def test_auto_loss_params_are_trained_and_checkpointed_and_hooks_run(tmp_path):
    from erc.graph.train import run_train_graph

    seen = []
    cfg = config_from_flat(GraphTrainConfig,
                           {**TINY, "output_dir": str(tmp_path / "auto"), "epochs": 1, "loss": "auto"})
    run_train_graph(cfg, loss_hooks=[lambda out, batch, epoch: (out.emotion_logits.sum() * 0 + 100.0,
                                                                 {"loss_hook": 100.0})],
                    on_epoch_end=lambda info: seen.append((info["epoch"], info["test"] is not None,
                                                           info["valid"].emotion_probs.shape[1])))
    assert seen == [(0, True, 6)]                     # first epoch is always a new best: test evaluated
    hist = pd.read_csv(tmp_path / "auto" / "epochs.csv")
    assert hist.loss_hook.tolist() == [100.0] and (hist.loss > 100.0).all()
    ckpt = tmp_path / "auto" / "seed_0" / "checkpoints" / "epoch_1"   # named checkpoint folders (harness)
    from safetensors.torch import load_file
    sigma = load_file(str(ckpt / "model_1.safetensors"))["sigma"]
    assert sigma.shape == (3,) and not torch.allclose(sigma, torch.ones(3))   # it moved: in the optimiser


def test_seeds_mean_std_and_predict_graph(tmp_path):
    res = _run(tmp_path, "s", epochs=2, seeds=2, seed=5, modalities=["text", "timing"], layers=[1])
    assert res["seeds"] == [5, 6]
    vals = [r["test"]["weighted_f1"] for r in res["per_seed"]]
    assert res["test_weighted_f1_mean"] == pytest.approx(np.mean(vals))
    assert res["test_weighted_f1_std"] == pytest.approx(np.std(vals, ddof=1))
    assert read_json(tmp_path / "s" / "results.json")["seeds"] == [5, 6]
    assert set(pd.read_csv(tmp_path / "s" / "epochs.csv").seed) == {5, 6}

    from erc.graph.predict import run_predict_graph
    out = tmp_path / "pred.csv"
    run_predict_graph(PredictGraphConfig(model_dir=str(tmp_path / "s" / "seed_5" / "best_model"),
                                         output=str(out), splits=["test"]))
    pred = pd.read_csv(out)
    ref = pd.read_csv(tmp_path / "s" / "seed_5" / "best_model" / "test_predictions.csv")
    m = pred.merge(ref, on=["dialogue_id", "position"], suffixes=("", "_train"))
    assert len(m) == len(pred) == len(ref)
    probs = pred[[c for c in pred.columns if c.startswith("p_") and not c.startswith("p_sentiment")]]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(m.p_hap, m.p_hap_train, atol=1e-6)
    assert set(pred.sentiment) <= {"negative", "neutral", "positive"}


def test_two_process_run_evaluates_every_test_dialogue_once(tmp_path, project_root):
    """Two CPU processes (torchrun + Accelerate's MULTI_CPU/gloo; note that
    `accelerate launch --cpu --num_processes 2` without mpirun starts ONE process in accelerate 1.x).
    4 test dialogues in batches of 3 over 2 processes: Accelerate pads the last round with a
    repeated dialogue; each is still evaluated exactly once and the metrics equal a 1-process
    evaluation of the saved best model."""
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "cli.py", "train-graph", *_flags({**TINY, "eval_batch_size": 3, "epochs": 2,
                                             "output_dir": str(out)})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = run_processes(cmd, cwd=project_root, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_json(out / "results.json")
    assert res["num_processes"] == 2
    best = out / "seed_0" / "best_model"
    pred = pd.read_csv(best / "test_predictions.csv")

    from erc.data.dialogues import load_splits
    cfg = config_from_flat(GraphTrainConfig, {**TINY, "output_dir": str(out)})
    test = load_splits(cfg.data).test
    assert len(test) % 6 != 0                                              # padding really happens
    assert len(pred) == sum(len(d) for d in test)                         # no repeats, none missing
    assert not pred.duplicated(["dialogue_id", "position"]).any()
    assert sorted(pred.dialogue_id.unique()) == sorted(d.dialogue_id for d in test)

    from erc.graph.model import load_graph_model
    from erc.graph.predict import predict_dialogues, load_prediction_dialogues
    model, meta = load_graph_model(best)
    from erc.core.config import load_yaml
    ((_, dlgs),) = load_prediction_dialogues(PredictGraphConfig(model_dir=str(best), splits=["test"]), meta,
                                             load_yaml(best / "config.yaml"))
    one = pd.DataFrame(predict_dialogues(model, dlgs, batch_size=7))
    m = one.merge(pred, on=["dialogue_id", "position"], suffixes=("", "_2p"))
    np.testing.assert_allclose(m.p_hap, m.p_hap_2p, atol=1e-5)
    from sklearn.metrics import accuracy_score, f1_score
    labels = [int(x) for x in m.label]
    one_pred = [meta["label_names"].index(e) for e in m.emotion]
    assert accuracy_score(labels, one_pred) == pytest.approx(res["test_accuracy_mean"])
    assert f1_score(labels, one_pred, average="weighted", labels=range(6)) == pytest.approx(
        res["test_weighted_f1_mean"])

    # Checkpoints written by 2 processes resume in 1: one more epoch continues the same history.
    two_proc_rows = pd.read_csv(out / "epochs.csv")
    proc = subprocess.run([sys.executable, "cli.py", "train-graph",
                           *_flags({**TINY, "eval_batch_size": 3, "epochs": 3, "output_dir": str(out)})],
                          cwd=project_root, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = pd.read_csv(out / "epochs.csv")
    assert len(resumed) == len(two_proc_rows) + 1
    timing = [c for c in resumed.columns if "second" in c]          # wall times differ, nothing else may
    pd.testing.assert_frame_equal(resumed.iloc[:len(two_proc_rows)].drop(columns=timing),
                                  two_proc_rows.drop(columns=timing), check_dtype=False)
    assert resumed.epoch.tolist()[-1] == resumed.epoch.tolist()[-2] + 1
    assert read_json(out / "results.json")["num_processes"] == 1


def test_tensorboard_logs_equal_epochs_csv_and_a_second_run_is_refused(tmp_path):
    """report_to tensorboard: one scalar per epochs.csv column and epoch (tag seed_<k>/<column>); a second
    run with other data and another lr into the same folder stops before training (it used to "resume after
    epoch 2" and leave run A's results.json beside run B's config); --overwrite clears and trains."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from erc.core.runs import RunMismatchError

    _run(tmp_path, "tb", epochs=2, report_to="tensorboard")
    acc = EventAccumulator(str(tmp_path / "tb" / "logs" / "train_graph"))
    acc.Reload()
    hist = pd.read_csv(tmp_path / "tb" / "epochs.csv")
    logged = {c for c in hist.columns if c not in ("seed", "epoch")}
    assert set(acc.Tags()["scalars"]) == {f"seed_0/{c}" for c in logged}
    for c in logged:
        events = acc.Scalars(f"seed_0/{c}")
        assert [e.step for e in events] == hist.epoch.tolist()
        np.testing.assert_allclose([e.value for e in events], hist[c].to_numpy(dtype=float), rtol=1e-6, atol=1e-7)

    results = tmp_path / "tb" / "results.json"
    stamp = results.stat().st_mtime_ns
    with pytest.raises(RunMismatchError) as err:
        _run(tmp_path, "tb", epochs=4, lr=1.0e-3, synthetic_dialogues=30)
    msg = str(err.value)
    assert "lr 0.003 -> 0.001" in msg and "data.synthetic_dialogues 24 -> 30" in msg
    assert "--overwrite" in msg and "--output-dir" in msg and len(msg.splitlines()) == 2
    assert results.stat().st_mtime_ns == stamp                                  # run A untouched
    res = _run(tmp_path, "tb", epochs=1, lr=1.0e-3, synthetic_dialogues=30, overwrite=True)
    assert res["per_seed"][0]["epochs_run"] == 1                                # trained from scratch
    assert not (tmp_path / "tb" / "logs").exists()
    assert read_json(tmp_path / "tb" / "run.json")["config"]["lr"] == 1.0e-3


def test_kill_between_renames_and_truncated_checkpoint_resume_exactly(tmp_path, caplog):
    """A checkpoint left complete only under its temporary name is resumed from (and moved into place);
    a truncated newest checkpoint is named in a warning and the previous one is used; both runs end
    with the history of an uninterrupted run."""
    import logging
    import os

    _run(tmp_path, "full", epochs=3)
    full = pd.read_csv(tmp_path / "full" / "epochs.csv")
    _run(tmp_path, "kill", epochs=2)
    ckpts = tmp_path / "kill" / "seed_0" / "checkpoints"
    os.replace(ckpts / "epoch_2", ckpts / ".epoch_2.tmp")
    with caplog.at_level(logging.INFO):
        _run(tmp_path, "kill", epochs=3)
    assert "complete under its temporary name .epoch_2.tmp" in caplog.text
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch_2", "epoch_3"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "kill" / "epochs.csv"), full)

    _run(tmp_path, "trunc", epochs=2)
    bad = tmp_path / "trunc" / "seed_0" / "checkpoints" / "epoch_2" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _run(tmp_path, "trunc", epochs=3)
    assert any(str(bad) in r.getMessage() and "truncated" in r.getMessage()
               for r in caplog.records if r.levelno == logging.WARNING)
    assert "seed 0: resumed from" in caplog.text and "epoch_1 after epoch 0" in caplog.text
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "trunc" / "epochs.csv"), full)


@pytest.mark.parametrize("native", [False, True])
def test_mixed_precision_auto_is_resolved_before_the_run_and_recorded(tmp_path, monkeypatch, native):
    """auto becomes bf16 where the processor computes bf16 natively, else no; config.yaml records the
    resolved value (so the run's identity and card say what ran), and the run trains either way."""
    import yaml

    import erc.core.harness as harness

    from accelerate.state import AcceleratorState

    monkeypatch.setattr(harness, "native_bf16", lambda device_type="cpu": native)
    AcceleratorState._reset_state()   # an earlier test's Accelerator in this process fixed its precision
    assert harness.resolve_mixed_precision("auto", "cpu") == ("bf16" if native else "no")
    assert harness.resolve_mixed_precision("no", "cpu") == "no"
    res = _run(tmp_path, "auto", epochs=1, mixed_precision="auto")
    saved = yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())
    assert saved["mixed_precision"] == ("bf16" if native else "no")
    AcceleratorState._reset_state()
    assert 0.0 <= res["test_weighted_f1_mean"] <= 1.0
