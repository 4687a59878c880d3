"""Figures for every stage: a headless pyplot and an atomic PNG writer."""
from __future__ import annotations

import io
from pathlib import Path

from erc.core.io import atomic_write_bytes


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed).

    Imported here, not at the top: the backend must be chosen before pyplot is
    imported, and choosing it at import time would change it for a whole program
    that merely imports this module.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path, dpi: int = 110, tight: bool = True) -> Path:
    """Render ``fig`` to PNG, close it, and write the file atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    pyplot().close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
