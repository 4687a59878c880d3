"""Leave-one-session-out V/A/D estimates: one fine-tuning run per held-out session, then mean +- std.

``erc finetune --folds 1 2 3 4`` runs :func:`erc.vad.train.run_finetune` once per session K with
``data.leave_one_session_out = K`` (test = K; validation = the session before it, or with
``data.loso_validation = slice`` a seeded ``valid_fraction`` of the other sessions' dialogues;
train = the rest; the held-out session is never seen in training or selection) into ``output_dir/fold_K``,
each fold a complete run of its own (resumable, its own identity), and writes
``folds_summary.json`` and ``folds_summary.md``: each fold's sessions and test metrics, and the
mean and sample std over folds.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from erc.core.config import ConfigError
from erc.core.io import atomic_write_text, write_json
from erc.core.runs import format_cell, summarize_seeds
from erc.data.registry import VAD_NAMES

logger = logging.getLogger(__name__)
KEYS = ("pearson", "ccc", "rmse", *(f"{d}_{m}" for m in ("pearson", "ccc", "rmse") for d in VAD_NAMES))


def fold_config(cfg, session: int):
    data = dataclasses.replace(cfg.data, leave_one_session_out=int(session))
    return dataclasses.replace(cfg, data=data, folds=[], output_dir=str(Path(cfg.output_dir) / f"fold_{session}"))


def run_folds(cfg) -> dict:
    """Every fold of ``cfg.folds``; returns the summary written to ``folds_summary.json``."""
    from erc.vad.train import run_finetune

    if len(set(cfg.folds)) != len(cfg.folds) or len(cfg.folds) < 2:
        raise ConfigError(f"field 'folds': expected at least two distinct sessions, got {cfg.folds}")
    if cfg.data.leave_one_session_out:
        raise ConfigError("field 'folds': do not combine with leave_one_session_out (each fold sets it)")
    folds = []
    for session in cfg.folds:
        logger.info("fold: test session %d", session)
        res = run_finetune(fold_config(cfg, session))
        folds.append({"test_session": int(session), "sessions": res.get("sessions"),
                      "best_epoch": res["best_epoch"], "output_dir": res["output_dir"],
                      "test": {k: res["test"][k] for k in KEYS if k in res["test"]}})
    selection = (f"selection on a {cfg.data.valid_fraction} slice of the other sessions' dialogues"
                 if cfg.data.loso_validation == "slice" else "selection on the session before it")
    summary = {"folds": folds, "mean_std": summarize_seeds([f["test"] for f in folds], KEYS),
               "note": f"test = the held-out session of each fold; {selection}"}
    out = Path(cfg.output_dir)
    write_json(out / "folds_summary.json", summary)
    atomic_write_text(out / "folds_summary.md", format_folds(summary))
    print(format_folds(summary))
    return summary


def format_folds(summary: dict) -> str:
    cols = [f"{d}_{m}" for d in VAD_NAMES for m in ("pearson", "ccc")]
    lines = ["| test session | train | validation | " + " | ".join(cols) + " |",
             "|---" * (3 + len(cols)) + "|"]
    for f in summary["folds"]:
        s = f["sessions"] or {}
        lines.append(f"| {f['test_session']} | {s.get('train', '-')} | {s.get('validation', '-')} | "
                     + " | ".join(format_cell(f["test"].get(c)) for c in cols) + " |")
    ms = summary["mean_std"]
    lines.append("| mean +- std | | | " + " | ".join(
        f"{ms[c]['mean']:.3f} +- {ms[c]['std']:.3f}" if c in ms else "-" for c in cols) + " |")
    return "\n".join(lines) + "\n"
