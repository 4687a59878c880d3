"""``erc benchmark``: plan every cell, run those not complete (each in a child process), write the table.

Wall time and peak memory of a cell are measured by the parent around a child process that runs
only that cell: the wall time is the child's life (start-up and imports included), the peak memory
is the child's maximum resident set size as the kernel reports it when the child is reaped
(``os.wait4`` -> ``ru_maxrss``; on Linux it covers the child and any of its own children it waited
for). A cell that ran in several attempts (interrupted, then resumed) reports the sum of their
wall times and the largest of their peaks; ``attempts.json`` in the cell folder lists them.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import erc
from erc.benchmark.config import BenchmarkConfig
from erc.benchmark.plan import ATTEMPTS, MARKER, Cell, CellPlan, format_plan, plan, stage_finished
from erc.core.config import ConfigError, save_config
from erc.core.errors import ErcError
from erc.core.io import read_json, write_json
from erc.core.logs import setup_logging

logger = logging.getLogger(__name__)
JOB = "job.json"
LOG = "cell.log"


class CellFailedError(ErcError):
    """One or more benchmark cells exited with an error (their logs are named)."""


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def read_attempts(cell_folder: Path) -> list[dict]:
    path = cell_folder / ATTEMPTS
    return list(read_json(path)) if path.is_file() else []


def run_cell(cell: Cell) -> dict:
    """Run ``cell`` in a child process; record the attempt (exit code, wall time, peak RSS); return it."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    job = cell.folder / JOB
    write_json(job, {"method": cell.spec.name, "cell": list(cell.key), "config": cell.config_dict()})
    env = dict(os.environ)
    root = str(Path(erc.__file__).resolve().parents[1])         # the child imports this very erc package
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    started = time.time()
    with open(cell.folder / LOG, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {cell.label}\n".encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "erc.benchmark.cell", str(job)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)     # reaped here; Popen must not wait again
    attempt = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "seconds": time.time() - started, "peak_rss_mib": usage.ru_maxrss / 1024.0,   # Linux: KiB
               "exit_code": proc.returncode}
    write_json(cell.folder / ATTEMPTS, [*read_attempts(cell.folder), attempt])
    return attempt


def mark_complete(cell: Cell) -> None:
    attempts = read_attempts(cell.folder)
    write_json(cell.folder / MARKER, {
        "cell": dict(zip(("dataset", "features", "modalities", "method"), cell.key)),
        "method": cell.spec.name, "stage": cell.spec.stage.name,
        "seconds": sum(a["seconds"] for a in attempts),
        "peak_rss_mib": max((a["peak_rss_mib"] for a in attempts), default=None),
        "attempts": len(attempts), "config": cell.config_dict()})


def run_benchmark(cfg: BenchmarkConfig) -> Path:
    """Plan, run what is not complete, write the table; returns the Markdown table's path."""
    from erc.benchmark.table import write_table

    setup_logging(True)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("erc benchmark runs as one process (each cell in a child process of its own); "
                          "start it without accelerate launch")
    plans: list[CellPlan] = plan(cfg)
    print(format_plan(plans), flush=True)
    if cfg.plan_only:
        return Path(cfg.output_dir) / "benchmark.md"
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    failed = []
    if not cfg.table_only:
        todo = [p for p in plans if p.action != "skip"]
        for i, p in enumerate(todo, 1):
            logger.info("[%d/%d] %s %s -> %s", i, len(todo), p.action, p.cell.label, p.cell.folder)
            attempt = run_cell(p.cell)
            if attempt["exit_code"] == 0 and stage_finished(p.cell):
                mark_complete(p.cell)
                logger.info("%s: done in %.1f s, peak RSS %.0f MiB", p.cell.label, attempt["seconds"],
                            attempt["peak_rss_mib"])
            elif attempt["exit_code"] == 0:
                logger.info("%s: stopped before its last epoch (a time box?); run again to resume it", p.cell.label)
            else:
                log = p.cell.folder / LOG
                failed.append(f"{p.cell.label} (exit code {attempt['exit_code']}; log {log})")
                logger.error("%s: FAILED (exit code %d); last lines of %s:\n%s", p.cell.label, attempt["exit_code"],
                             log, _tail(log))
    table = write_table(cfg, [p.cell for p in plans])
    print(f"benchmark table: {table} (+ .csv, .json, .png)", flush=True)
    if failed:
        raise CellFailedError(f"{len(failed)} cell(s) failed: {'; '.join(failed)}. The table holds the finished "
                              "cells; rerun the same command to resume the others")
    return table
