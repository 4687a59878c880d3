"""Command-line entry point: ``python cli.py <command>``, ``erc <command>``, or
``accelerate launch cli.py <command>``. It only dispatches; each stage owns its
subcommands (``<stage>/cli.py: register(subparsers)``).

Expected failures (bad configuration, data that breaks its layout, unreadable or
unsafe files, unwritable outputs, encoders that cannot be loaded) print one or two
lines naming the file, the field and what was expected, and exit with status 2.
``--debug`` (before or after the command) or ``ERC_DEBUG=1`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from erc.core.config import ConfigError
from erc.core.errors import ErcError

STAGE_CLIS = ("erc.vad.cli", "erc.data.cli", "erc.graph.cli", "erc.hrg.cli", "erc.baselines.cli", "erc.compare.cli",
              "erc.online.cli",
              "erc.pipeline", "erc.benchmark.cli",
              "erc.core.results")

# ConfigError covers erc.encoders.hf.EncoderLoadError; ErcError covers DataValidationError, damaged or
# unsafe files and unwritable outputs. Missing files and permissions arrive as OSError subclasses whose
# message names the path.
EXPECTED_ERRORS = (ConfigError, ErcError, FileNotFoundError, FileExistsError, PermissionError,
                   IsADirectoryError, NotADirectoryError)
DEBUG_HELP = "show the full traceback of an error (also: environment variable ERC_DEBUG=1)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="erc", description="Emotion recognition in conversation toolkit.")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in STAGE_CLIS:
        importlib.import_module(module).register(sub)
    for p in sub.choices.values():   # `erc inspect x --debug` works as well as `erc --debug inspect x`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def debug_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("ERC_DEBUG", "").strip() not in ("", "0")


def error_message(command: str, exc: BaseException) -> str:
    """``erc COMMAND: <kind>: <message>`` and a hint line; the message already names file and field."""
    kind = "configuration error" if isinstance(exc, ConfigError) else "error"
    text = " ".join(str(exc).split("\n")) or type(exc).__name__
    return f"erc {command}: {kind}: {text}\n(run with --debug or ERC_DEBUG=1 to see the traceback)\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except EXPECTED_ERRORS as exc:
        if debug_requested(args):
            raise
        parser.exit(2, error_message(args.command, exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
