"""The training harness on a toy run: run identity, named checkpoints, resume, selection, seed summaries."""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import pickle_files
from erc.core.config import ConfigError
from erc.core.harness import MANIFEST, start_run
from erc.core.runs import (
    IDENTITY_FILE,
    IdentityRule,
    RunMismatchError,
    check_run_dir,
    mean_std,
    select_best,
    summarize_seeds,
)


@dataclass
class ToyConfig:
    output_dir: str = ""
    data: str = ""                       # an input file: part of the run's identity by fingerprint
    lr: float = 0.1
    seed: int = 3
    num_threads: int = 1
    overwrite: bool = False
    tags: list[str] = field(default_factory=lambda: ["a"])


RULE = IdentityRule(inputs=("data",))
X = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 2.0], [3.0, 1.0, -1.0], [0.5, 0.5, 0.5]])
Y = torch.tensor([[1.0], [-1.0], [2.0], [0.0]])


def toy_train(cfg: ToyConfig, epochs: int, allow_config_change: bool = False, resume: str = "auto") -> dict:
    """A tiny regression whose every epoch draws noise from the global RNG (so RNG state must resume too)."""
    run = start_run(cfg, "toy", RULE)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    model, opt = run.accelerator.prepare(model, opt)
    ckpts = run.checkpoints(Path(cfg.output_dir) / "checkpoints", keep=2)
    got = ckpts.start(resume, allow_config_change=allow_config_change)
    state = got[0] if got else {"epoch": 0, "losses": []}
    for epoch in range(state["epoch"], epochs):
        loss = ((model(X + 0.1 * torch.randn_like(X)) - Y) ** 2).mean()
        opt.zero_grad()
        run.accelerator.backward(loss)
        opt.step()
        state = {"epoch": epoch + 1, "losses": state["losses"] + [float(loss.detach())]}
        ckpts.save(f"epoch_{epoch + 1}", state, progress=epoch + 1)
    run.finish()
    return {**state, "resumed_from": str(got[1]) if got else None,
            "weight": run.accelerator.unwrap_model(model).weight.detach().clone()}


def _cfg(tmp_path: Path, name: str, **over) -> ToyConfig:
    data = tmp_path / "data.txt"
    if not data.exists():
        data.write_text("1 2 3\n")
    return ToyConfig(output_dir=str(tmp_path / name), data=str(data), **over)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return toy_train(_cfg(tmp_path_factory.mktemp("toy"), "full"), epochs=3)


# ----------------------------------------------------------------------------- selection and seeds
def test_select_best_higher_and_lower_by_hand():
    scores = [0.50, 0.62, 0.71, 0.69, 0.71, float("nan"), 0.70]
    assert select_best(scores) == 2                        # first of the two 0.71
    assert select_best(scores, higher_is_better=False) == 0
    assert select_best([None, float("nan"), 0.3, 0.1], higher_is_better=False) == 3
    assert select_best([float("nan"), 0.1]) == 1
    with pytest.raises(ValueError, match="no finite"):
        select_best([float("nan"), None])


def test_mean_std_and_seed_summary_by_hand():
    # values 0.5, 0.7, 0.9: mean 0.7; deviations -0.2, 0, 0.2 -> sum of squares 0.08 / (3 - 1) -> std 0.2
    mean, std = mean_std([0.5, 0.7, 0.9])
    assert mean == pytest.approx(0.7) and std == pytest.approx(0.2)
    assert mean_std([0.25]) == (0.25, 0.0)                  # one seed: no spread
    rows = [{"acc": 0.5, "f1": None}, {"acc": 0.7, "f1": 0.4}, {"acc": 0.9}]
    s = summarize_seeds(rows, ["acc", "f1", "absent"])
    assert s["acc"] == {"mean": pytest.approx(0.7), "std": pytest.approx(0.2), "values": [0.5, 0.7, 0.9]}
    assert s["f1"] == {"mean": 0.4, "std": 0.0, "values": [0.4]}  # seeds without a value are left out
    assert "absent" not in s


