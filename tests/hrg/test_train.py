"""train-hrg / predict-hrg: schedule, calibration, selection, exact resume, leak markers, 2-process evaluation."""
from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from erc.core.config import ConfigError, config_from_flat
from erc.core.io import read_json
from erc.hrg.config import LEAK_NOTE, HRGTrainConfig, PredictHRGConfig
from erc.core.calibration import calibration_metrics
from erc.hrg.train import learning_rate

TINY = dict(dataset="synthetic", synthetic_dialogues=12, modalities=["text", "audio", "timing"], window=3,
            gat_heads=2, gat_head_dim=8, fusion_layers=1, scorer_dim=8, max_length=48, batch_size=3,
            eval_batch_size=2, epochs_frozen=1, epochs_full=2, lr_frozen=3.0e-3, lr_full=1.0e-3, num_threads=1,
            progress=False, valid_fraction=0.25)
TIMING = ["train_seconds", "train_utts_per_s", "train_cpu_seconds", "train_utts_per_cpu_s", "valid_seconds",
          "peak_rss_mb"]


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


def _run(tmp_path, name, backbone, **over):
    from erc.hrg.train import run_train_hrg

    return run_train_hrg(config_from_flat(HRGTrainConfig, **{**TINY, "backbone": str(backbone),
                                                              "output_dir": str(tmp_path / name), **over}))


def test_learning_rate_two_phases_with_warmup():
    cfg = HRGTrainConfig(epochs_frozen=2, epochs_full=1, lr_frozen=5.0e-5, lr_full=3.0e-5, warmup_ratio=0.2)
    # 5 steps per epoch: phase 1 = 10 steps, warm-up ceil(2) = 2; phase 2 = 5 steps, warm-up 1
    lrs = [learning_rate(s, 5, cfg) for s in range(15)]
    assert [p for p, _ in lrs] == [1] * 10 + [2] * 5
    assert lrs[0][1] == pytest.approx(2.5e-5) and lrs[1][1] == pytest.approx(5e-5)
    assert lrs[2][1] == pytest.approx(5e-5 * 8 / 8) and lrs[9][1] == pytest.approx(5e-5 * 1 / 8)
    assert lrs[10][1] == pytest.approx(3e-5) and lrs[11][1] == pytest.approx(3e-5 * 4 / 4)
    assert lrs[14][1] == pytest.approx(3e-5 * 1 / 4)


