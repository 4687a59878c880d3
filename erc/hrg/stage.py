"""The HRG-SSA stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

A stage of its own: it reads a dialogue dataset and its own backbone, not another stage's outputs,
so the pipeline runs it only when asked (``stages: [..., train-hrg]`` with a ``train_hrg:`` section).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.core.runs import StageSpec, seed_run_outputs, seed_run_summary
from erc.hrg.config import TRAIN_HRG_IDENTITY, HRGTrainConfig

SUMMARY_KEYS = ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece")


def _intro(r) -> list[str]:
    lines = [f"Backbone {r.get('backbone', '-')}; head {r.get('head', '-')}; history labels "
             f"{r.get('history_labels', '-')}; selection {r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s)."]
    if r.get("label_leak"):
        lines += ["", "**These figures leak gold labels of earlier turns (ablation only).**"]
    return lines


def _summary(cfg: HRGTrainConfig, link: Callable[[Path], str]) -> list[str]:
    return seed_run_summary(cfg.output_dir, link, "HRG-SSA (test at the best validation epoch)", SUMMARY_KEYS, _intro)


TRAIN_HRG = StageSpec(
    name="train-hrg", config_class=HRGTrainConfig, run="erc.hrg.train:run_train_hrg",
    identity_rule=TRAIN_HRG_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: seed_run_outputs(cfg.output_dir), summary=_summary)
