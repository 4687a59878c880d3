"""The graph stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

Light on purpose (configs and paths only); the training code is imported when the stage runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.core.runs import IdentityRule, StageSpec, seed_run_outputs, seed_run_summary
from erc.graph.config import GraphTrainConfig

# What makes two train-graph runs the same run. More epochs or more seeds extend a run (as before the
# harness: `train-graph --epochs 4` into a folder trained for 2 continues it, curriculum included); the
# number of processes is not part of it (checkpoints written by N processes resume in M).
TRAIN_GRAPH_IDENTITY = IdentityRule(
    ignore=frozenset({"epochs", "seeds", "checkpoint", "keep_checkpoints", "release_memory", "recompute_graphs"}),
    inputs=("data.path", "data.text_embeddings", "data.release_root", "data.meld_csv_dir", "cmerc.difficulty_file"),
    added=(("norm", "sym"),))     # runs recorded before the field keep their identity
SUMMARY_KEYS = ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece", "test_ts_ece", "valid_weighted_f1")


def _summary(cfg: GraphTrainConfig, link: Callable[[Path], str]) -> list[str]:
    return seed_run_summary(cfg.output_dir, link, "Graph model (test at the best validation epoch)", SUMMARY_KEYS,
                            lambda r: [f"Selection: {r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s); "
                                       f"modalities {', '.join(r.get('modalities', []))}."])


TRAIN_GRAPH = StageSpec(
    name="train-graph", config_class=GraphTrainConfig, run="erc.graph.train:run_train_graph",
    identity_rule=TRAIN_GRAPH_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: seed_run_outputs(cfg.output_dir), summary=_summary)