def test_calibration_against_hand_computation():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    labels = np.array([0, 1, 1, -1])                       # the unlabelled row is dropped
    got = calibration_metrics(probs, labels, n_bins=2)      # the one implementation, used by graph and HRG
    # bins (0, .5], (.5, 1]: all three confidences (.9, .6, .7) in bin 1; accuracy 2/3, confidence 2.2/3
    assert got["ece"] == pytest.approx(abs(2 / 3 - 2.2 / 3))
    assert got["mce"] == pytest.approx(abs(2 / 3 - 2.2 / 3))
    assert got["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.7)) / 3)
    assert got["brier"] == pytest.approx((0.02 + 0.72 + 0.18) / 3)


def test_selection_resume_exact_and_predict(tmp_path, tiny_t5_dir):
    a = _run(tmp_path, "a", tiny_t5_dir)
    ha = pd.read_csv(tmp_path / "a" / "epochs.csv")
    assert ha.phase.tolist() == [1, 2, 2]
    best = int(np.nanargmax(ha.valid_weighted_f1.to_numpy()))
    assert a["per_seed"][0]["best_epoch"] == best
    pred = pd.read_csv(tmp_path / "a" / "seed_0" / "best_model" / "test_predictions.csv")
    from sklearn.metrics import f1_score
    assert f1_score(pred.label, pred.pred, average="weighted", labels=range(6), zero_division=0) == pytest.approx(
        a["test_weighted_f1_mean"])
    assert (pred.history_labels == "predicted").all() and not a["label_leak"]
    # interrupted after 2 epochs (one per phase), resumed to 3: the same history as the uninterrupted run
    _run(tmp_path, "c", tiny_t5_dir, stop_after_epochs=2)
    assert len(pd.read_csv(tmp_path / "c" / "epochs.csv")) == 2
    c = _run(tmp_path, "c", tiny_t5_dir)
    hc = pd.read_csv(tmp_path / "c" / "epochs.csv")
    pd.testing.assert_frame_equal(ha.drop(columns=TIMING), hc.drop(columns=TIMING))
    assert c["test_weighted_f1_mean"] == a["test_weighted_f1_mean"]
    # a changed model setting is refused on resume (the harness's run identity), before anything is written
    with pytest.raises(ConfigError, match="window"):
        _run(tmp_path, "c", tiny_t5_dir, window=2, epochs_full=3)
    # predict-hrg on the saved model reproduces the test predictions written in training
    from erc.hrg.predict import run_predict_hrg
    out = tmp_path / "pred.csv"
    run_predict_hrg(PredictHRGConfig(model_dir=str(tmp_path / "a" / "seed_0" / "best_model"), output=str(out)))
    again = pd.read_csv(out)
    m = again.merge(pred, on=["dialogue_id", "position"], suffixes=("", "_train"))
    assert len(m) == len(pred) == len(again)
    np.testing.assert_allclose(m.p_hap, m.p_hap_train, atol=1e-5)
    assert (m.emotion == m.emotion_train).all()


def test_gold_history_ablation_says_it_leaks_everywhere(tmp_path, tiny_bert_dir):
    res = _run(tmp_path, "g", tiny_bert_dir, head="classify", history_labels="gold", epochs_frozen=0,
               epochs_full=1, modalities=["text"], checkpoint=False)
    assert res["label_leak"] is True and res["warning"] == LEAK_NOTE
    assert read_json(tmp_path / "g" / "results.json")["label_leak"] is True
    assert (tmp_path / "g" / "LABEL_LEAK_WARNING.txt").read_text().strip() == LEAK_NOTE
    best = tmp_path / "g" / "seed_0" / "best_model"
    assert (best / "LABEL_LEAK_WARNING.txt").is_file()
    for name in ("test_predictions.csv", "valid_predictions.csv"):
        assert pd.read_csv(best / name).history_labels.str.contains("LEAKS").all()
    assert set(pd.read_csv(tmp_path / "g" / "epochs.csv").history_labels) == {"gold"}
    from erc.hrg.predict import run_predict_hrg
    out = tmp_path / "gold.csv"
    run_predict_hrg(PredictHRGConfig(model_dir=str(best), output=str(out), history_labels="gold"))
    assert pd.read_csv(out).history_labels.str.contains("LEAKS").all()
    metrics = read_json(str(out) + ".metrics.json")
    assert metrics["label_leak"] is True and metrics["warning"] == LEAK_NOTE
    gold_rows = pd.read_csv(out)
    from sklearn.metrics import f1_score
    assert metrics["metrics"]["test"]["weighted_f1"] == pytest.approx(f1_score(
        gold_rows.label, gold_rows.pred, average="weighted", labels=range(6), zero_division=0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_evaluation_counts_each_utterance_once(tmp_path, project_root, tiny_t5_dir):
    """Two CPU processes (torchrun + Accelerate's MULTI_CPU/gloo). 3 test dialogues in batches of 2 over 2
    processes: the last round is padded with a repeated dialogue; each utterance is still counted once and
    the metrics equal a 1-process evaluation of the saved model."""
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "cli.py", "train-hrg",
           *_flags({**TINY, "backbone": str(tiny_t5_dir), "epochs_full": 1, "output_dir": str(out)})]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(cmd, cwd=project_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = read_json(out / "results.json")
    assert res["num_processes"] == 2
    best = out / "seed_0" / "best_model"
    pred = pd.read_csv(best / "test_predictions.csv")

    from erc.data.dialogues import load_splits
    test = load_splits(config_from_flat(HRGTrainConfig, **{**TINY, "backbone": str(tiny_t5_dir)}).data_config()).test
    assert len(test) % 4 != 0                                            # padding really happens
    assert len(pred) == sum(len(d) for d in test)
    assert not pred.duplicated(["dialogue_id", "position"]).any()
    assert sorted(pred.dialogue_id.unique()) == sorted(d.dialogue_id for d in test)

    from erc.core.config import load_yaml
    from erc.hrg.model import load_hrg_model
    from erc.hrg.predict import load_prediction_dialogues, predict_dialogues
    model, meta = load_hrg_model(best)
    ((_, dlgs),) = load_prediction_dialogues(PredictHRGConfig(model_dir=str(best)), meta,
                                             load_yaml(best / "config.yaml"))
    one = predict_dialogues(model, dlgs, batch_size=5)
    labels = one.labels
    keep = labels >= 0
    from sklearn.metrics import accuracy_score, f1_score
    one_pred = one.emotion_scores.argmax(-1)
    assert accuracy_score(labels[keep], one_pred[keep]) == pytest.approx(res["test_accuracy_mean"])
    wf1 = f1_score(labels[keep], one_pred[keep], average="weighted", labels=range(6), zero_division=0)
    assert wf1 == pytest.approx(res["test_weighted_f1_mean"])
    np.testing.assert_allclose(one.emotion_probs[:, 0], pred.p_hap.to_numpy(), atol=1e-5)