# ----------------------------------------------------------------------------- run identity
def test_changed_config_is_refused_before_writing_and_unchanged_continues(tmp_path, uninterrupted, caplog):
    cfg = _cfg(tmp_path, "run")
    first = toy_train(cfg, epochs=2)
    folder = tmp_path / "run"
    before = _snapshot(folder)
    with pytest.raises(RunMismatchError) as err:
        toy_train(_cfg(tmp_path, "run", lr=0.2, tags=["a", "b"]), epochs=3)
    msg = str(err.value)
    assert str(folder) in msg and "lr 0.1 -> 0.2" in msg and "tags ['a'] -> ['a', 'b']" in msg
    assert "--overwrite" in msg and "--output-dir" in msg and len(msg.splitlines()) == 2
    assert _snapshot(folder) == before                   # nothing written, nothing deleted
    # the same config (threads are not identity) continues the run: epoch 3 only, equal to an uninterrupted run
    with caplog.at_level(logging.INFO):
        cont = toy_train(_cfg(tmp_path, "run", num_threads=2), epochs=3)
    assert cont["resumed_from"].endswith("epoch_2") and first["losses"] == cont["losses"][:2]
    assert cont["losses"] == uninterrupted["losses"]
    assert torch.equal(cont["weight"], uninterrupted["weight"])
    assert "continuing the run" in caplog.text
    torch.set_num_threads(1)


def test_changed_input_file_is_named_and_overwrite_clears(tmp_path, uninterrupted):
    toy_train(_cfg(tmp_path, "run"), epochs=1)
    data = tmp_path / "data.txt"
    data.write_text("1 2 3 4 5\n")                         # same path, other content
    with pytest.raises(RunMismatchError, match=r"data .*data\.txt changed \(6 bytes then, 10 bytes now\)"):
        toy_train(_cfg(tmp_path, "run"), epochs=3)
    # same size, another modification time (a copy or a checkout): the message says what differs
    data.write_text("1 2 3\n")
    os.utime(data, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
    with pytest.raises(RunMismatchError, match=r"data\.txt changed \(6 bytes modified .* UTC then, "
                                               r"6 bytes modified 2023-11-14 22:13:20 UTC now\)"):
        toy_train(_cfg(tmp_path, "run"), epochs=3)
    (tmp_path / "run" / "stale.txt").write_text("from the old run")
    res = toy_train(_cfg(tmp_path, "run", overwrite=True), epochs=3)
    assert res["resumed_from"] is None and res["losses"] == uninterrupted["losses"]
    assert not (tmp_path / "run" / "stale.txt").exists()    # --overwrite cleared the folder
    rec = json.loads((tmp_path / "run" / IDENTITY_FILE).read_text())
    assert rec["inputs"]["data"]["fingerprint"]["size"] == 6        # the file as it is now


def test_foreign_folder_is_never_cleared(tmp_path):
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("precious")
    ident = RULE.identity("toy", _cfg(tmp_path, "mine"))
    with pytest.raises(RunMismatchError, match="no run.json"):
        check_run_dir(own, ident, overwrite=False)
    with pytest.raises(RunMismatchError, match="will not delete"):
        check_run_dir(own, ident, overwrite=True)
    assert (own / "notes.txt").read_text() == "precious"
    assert check_run_dir(tmp_path / "absent", ident, overwrite=False) == "new"


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_folders_hold_config_state_and_keep_last_k(tmp_path):
    toy_train(_cfg(tmp_path, "k"), epochs=3)
    ckpt = tmp_path / "k" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_2", "epoch_3"]     # keep=2
    e3 = ckpt / "epoch_3"
    assert {p.name for p in e3.iterdir()} == {
        "config.yaml", "trainer_state.json", MANIFEST, "model.safetensors", "optimizer.safetensors", "optimizer.json",
        "random_states_0.json", "random_states_0.safetensors"}
    assert pickle_files(ckpt) == []          # what save_state would pickle is safetensors + JSON here
    assert json.loads((e3 / "trainer_state.json").read_text())["epoch"] == 3
    manifest = json.loads((e3 / MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"] == (e3 / "model.safetensors").stat().st_size
    assert manifest["identity"]["lr"] == 0.1 and "output_dir" not in manifest["identity"]


def test_kill_between_the_two_renames_resumes_from_the_temporary_name(tmp_path, uninterrupted, caplog):
    cfg = _cfg(tmp_path, "kill")
    toy_train(cfg, epochs=2)
    ckpt = tmp_path / "kill" / "checkpoints"
    # the state a kill leaves after "old name moved away" and before "temporary name moved in"
    os.replace(ckpt / "epoch_2", ckpt / ".epoch_2.tmp")
    with caplog.at_level(logging.INFO):
        res = toy_train(cfg, epochs=3)
    assert "complete under its temporary name .epoch_2.tmp" in caplog.text
    assert res["resumed_from"] == str(ckpt / "epoch_2")
    assert res["losses"] == uninterrupted["losses"] and torch.equal(res["weight"], uninterrupted["weight"])


def test_truncated_checkpoint_is_named_and_the_previous_one_used(tmp_path, uninterrupted, caplog):
    cfg = _cfg(tmp_path, "trunc")
    toy_train(cfg, epochs=2)
    bad = tmp_path / "trunc" / "checkpoints" / "epoch_2" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:20])
    with caplog.at_level(logging.INFO):
        res = toy_train(cfg, epochs=3)
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(bad) in w and "truncated" in w for w in warning), warning
    assert res["resumed_from"].endswith("epoch_1")
    assert res["losses"] == uninterrupted["losses"] and torch.equal(res["weight"], uninterrupted["weight"])


