"""Subcommands of the online stage (registered by the top-level cli.py)."""
from __future__ import annotations

import argparse

from erc.core.cli import add_stage_command
from erc.online.config import ServeConfig


def _serve(cfg: ServeConfig):
    from erc.online.serve import run_serve   # FastAPI, uvicorn and torch only when serving

    return run_serve(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_command(subparsers, "serve", ServeConfig, _serve,
                      help="serve a causal graph model over HTTP: per-turn emotion as a conversation unfolds")
