"""The baselines stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

A stage of its own (it reads a dialogue dataset, and text embeddings named in its ``data:`` section);
light on purpose, the training code is imported when the stage runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.baselines.config import TRAIN_BASELINE_IDENTITY, BaselineTrainConfig
from erc.core.runs import StageSpec, seed_run_outputs, seed_run_summary

SUMMARY_KEYS = ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece", "valid_weighted_f1")


def _intro(r) -> list[str]:
    return [f"Method {r.get('method', '-')} ({'causal' if r.get('causal') else 'reads future turns'}); selection "
            f"{r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s); modalities "
            f"{', '.join(r.get('modalities', []))}."]


def _summary(cfg: BaselineTrainConfig, link: Callable[[Path], str]) -> list[str]:
    return seed_run_summary(cfg.output_dir, link, f"Baseline {cfg.method} (test at the best validation epoch)",
                            SUMMARY_KEYS, _intro)


TRAIN_BASELINE = StageSpec(
    name="train-baseline", config_class=BaselineTrainConfig, run="erc.baselines.train:run_train_baseline",
    identity_rule=TRAIN_BASELINE_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: seed_run_outputs(cfg.output_dir), summary=_summary)
