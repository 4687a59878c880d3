"""Helpers for stage CLIs: one subcommand = one dataclass + one run function."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from erc.core.config import add_dataclass_arguments, resolve_config


def add_stage_command(subparsers: argparse._SubParsersAction, name: str, cfg_cls: type,
                      run: Callable[[Any], Any], help: str, description: str | None = None,
                      ) -> argparse.ArgumentParser:
    """Register ``name``: ``--config file.yaml`` gives defaults, flags override, ``run(cfg)`` runs.

    ``run`` is imported lazily by the caller if it pulls heavy modules; pass a
    small function that imports inside its body.
    """
    p = subparsers.add_parser(name, help=help, description=description or help,
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file whose fields are the defaults")
    add_dataclass_arguments(p, cfg_cls)

    def _main(args: argparse.Namespace) -> Any:
        cfg = resolve_config(cfg_cls, args, args.config)
        return run(cfg)

    p.set_defaults(func=_main)
    return p
