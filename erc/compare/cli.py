"""Subcommands of the compare stage (registered by the top-level cli.py)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from erc.compare.config import CompareConfig
from erc.core.cli import add_stage_command


def _command_line() -> str:
    prog = Path(sys.argv[0]).name if sys.argv else "cli.py"
    prefix = f"python {prog}" if prog.endswith(".py") else prog
    return " ".join([prefix, shlex.join(sys.argv[1:])]).strip()


def _run_compare(cfg: CompareConfig):
    from erc.compare.run import run_compare  # heavy imports stay out of `cli.py --help`

    return run_compare(cfg, command=_command_line())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(
        subparsers, "compare", CompareConfig, _run_compare,
        help="zero-shot vs fine-tuned V/A/D, Random Forest emotion from V/A/D, report (md/html/json)")
