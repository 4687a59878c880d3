"""The bench's repeat summary and the official-GraphSmile runner's patching, on literal inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_graph_epoch import summarize_repeats  # noqa: E402
from graphsmile_official import RUN_PATCHES, figures, patch_run_py  # noqa: E402


def test_summary_min_median_max_spread():
    runs = [{"train_epoch_s": 4.0, "eval_test_s": 0.3, "peak_rss_mib": 1000.0},
            {"train_epoch_s": 5.0, "eval_test_s": 0.2, "peak_rss_mib": 1050.0},
            {"train_epoch_s": 6.0, "eval_test_s": 0.4, "peak_rss_mib": 1010.0}]
    s = summarize_repeats(runs)
    assert s["train_epoch_s"] == {"min": 4.0, "median": 5.0, "max": 6.0, "spread": 0.5, "n": 3}
    assert s["peak_rss_mib"]["spread"] == pytest.approx(0.05) and s["eval_test_s"]["median"] == 0.3
    assert "train_epoch_cpu_s" not in s          # a figure some run lacks is left out, not invented


def _fake_run_py(skip: int | None = None) -> str:
    return "\n".join(old for k, (_, old, _) in enumerate(RUN_PATCHES) if k != skip) + "\n"


def test_patch_run_py_applies_every_patch_once():
    out = patch_run_py(_fake_run_py(), Path("run.py"))
    for what, old, new in RUN_PATCHES:
        assert new in out, what
    assert 'backend="nccl"' not in out and "mp.spawn" not in out and "main(0)" in out


def test_patch_run_py_names_the_patch_it_cannot_apply():
    with pytest.raises(SystemExit, match="cannot patch 'mp.spawn over GPUs'.*found it 0 times"):
        patch_run_py(_fake_run_py(skip=[w for w, _, _ in RUN_PATCHES].index("mp.spawn over GPUs")), Path("run.py"))
    twice = _fake_run_py() + RUN_PATCHES[0][1]
    with pytest.raises(SystemExit, match="found it 2 times"):
        patch_run_py(twice, Path("run.py"))


def test_official_figures_from_timed_calls():
    # three epochs of (train, valid, test) calls as (wall, cpu) seconds
    calls = [(15.0, 29.0), (0.5, 1.0), (1.5, 2.9), (13.0, 25.0), (0.4, 0.8), (1.3, 2.5),
             (11.0, 21.0), (0.4, 0.8), (1.1, 2.1)]
    f = figures(calls, 2 * 1024 * 1024, 17)
    assert f["train_epoch_s"] == 12.0 and f["train_epoch_cpu_s"] == 23.0   # median of epochs 2 and 3
    assert f["eval_test_s"] == 1.3 and f["peak_rss_mib"] == 2048.0 and f["epoch_s"] == [15.0, 13.0, 11.0]
