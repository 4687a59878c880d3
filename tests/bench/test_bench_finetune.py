"""The fine-tuning bench runs ``finetune``'s real loop and its floor on the tiny encoder and reports every figure.

The bench is not timed here; this catches it drifting from the training code (build_parts,
train_epoch, TrainerState or the loader changed) before someone needs its figures.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"loop_utt_per_s", "floor_utt_per_s", "ratio", "cpu_ratio", "peak_rss_mib", "threads", "bf16", "compile",
        "loop_s", "floor_s", "loader_s_per_step", "utterances", "mean_padded_len", "n_params"}


def _bench(*extra: str) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_finetune.py"), "--model", "builtin:tiny", "--path",
           "synthetic", "--utterances", "20", "--batch-size", "8", "--steps", "4", "--repeats", "2",
           "--warmup-steps", "1", "--num-threads", "1", "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_reports_loop_floor_and_ratio():
    r = _bench("--components", "2")
    assert KEYS <= r.keys()
    # 20 utterances in batches of 8 make epochs of 8 + 8 + 4: four steps are one epoch and one batch of
    # the next, 8 + 8 + 4 + 8 = 28 utterances per measurement
    assert r["subset_utterances"] == 20 and r["utterances"] == 28
    assert r["threads"] == 1 and r["bf16"] is False and r["compile"] is False
    assert len(r["loop_s"]) == len(r["floor_s"]) == len(r["ratios"]) == 2
    assert r["ratios"] == [f / lp for lp, f in zip(r["loop_s"], r["floor_s"])]
    assert r["ratio"] == statistics.median(r["ratios"])
    assert r["loop_utt_per_s"] == 28 / statistics.median(r["loop_s"])
    assert r["floor_utt_per_s"] == 28 / statistics.median(r["floor_s"])
    assert r["peak_rss_mib"] >= r["rss_after_setup_mib"] > 0
    assert 0 < r["n_params"] < 10**6           # the tiny encoder + head
    assert set(r["components_cpu_s"]) == {"forward_backward", "clip_grad_norm", "adamw_step", "default_adamw_step"}
    assert all(v > 0 for v in r["components_cpu_s"].values())


def test_bench_bf16_option_is_reported():
    assert _bench("--bf16", "--repeats", "1")["bf16"] is True
