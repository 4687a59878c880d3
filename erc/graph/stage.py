"""The graph stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

Light on purpose (configs and paths only); the training code is imported when the stage runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.core.io import read_json
from erc.core.runs import IdentityRule, StageSpec, seed_results_lines
from erc.graph.config import GraphTrainConfig

# What makes two train-graph runs the same run. More epochs or more seeds extend a run (as before the
# harness: `train-graph --epochs 4` into a folder trained for 2 continues it, curriculum included); the
# number of processes is not part of it (checkpoints written by N processes resume in M).
TRAIN_GRAPH_IDENTITY = IdentityRule(
    ignore=frozenset({"epochs", "seeds", "checkpoint", "keep_checkpoints", "release_memory"}),
    inputs=("data.path", "data.text_embeddings", "data.release_root", "data.meld_csv_dir", "cmerc.difficulty_file"))
SUMMARY_KEYS = ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece", "test_ts_ece")


def train_graph_outputs(output_dir: str | Path) -> dict[str, Path]:
    d = Path(output_dir)
    return {"results": d / "results.json", "epochs": d / "epochs.csv"}


def _summary(cfg: GraphTrainConfig, link: Callable[[Path], str]) -> list[str]:
    out = train_graph_outputs(cfg.output_dir)
    if not out["results"].is_file():
        return []
    r = read_json(out["results"])
    intro = [f"Selection: {r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s); "
             f"modalities {', '.join(r.get('modalities', []))}."]
    return seed_results_lines("Graph model (test at the best validation epoch)", intro, r, SUMMARY_KEYS,
                              {"results.json": link(out["results"]), "epochs.csv": link(out["epochs"])})


TRAIN_GRAPH = StageSpec(
    name="train-graph", config_class=GraphTrainConfig, run="erc.graph.train:run_train_graph",
    identity_rule=TRAIN_GRAPH_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: train_graph_outputs(cfg.output_dir), summary=_summary)
