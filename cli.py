"""``python cli.py COMMAND`` / ``accelerate launch cli.py COMMAND``: the same program as ``erc COMMAND``.

The commands live in :mod:`erc.cli`; this file only lets a checkout run them by path.
"""
import sys

from erc.cli import main

if __name__ == "__main__":
    sys.exit(main())
