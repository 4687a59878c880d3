"""Command-line entry point: ``python cli.py <command>``, ``erc <command>``, or
``accelerate launch cli.py <command>``. It only dispatches; each stage owns its
subcommands (``<stage>/cli.py: register(subparsers)``)."""
from __future__ import annotations

import argparse
import importlib
import sys

STAGE_CLIS = ("erc.vad.cli", "erc.data.cli", "erc.graph.cli", "erc.hrg.cli", "erc.compare.cli", "erc.pipeline")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erc", description="Emotion recognition in conversation toolkit.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from erc.core.config import ConfigError

    try:
        args.func(args)
    except ConfigError as exc:
        parser.exit(2, f"erc {args.command}: configuration error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
