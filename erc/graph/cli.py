"""Subcommands of the graph stage (registered by the top-level cli.py)."""
from __future__ import annotations

import argparse

from erc.core.cli import add_stage_command
from erc.graph.config import DifficultyConfig, GraphTrainConfig, PredictGraphConfig


def _train(cfg: GraphTrainConfig):
    from erc.graph.train import run_train_graph

    return run_train_graph(cfg)


def _predict(cfg: PredictGraphConfig):
    from erc.graph.predict import run_predict_graph

    return run_predict_graph(cfg)


def _difficulty(cfg: DifficultyConfig):
    from erc.graph.difficulty import run_difficulty

    return run_difficulty(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(subparsers, "train-graph", GraphTrainConfig, _train,
                      help="train the GraphSmile-style multimodal graph model (Accelerate; several seeds)")
    add_stage_command(subparsers, "predict-graph", PredictGraphConfig, _predict,
                      help="emotion, sentiment and class probabilities per utterance with a trained graph model")
    add_stage_command(subparsers, "difficulty", DifficultyConfig, _difficulty,
                      help="per-dialogue difficulty (model loss or label entropy) for curriculum training")
