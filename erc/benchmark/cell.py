"""One benchmark cell in its own process: ``python -m erc.benchmark.cell CELL_FOLDER/job.json``.

The parent (:func:`erc.benchmark.run.run_cell`) writes ``job.json`` (the registry method and the
resolved stage config), starts this module as a child process and reads the child's wall time and
peak resident memory from ``os.wait4``. The child only builds the config and calls the method's
run function; expected failures print one line (as ``erc`` does) and exit with status 2.
"""
from __future__ import annotations

import os
import sys

from erc.benchmark.registry import METHODS
from erc.core.config import ConfigError, config_from_dict
from erc.core.errors import ErcError
from erc.core.io import read_json


def run_job(path: str) -> None:
    job = read_json(path)
    spec = METHODS[job["method"]]
    cfg = config_from_dict(spec.stage.config_class, job["config"], source=path)
    spec.stage.run_function()(cfg)


# erc.cli's expected failures (this module sits beside erc.cli, in the top layer, and does not import it)
EXPECTED_ERRORS = (ConfigError, ErcError, FileNotFoundError, FileExistsError, PermissionError,
                   IsADirectoryError, NotADirectoryError)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m erc.benchmark.cell JOB.json\n")
        return 2
    try:
        run_job(argv[0])
    except EXPECTED_ERRORS as exc:
        if os.environ.get("ERC_DEBUG", "").strip() not in ("", "0"):
            raise
        sys.stderr.write(f"erc benchmark (cell {argv[0]}): {type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
