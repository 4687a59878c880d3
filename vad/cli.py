"""Subcommands of the vad stage (registered by the top-level cli.py): finetune, predict."""
from __future__ import annotations

import argparse

from erc_common.cli_utils import add_stage_command
from vad.config import FinetuneConfig, PredictConfig


def _finetune(cfg: FinetuneConfig) -> dict:
    from vad.train import run_finetune

    return run_finetune(cfg)


def _predict(cfg: PredictConfig) -> dict:
    from vad.predict import run_predict

    return run_predict(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(subparsers, "finetune", FinetuneConfig, _finetune,
                      help="fine-tune an encoder to predict Valence/Arousal/Dominance "
                           "(run with `accelerate launch cli.py finetune ...`)")
    add_stage_command(subparsers, "predict", PredictConfig, _predict,
                      help="predict V/A/D for a CSV of texts, a text file or an IEMOCAP root")
