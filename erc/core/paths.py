"""Where real data lives: ``$ERC_DATA_DIR`` or ``../shared/data`` beside the project root."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path | None:
    """The real-data folder, or None when this machine has none (tests then skip)."""
    env = os.environ.get("ERC_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(PROJECT_ROOT.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def data_path(*parts: str) -> Path | None:
    """``data_dir()/parts`` if it exists, else None."""
    root = data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None
