"""One logging set-up for every entry point (main process logs INFO, others WARNING).

Seeding is ``accelerate.utils.set_seed`` (Python, NumPy, torch), called once per run
by :func:`erc.core.harness.start_run`.
"""
from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest and notebooks swap it)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(is_main_process: bool = True, level: int = logging.INFO) -> None:
    """Root level and one stderr handler; safe to call once per stage in one process.

    Other handlers on the root logger (a notebook's, pytest's ``caplog``) are left alone.
    """
    root = logging.getLogger()
    root.setLevel(level if is_main_process else logging.WARNING)
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    for noisy in ("transformers", "datasets", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
