"""One logging set-up for every entry point (main process logs INFO, others WARNING)."""
from __future__ import annotations

import logging
import random

import numpy as np
import torch


def setup_logging(is_main_process: bool = True, level: int = logging.INFO) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        level=level if is_main_process else logging.WARNING,
        force=True,
    )
    for noisy in ("transformers", "datasets", "accelerate.utils.other"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch once per run (accelerate.utils.set_seed does the same)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
