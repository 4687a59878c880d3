"""train-baseline: learning on the synthetic corpus, exact resume, the output layout (train-graph's), erc results,
predict-baseline, two-process evaluation."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from erc.baselines.config import BaselineTrainConfig, PredictBaselineConfig
from erc.core.config import config_from_flat
from erc.core.io import read_json
from tests.conftest import free_port

# 40 synthetic dialogues (text / audio / visual), 16-d models
BASE = dict(dataset="synthetic", synthetic_dialogues=40, modalities=["text", "audio", "visual"], global_dim=16,
            party_dim=16, emotion_dim=16, hidden_dim=16, encoder_dim=16, graph_dim=16, num_bases=0, mlp_dims=[32],
            win_p=2, win_f=2, batch_size=4, eval_batch_size=8, lr=1.0e-2, num_threads=1, progress=False,
            valid_fraction=0.2)
# wall time, CPU time and memory differ between runs
TIMING = ("train_seconds", "train_cpu_seconds", "train_utts_per_s", "peak_rss_mb")


def _run(out, **over) -> dict:
    from erc.baselines.train import run_train_baseline

    return run_train_baseline(config_from_flat(BaselineTrainConfig, {**BASE, "output_dir": str(out), **over}))


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


@pytest.mark.parametrize("method,epochs,over", [
    ("mlp", 4, {}),
    ("dialoguernn", 5, {"bidirectional": True, "class_weighting": "inverse_frequency"}),
    ("dialoguegcn", 8, {"bidirectional": True, "lr": 5.0e-3}),
    ("dialoguegcn", 8, {"bidirectional": True, "lr": 5.0e-3, "edge_attention": True})])
def test_each_method_learns_on_the_synthetic_corpus(tmp_path, method, epochs, over):
    res = _run(tmp_path / method, method=method, epochs=epochs, checkpoint=False, **over)
    hist = pd.read_csv(tmp_path / method / "epochs.csv")
    assert len(hist) == epochs and hist.loss.iloc[-1] < 0.7 * hist.loss.iloc[0]
    # the selected model's validation weighted F1, recomputed from its predictions, clearly above the
    # best constant predictor (validation's own majority class) and chance (6 classes)
    valid = pd.read_csv(tmp_path / method / "seed_0" / "best_model" / "valid_predictions.csv")
    wf1 = f1_score(valid.label, valid.pred, average="weighted")
    majority = f1_score(valid.label, np.full(len(valid), valid.label.value_counts().idxmax()), average="weighted")
    assert len(valid) >= 50 and wf1 > majority + 0.3 and wf1 > 0.45
    best = res["per_seed"][0]["best_epoch"]
    assert wf1 == pytest.approx(hist.valid_weighted_f1.iloc[best])
    assert hist.valid_weighted_f1.iloc[best] == hist.valid_weighted_f1.max()       # selected on validation
    assert res["method"] == method and res["causal"] is (method == "mlp")


def test_resume_gives_identical_results(tmp_path):
    over = dict(method="dialoguegcn", bidirectional=True, batch_size=3)
    a = _run(tmp_path / "a", epochs=4, **over)
    _run(tmp_path / "b", epochs=2, **over)                   # interrupted after 2 epochs ...
    b = _run(tmp_path / "b", epochs=4, **over)               # ... resumed to 4 from its checkpoint
    ha = pd.read_csv(tmp_path / "a" / "epochs.csv").drop(columns=list(TIMING))
    hb = pd.read_csv(tmp_path / "b" / "epochs.csv").drop(columns=list(TIMING))
    pd.testing.assert_frame_equal(ha, hb)
    assert a["test_weighted_f1_mean"] == b["test_weighted_f1_mean"]
    pa = pd.read_csv(tmp_path / "a" / "seed_0" / "best_model" / "test_predictions.csv")
    pb = pd.read_csv(tmp_path / "b" / "seed_0" / "best_model" / "test_predictions.csv")
    pd.testing.assert_frame_equal(pa, pb)


def test_cli_writes_the_multi_seed_layout_results_reads_it_and_predict(tmp_path, project_root):
    out = tmp_path / "run"
    flags = _flags({**BASE, "method": "dialoguernn", "epochs": 2, "seeds": 2, "seed": 3, "output_dir": str(out)})
    proc = subprocess.run([sys.executable, "cli.py", "train-baseline", *flags], cwd=project_root,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.yaml", "run.json", "results.json", "epochs.csv"):
        assert (out / name).is_file(), name
    res = read_json(out / "results.json")
    assert res["seeds"] == [3, 4] and res["method"] == "dialoguernn" and res["causal"] is True
    vals = [r["test"]["weighted_f1"] for r in res["per_seed"]]
    assert res["test_weighted_f1_mean"] == pytest.approx(np.mean(vals))
    assert res["test_weighted_f1_std"] == pytest.approx(np.std(vals, ddof=1))
    assert res["throughput"]["epoch_seconds"] > 0 and res["throughput"]["peak_rss_mb"] > 0
    labels = ["hap", "sad", "neu", "ang", "exc", "fru"]
    for seed in (3, 4):
        d = out / f"seed_{seed}"
        assert (d / "result.json").is_file() and (d / "epochs.csv").is_file()
        best = d / "best_model"
        for name in ("model.safetensors", "model_config.json", "config.yaml", "metrics.json", "calibration.json"):
            assert (best / name).is_file(), name
        for split in ("test", "valid"):
            pred = pd.read_csv(best / f"{split}_predictions.csv")
            assert list(pred.columns) == ["dialogue_id", "position", "label", "pred", *[f"p_{n}" for n in labels]]
            assert not pred.duplicated(["dialogue_id", "position"]).any()
        metrics = read_json(best / "metrics.json")
        test = pd.read_csv(best / "test_predictions.csv")
        assert metrics["test"]["weighted_f1"] == pytest.approx(
            f1_score(test.label, test.pred, average="weighted", labels=range(6)))
        assert metrics["epoch"] == read_json(d / "result.json")["best_epoch"]

    from erc.core.results import read_run, render
    row = read_run(out)
    assert row.stage == "train-baseline" and len(row.per_seed) == 2 and row.dataset == "synthetic"
    assert f"{res['test_weighted_f1_mean']:.3f}" in render([row], "weighted_f1", ["weighted_f1"])

    from erc.baselines.predict import run_predict_baseline
    run_predict_baseline(PredictBaselineConfig(model_dir=str(out / "seed_3" / "best_model"),
                                               output=str(tmp_path / "pred.csv"), splits=["test"]))
    pred = pd.read_csv(tmp_path / "pred.csv")
    ref = pd.read_csv(out / "seed_3" / "best_model" / "test_predictions.csv")
    m = pred.merge(ref, on=["dialogue_id", "position"], suffixes=("", "_train"))
    assert len(m) == len(pred) == len(ref)
    np.testing.assert_allclose(m.p_hap, m.p_hap_train, atol=1e-6)
    assert (m.pred == m.pred_train).all() and set(pred.emotion) <= set(labels)


def test_two_process_run_evaluates_every_test_dialogue_once(tmp_path, project_root):
    """Two CPU processes (torchrun): 12 test dialogues in batches of 5 over 2 processes, so Accelerate
    repeats dialogues in the last round; each utterance is still counted once."""
    out = tmp_path / "two"
    cfg = {**BASE, "method": "dialoguegcn", "bidirectional": True, "eval_batch_size": 5, "epochs": 1,
           "output_dir": str(out)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "cli.py", "train-baseline", *_flags(cfg)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_json(out / "results.json")
    assert res["num_processes"] == 2
    pred = pd.read_csv(out / "seed_0" / "best_model" / "test_predictions.csv")
    from erc.data.dialogues import load_splits
    test = load_splits(config_from_flat(BaselineTrainConfig, cfg).data).test
    assert len(test) % 10 != 0                                              # the last round is padded
    assert len(pred) == sum(len(d) for d in test)                          # no repeats, none missing
    assert not pred.duplicated(["dialogue_id", "position"]).any()
    assert res["test_weighted_f1_mean"] == pytest.approx(
        f1_score(pred.label, pred.pred, average="weighted", labels=range(6)))
