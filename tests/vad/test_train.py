"""The fine-tuning loop: sampler, end-to-end CLI runs, exact resume, multi-process evaluation."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from erc.vad.train import LOG_COLUMNS, LengthGroupedSampler
from tests.conftest import free_port, pickle_files, run_processes

ROOT = Path(__file__).resolve().parents[2]
# 20 synthetic dialogues: 12 train (sessions 1-3), 4 validation, 4 test; eval batches of 8 so the
# validation split (an odd count) ends in a partial batch that multi-process runs must not double count.
COMMON = ["--path", "synthetic", "--synthetic-dialogues", "20", "--epochs", "2", "--batch-size", "16",
          "--eval-batch-size", "8", "--lr", "3.0e-3", "--num-threads", "1", "--no-plots"]


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch(args, num_processes=1):
    # `--cpu --num_processes 2` would start ONE process (accelerate issue #2741): several CPU
    # processes need the torchrun path, `--multi_gpu`, which vad.train runs on gloo without CUDA.
    mode = ["--cpu"] if num_processes == 1 else ["--multi_gpu", "--main_process_port", str(free_port())]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "cli.py"), "finetune", *args]
    proc = run_processes(cmd, cwd=ROOT, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def read_log(out: Path) -> list[dict]:
    with open(out / "train_log.csv") as fh:
        return list(csv.DictReader(fh))


def metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _without_time(rows):
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]


def test_length_grouped_sampler():
    lengths = np.random.default_rng(0).integers(3, 60, size=203)
    s = LengthGroupedSampler(lengths, global_batch_size=16, seed=1)
    a = s.order()
    assert sorted(a.tolist()) == list(range(203))  # a permutation: every example once per epoch
    assert np.array_equal(a, LengthGroupedSampler(lengths, 16, seed=1).order())  # seeded
    s.set_epoch(1)
    assert not np.array_equal(a, s.order())  # a new order each epoch
    spread = lambda order: np.mean([np.ptp(lengths[order[i:i + 16]]) for i in range(0, 192, 16)])
    plain = LengthGroupedSampler(lengths, 16, seed=1, group_by_length=False).order()
    assert spread(a) < 0.25 * spread(plain)  # batches of similar length: little padding
    assert len(set(a[-11:].tolist()) & set(a[:192].tolist())) == 0 and 203 % 16 == 11  # partial batch last


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_encoder_dir):
    out = tmp_path_factory.mktemp("vad") / "full"
    launch([*COMMON, "--model", str(tiny_encoder_dir), "--output-dir", str(out)])
    return out


def test_end_to_end_files(full_run):
    out = full_run
    for name in ("config.yaml", "train_log.csv", "metrics.json", "test_predictions.csv",
                 "best_model/config.json", "best_model/model.safetensors", "best_model/README.md",
                 "checkpoints/epoch_1/model.safetensors", "checkpoints/epoch_2/optimizer.safetensors",
                 "checkpoints/epoch_2/optimizer.json", "checkpoints/epoch_2/scheduler.json",
                 "checkpoints/epoch_2/random_states_0.json", "checkpoints/epoch_2/random_states_0.safetensors"):
        assert (out / name).is_file(), name
    assert pickle_files(out) == []     # no optimizer.bin / random_states_0.pkl: nothing we write is a pickle
    with open(out / "train_log.csv") as fh:
        header = fh.readline().strip().split(",")
    assert header[:6] == ["epoch", "train_loss", "val_loss", "val_mse", "val_rmse", "val_mae"]
    assert header[6:12] == [f"val_{d}_{m}" for m in ("pearson", "ccc") for d in ("valence", "arousal", "dominance")]
    rows = read_log(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    m = metrics(out)
    for key in ("mse", "rmse", "mae", "pearson", "ccc", "valence_ccc", "arousal_pearson", "dominance_rmse"):
        assert np.isfinite(m["test"][key]), key
    assert m["best_epoch"] in (1, 2) and m["metric_for_best"] == "val_ccc"
    best_row = rows[m["best_epoch"] - 1]
    assert float(best_row["val_ccc"]) == max(float(r["val_ccc"]) for r in rows)  # chosen on validation
    assert m["validation"]["ccc"] == pytest.approx(float(best_row["val_ccc"]), abs=1e-9)
    n_val = int(rows[0]["n_val"])
    assert m["n_validation"] == n_val and m["n_test"] == len(open(out / "test_predictions.csv").readlines()) - 1
    assert n_val % 8 != 0  # the partial-batch case is exercised
    # predict through the CLI on a text file: original scale, keyed by id
    (out / "texts.txt").write_text("i feel happy about the trip\nthe manager was furious\n")
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "predict", "--model-dir", str(out / "best_model"),
                           "--input", str(out / "texts.txt"), "--output", str(out / "pred.csv")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pred = list(csv.DictReader(open(out / "pred.csv")))
    assert [r["utterance_id"] for r in pred] == ["line000001", "line000002"]
    assert all(1.0 < float(r["valence"]) < 5.0 for r in pred)


def test_resume_from_epoch_checkpoint_is_exact(full_run, tmp_path, tiny_encoder_dir):
    out = tmp_path / "resumed"
    shutil.copytree(full_run / "checkpoints", out / "checkpoints")
    launch([*COMMON, "--model", str(tiny_encoder_dir), "--output-dir", str(out),
            "--resume", str(out / "checkpoints" / "epoch_1")])
    assert _without_time(read_log(out)) == _without_time(read_log(full_run))
    assert metrics(out)["test"] == metrics(full_run)["test"]


def test_resume_mid_epoch_is_exact(full_run, tmp_path, tiny_encoder_dir):
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    args = dict(path="synthetic", synthetic_dialogues=20, epochs=2, batch_size=16, eval_batch_size=8,
                lr=3.0e-3, num_threads=1, plots=False, model=str(tiny_encoder_dir),
                output_dir=str(tmp_path / "mid"), checkpointing_steps=3)
    first = run_finetune(config_from_flat(FinetuneConfig, **args, stop_after_steps=5))  # "interrupted" in epoch 1
    assert first["interrupted"] and (tmp_path / "mid" / "checkpoints" / "step_3").is_dir()
    run_finetune(config_from_flat(FinetuneConfig, **args, resume="latest"))
    assert _without_time(read_log(tmp_path / "mid")) == _without_time(read_log(full_run))
    assert metrics(tmp_path / "mid")["test"] == metrics(full_run)["test"]


def test_two_processes_count_each_example_once(tmp_path, tiny_encoder_dir):
    """2 processes x batch 8 see the same global batches as 1 x 16; without dropout they agree."""
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    enc = tmp_path / "enc"
    shutil.copytree(tiny_encoder_dir, enc)
    cfg = json.loads((enc / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (enc / "config.json").write_text(json.dumps(cfg))
    common = dict(path="synthetic", synthetic_dialogues=20, epochs=2, eval_batch_size=8, lr=3.0e-3,
                  num_threads=1, plots=False, model=str(enc), dropout=0.0, drop_last=True)
    run_finetune(config_from_flat(FinetuneConfig, **common, batch_size=16, output_dir=str(tmp_path / "one")))
    two = tmp_path / "two"
    launch(["--path", "synthetic", "--synthetic-dialogues", "20", "--epochs", "2", "--eval-batch-size", "8",
            "--lr", "3.0e-3", "--num-threads", "1", "--no-plots", "--model", str(enc),
            "--dropout", "0", "--drop-last", "--batch-size", "8", "--output-dir", str(two)], num_processes=2)
    one_rows, two_rows = read_log(tmp_path / "one"), read_log(two)
    m1, m2 = metrics(tmp_path / "one"), metrics(two)
    assert m2["num_processes"] == 2
    assert [r["n_val"] for r in two_rows] == [r["n_val"] for r in one_rows]  # each example once
    assert m2["n_test"] == m1["n_test"]
    for r1, r2 in zip(one_rows, two_rows):
        for col in LOG_COLUMNS[1:14]:
            assert float(r2[col]) == pytest.approx(float(r1[col]), rel=1e-3, abs=1e-4), col
    for key in ("mse", "ccc", "pearson", "valence_ccc", "dominance_pearson"):
        assert m2["test"][key] == pytest.approx(m1["test"][key], rel=1e-3, abs=1e-4)
    # a checkpoint written by 2 processes resumes in 1
    resumed = tmp_path / "resumed"
    shutil.copytree(two / "checkpoints", resumed / "checkpoints")
    run_finetune(config_from_flat(FinetuneConfig, **common, batch_size=16, output_dir=str(resumed),
                                  resume=str(resumed / "checkpoints" / "epoch_1")))
    for key in ("mse", "ccc"):
        assert metrics(resumed)["test"][key] == pytest.approx(m1["test"][key], rel=1e-3, abs=1e-4)


def test_early_stopping_and_best_by_val_loss(tmp_path, tiny_encoder_dir, monkeypatch):
    """Scripted validation losses 0.9, 0.7, 0.8, 0.85 (lower is better), patience 2: the best epoch is 2,
    training stops after epoch 4 of 6, and best_model/ holds epoch 2's weights, not the last epoch's."""
    from safetensors.torch import load_file

    import erc.vad.train as vad_train
    from erc.core.config import config_from_flat
    from erc.vad.config import FinetuneConfig

    scripted = [0.9, 0.7, 0.8, 0.85]
    real_evaluate, calls = vad_train.evaluate, []

    def scripted_evaluate(model, loader, accelerator):
        out = real_evaluate(model, loader, accelerator)
        if len(calls) < len(scripted):           # the epoch-end validations; test/val after training are real
            out["metrics"]["loss"] = scripted[len(calls)]
        calls.append(out["metrics"]["loss"])
        return out

    monkeypatch.setattr(vad_train, "evaluate", scripted_evaluate)
    out = tmp_path / "es"
    r = vad_train.run_finetune(config_from_flat(
        FinetuneConfig, path="synthetic", synthetic_dialogues=10, epochs=6, lr=3.0e-3, num_threads=1, plots=False,
        model=str(tiny_encoder_dir), selection_metric="loss", early_stopping_patience=2, keep_checkpoints=0,
        output_dir=str(out)))
    assert r["stopped_early"] and r["epochs_run"] == 4 and r["best_epoch"] == 2
    assert r["best_value"] == 0.7 and r["metric_for_best"] == "val_loss"
    assert [float(row["val_loss"]) for row in read_log(out)] == scripted
    best = load_file(out / "best_model" / "model.safetensors")
    at_epoch = {e: load_file(out / "checkpoints" / f"epoch_{e}" / "model.safetensors") for e in (2, 4)}
    shared = sorted(set(best) & set(at_epoch[2]))
    assert len(shared) == len(best)
    assert all(torch.equal(best[k], at_epoch[2][k]) for k in shared)
    assert not all(torch.equal(best[k], at_epoch[4][k]) for k in shared)   # the weights did move after epoch 2


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard event files in ``folder``: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logs_equal_the_csv_and_a_second_run_is_refused(tmp_path, tiny_encoder_dir):
    """report_to tensorboard logs every epoch's train_log.csv row; another lr or other data into the same
    folder stops before writing, naming what changed; --overwrite clears the folder and runs."""
    from erc.core.config import config_from_flat
    from erc.core.runs import RunMismatchError
    from erc.vad.config import FinetuneConfig
    from erc.vad.train import run_finetune

    out = tmp_path / "tb"
    args = dict(path="synthetic", synthetic_dialogues=10, epochs=2, lr=3.0e-3, num_threads=1, plots=False,
                model=str(tiny_encoder_dir), output_dir=str(out))
    run_finetune(config_from_flat(FinetuneConfig, **args, report_to="tensorboard"))
    scalars = _tensorboard_scalars(out / "logs" / "finetune")
    rows = read_log(out)
    assert set(scalars) == set(LOG_COLUMNS) - {"epoch"}
    for tag, points in scalars.items():
        assert [step for step, _ in points] == [1, 2]
        assert [v for _, v in points] == pytest.approx([float(r[tag]) for r in rows], rel=1e-6, abs=1e-7), tag

    before = {str(p): p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(RunMismatchError) as err:
        run_finetune(config_from_flat(FinetuneConfig, **{**args, "lr": 1.0e-3, "synthetic_dialogues": 12}))
    msg = str(err.value)
    assert "lr 0.003 -> 0.001" in msg and "data.synthetic_dialogues 10 -> 12" in msg
    assert "--overwrite" in msg and "--output-dir" in msg
    assert {str(p): p.stat().st_mtime_ns for p in out.rglob("*")} == before      # nothing written
    res = run_finetune(config_from_flat(FinetuneConfig, **{**args, "lr": 1.0e-3, "overwrite": True}))
    assert res["epochs_run"] == 2 and not (out / "logs").exists()                 # the old run is gone
    assert json.loads((out / "run.json").read_text())["config"]["lr"] == 1.0e-3   # the folder is run B's


def test_fused_adamw_takes_the_adamw_step():
    """finetune's optimizer: the fused kernel where torch has one for CPU (2.4+), the same update as AdamW's loop."""
    from packaging.version import Version

    from erc.core.harness import fused_adamw

    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(5, 3, generator=gen), torch.randn(3, generator=gen)]
    grads = [[torch.randn(x.shape, generator=gen) for x in start] for _ in range(3)]
    a = [torch.nn.Parameter(x.clone()) for x in start]
    b = [torch.nn.Parameter(x.clone()) for x in start]
    groups = lambda ps: [{"params": ps[:1], "weight_decay": 0.01}, {"params": ps[1:], "weight_decay": 0.0}]  # noqa: E731
    fused, plain = fused_adamw(groups(a), lr=0.1), torch.optim.AdamW(groups(b), lr=0.1)
    if Version(torch.__version__.split("+")[0]) >= Version("2.4"):
        assert fused.param_groups[0]["fused"] is True
    for step, g in enumerate(grads):
        for ps in (a, b):
            for p, gi in zip(ps, g):
                p.grad = gi.clone()
        fused.step()
        plain.step()
        if step == 0:   # first step by hand: decay, then lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps)
            want = start[0] * (1 - 0.1 * 0.01) - 0.1 * g[0] / (g[0].abs() + 1e-8)
            torch.testing.assert_close(a[0].detach(), want)
        for x, y in zip(a, b):
            torch.testing.assert_close(x.detach(), y.detach())
