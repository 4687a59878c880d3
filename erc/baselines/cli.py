"""Subcommands of the baselines stage (registered by erc.cli): train-baseline, predict-baseline."""
from __future__ import annotations

import argparse

from erc.baselines.config import BaselineTrainConfig, PredictBaselineConfig
from erc.core.cli import add_stage_command


def _train(cfg: BaselineTrainConfig):
    from erc.baselines.train import run_train_baseline

    return run_train_baseline(cfg)


def _predict(cfg: PredictBaselineConfig):
    from erc.baselines.predict import run_predict_baseline

    return run_predict_baseline(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(subparsers, "train-baseline", BaselineTrainConfig, _train,
                      help="train a baseline: --method dialoguernn (DialogueRNN), dialoguegcn (DialogueGCN) or mlp "
                           "(no dialogue context); Accelerate; several seeds")
    add_stage_command(subparsers, "predict-baseline", PredictBaselineConfig, _predict,
                      help="emotion and class probabilities per utterance with a trained baseline")
