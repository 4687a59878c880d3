"""Subcommands of the HRG-SSA stage (registered by erc.cli): train-hrg, predict-hrg."""
from __future__ import annotations

import argparse

from erc.core.cli import add_stage_command
from erc.hrg.config import HRGTrainConfig, PredictHRGConfig


def _train(cfg: HRGTrainConfig):
    from erc.hrg.train import run_train_hrg

    return run_train_hrg(cfg)


def _predict(cfg: PredictHRGConfig):
    from erc.hrg.predict import run_predict_hrg

    return run_predict_hrg(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(subparsers, "train-hrg", HRGTrainConfig, _train,
                      help="train HRG-SSA (hybrid relational graphs + sentiment-laden alignment; generative or "
                           "classifying head; Accelerate; several seeds)")
    add_stage_command(subparsers, "predict-hrg", PredictHRGConfig, _predict,
                      help="emotion and sentiment per utterance with a trained HRG-SSA model (history labels: "
                           "the model's own predictions, turn by turn)")
