"""The ``pipeline`` subcommand (registered by the top-level cli.py)."""
from __future__ import annotations

import argparse

from erc_common.cli_utils import add_stage_command
from erc_common.pipeline import PipelineConfig


def _run(cfg: PipelineConfig):
    from erc_common.pipeline import run_pipeline

    return run_pipeline(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_command(subparsers, "pipeline", PipelineConfig, _run,
                      help="finetune -> embed -> train-graph -> compare in one run directory "
                           "(complete stages are skipped; --force STAGE redoes one)")
