"""The HRG-SSA stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

A stage of its own: it reads a dialogue dataset and its own backbone, not another stage's outputs,
so the pipeline runs it only when asked (``stages: [..., train-hrg]`` with a ``train_hrg:`` section).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.core.io import read_json
from erc.core.runs import StageSpec, seed_results_lines
from erc.hrg.config import TRAIN_HRG_IDENTITY, HRGTrainConfig

SUMMARY_KEYS = ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece")


def train_hrg_outputs(output_dir: str | Path) -> dict[str, Path]:
    d = Path(output_dir)
    return {"results": d / "results.json", "epochs": d / "epochs.csv"}


def _summary(cfg: HRGTrainConfig, link: Callable[[Path], str]) -> list[str]:
    out = train_hrg_outputs(cfg.output_dir)
    if not out["results"].is_file():
        return []
    r = read_json(out["results"])
    intro = [f"Backbone {r.get('backbone', '-')}; head {r.get('head', '-')}; history labels "
             f"{r.get('history_labels', '-')}; selection {r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s)."]
    if r.get("label_leak"):
        intro += ["", "**These figures leak gold labels of earlier turns (ablation only).**"]
    return seed_results_lines("HRG-SSA (test at the best validation epoch)", intro, r, SUMMARY_KEYS,
                              {"results.json": link(out["results"]), "epochs.csv": link(out["epochs"])})


TRAIN_HRG = StageSpec(
    name="train-hrg", config_class=HRGTrainConfig, run="erc.hrg.train:run_train_hrg",
    identity_rule=TRAIN_HRG_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: train_hrg_outputs(cfg.output_dir), summary=_summary)