def test_resume_setting_never_latest_and_a_folder(tmp_path, uninterrupted, caplog):
    cfg = _cfg(tmp_path, "r")
    with pytest.raises(ConfigError, match=r"field 'resume': latest: no complete checkpoint under .*r/checkpoints"):
        toy_train(cfg, epochs=3, resume="latest")             # nothing to resume: an error, not a fresh start
    toy_train(cfg, epochs=2)
    ckpt = tmp_path / "r" / "checkpoints"
    res = toy_train(cfg, epochs=3, resume=str(ckpt / "epoch_1"))   # an older checkpoint, by folder
    assert res["resumed_from"] == str(ckpt / "epoch_1")
    assert res["losses"] == uninterrupted["losses"] and torch.equal(res["weight"], uninterrupted["weight"])
    with caplog.at_level(logging.INFO):
        fresh = toy_train(cfg, epochs=1, resume="never")      # earlier checkpoints go, training restarts
    assert "earlier checkpoints under" in caplog.text and fresh["resumed_from"] is None
    assert sorted(p.name for p in ckpt.iterdir()) == ["epoch_1"]
    assert fresh["losses"] == uninterrupted["losses"][:1]


def test_resume_refuses_a_checkpoint_of_another_config_unless_told(tmp_path, uninterrupted):
    import shutil

    toy_train(_cfg(tmp_path, "a"), epochs=2)
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints")   # adopt copied checkpoints
    with pytest.raises(RunMismatchError, match=r"epoch_2 was written by another config \(changed: lr 0.1 -> 0.5\)"):
        toy_train(_cfg(tmp_path, "b", lr=0.5), epochs=3)
    shutil.copytree(tmp_path / "a" / "checkpoints", tmp_path / "d" / "checkpoints")
    res = toy_train(_cfg(tmp_path, "d", lr=0.5), epochs=3, allow_config_change=True)
    assert res["resumed_from"].endswith("epoch_2") and res["losses"] == uninterrupted["losses"]
    # load_state restores the optimizer with ITS learning rate: allowing a changed config loads the old state
    assert torch.equal(res["weight"], uninterrupted["weight"])
    same = toy_train(_cfg(tmp_path, "a"), epochs=3)                           # unchanged: accepted
    assert same["losses"] == uninterrupted["losses"]
    assert np.isfinite(same["losses"]).all()


_MMAPPED = """
import ctypes
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def mmapped(n):
    ptr = libc.malloc(n)
    try:
        return bool(ctypes.c_size_t.from_address(ptr - ctypes.sizeof(ctypes.c_size_t)).value & 2)
    finally:
        libc.free(ptr)
"""


