"""Subcommands of the data layer (registered by erc.cli): inspect, load-data."""
from __future__ import annotations

import argparse

from erc.core.cli import add_stage_command
from erc.data.config import DialogueDataConfig


def _run_inspect(args: argparse.Namespace) -> None:
    from erc.data.inspect import describe

    print(describe(args.file, args.dataset))


def _run_load(cfg: DialogueDataConfig):
    from erc.data.dialogues import load_splits

    splits = load_splits(cfg)
    for name, s in splits.summary().items():
        print(f"{name:5s}: {s['dialogues']:5d} dialogues, {s['utterances']:6d} utterances")
    print("dims: " + ", ".join(f"{m} {d}" for m, d in splits.dims.items()))
    return splits


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    p = subparsers.add_parser("inspect", help="describe a dialogue file: reader, splits, dims, labels",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("file", help="pickle, MELD CSV folder or IEMOCAP release root")
    p.add_argument("--dataset", default=None, help="registry name (default: detect)")
    p.set_defaults(func=_run_inspect)
    add_stage_command(subparsers, "load-data", DialogueDataConfig, _run_load,
                      help="load, check and split a dataset with the chosen modalities; print the counts")
