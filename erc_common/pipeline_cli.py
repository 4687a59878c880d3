"""Subcommands of the vad stage (registered by the top-level cli.py)."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