def _mmapped_in_fresh_interpreter(setup: str, probe: str) -> list[str]:
    """Define ``libc`` and ``mmapped``, run ``setup``, then print ``probe`` (calls of ``mmapped(n)``: is a malloc of n bytes its own mapping,
    glibc's IS_MMAPPED bit in the chunk header) in a fresh interpreter; its printed words. Fresh: in a process
    that already freed large blocks (this test session), malloc serves a request from a free heap chunk
    that fits before it considers a mapping."""
    import subprocess

    script = _MMAPPED + setup + f"print({probe})\n"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_steady_heap_maps_blocks_from_the_fixed_threshold_up():
    """After steady_heap a block of >= 1 MiB is its own mapping, a 512 KiB one comes from the heap: the
    threshold no longer follows the frees."""
    setup = """
from erc.core.harness import STEADY_MMAP_THRESHOLD, steady_heap
assert steady_heap() is True and steady_heap() is True        # idempotent
libc.free(libc.malloc(8 << 20))   # glibc's default would now raise its threshold to 8 MiB
"""
    probe = "mmapped(STEADY_MMAP_THRESHOLD + 4096), mmapped(4 << 20), mmapped(512 << 10)"
    assert _mmapped_in_fresh_interpreter(setup, probe) == ["True", "True", "False"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_fast_steady_heap_serves_step_sized_blocks_from_the_heap():
    """After fast_steady_heap a 4 MiB block (a training step's tensor) comes from the heap, not a mapping of
    its own; one above the 64 MiB threshold is mapped."""
    setup = """
from erc.core.harness import FAST_HEAP_THRESHOLD, fast_steady_heap
assert fast_steady_heap() is True and fast_steady_heap() is True
"""
    assert _mmapped_in_fresh_interpreter(setup, "mmapped(4 << 20), mmapped(FAST_HEAP_THRESHOLD + 4096)") == \
        ["False", "True"]


# ----------------------------------------------------------------------------- publish_best
class _Acc:
    def __init__(self, main: bool):
        self.is_main_process = main


def _write_files(names: list[str]):
    calls = []

    def write(tmp, metrics):
        calls.append(dict(metrics))
        for name in names:
            (tmp / name).write_text(name)
    return write, calls


def test_publish_best_replaces_the_folder_and_returns_the_metrics(tmp_path):
    from erc.core.harness import publish_best

    best = tmp_path / "best_model"
    best.mkdir()
    (best / "old.txt").write_text("old epoch")
    write, calls = _write_files(["model.txt"])
    tm = publish_best(tmp_path, best, _Acc(True), {"weighted_f1": 0.5}, write)
    assert tm == {"weighted_f1": 0.5} and calls == [{"weighted_f1": 0.5}]
    assert sorted(p.name for p in best.iterdir()) == ["model.txt"]        # the old epoch's file is gone
    assert not (tmp_path / ".best_model.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model"]   # no sidecar left behind


def test_publish_best_adds_validation_fitted_calibration(tmp_path):
    from erc.core.harness import publish_best

    # logits twice as confident as the labels warrant on both splits: the temperature fitted on validation
    # is > 1, and the test figures of that fit join the metrics, the calibration file joins the folder
    rng = np.random.default_rng(0)
    def split(n):
        labels = rng.integers(0, 3, n)
        logits = rng.normal(size=(n, 3))
        logits[np.arange(n), labels] += 1.0
        return 4.0 * logits, labels
    (vl, vy), (tl, ty) = split(400), split(400)
    write, _ = _write_files([])
    tm = publish_best(tmp_path, tmp_path / "best", _Acc(True), {"accuracy": 0.7}, write,
                      calibration=(vl, vy, tl, ty))
    assert tm["accuracy"] == 0.7 and tm["temperature"] > 1.5
    assert {"ece", "nll", "ts_ece", "ts_nll"} <= set(tm) and tm["ts_nll"] < tm["nll"]
    assert (tmp_path / "best" / "calibration.json").is_file()


def test_publish_best_writes_nothing_on_other_processes(tmp_path):
    from erc.core.harness import publish_best

    write, calls = _write_files(["model.txt"])
    tm = publish_best(tmp_path, tmp_path / "best", _Acc(False), {"weighted_f1": 0.5}, write)
    assert tm == {"weighted_f1": 0.5} and calls == [] and list(tmp_path.iterdir()) == []
