"""The ``benchmark`` subcommand (registered by :mod:`erc.cli`)."""
from __future__ import annotations

import argparse

from erc.benchmark.config import BenchmarkConfig
from erc.core.cli import add_stage_command


def _run(cfg: BenchmarkConfig):
    from erc.benchmark.run import run_benchmark

    return run_benchmark(cfg)


def register(subparsers: argparse._SubParsersAction) -> None:
    add_stage_command(subparsers, "benchmark", BenchmarkConfig, _run,
                      help="every method x dataset x text features x modalities x seeds under one protocol: "
                           "plans the cells (finished ones are skipped, unfinished resume), one table "
                           "(md/csv/json/png) with paired-bootstrap significance against a reference method")
