"""``erc benchmark``: plan every cell, run those not complete (each in a child process), write the table.

Wall time and peak memory of a cell are measured by the parent around a child process that runs
only that cell: the wall time is the child's life (start-up and imports included), the peak memory
is the child's maximum resident set size as the kernel reports it when the child is reaped
(``os.wait4`` -> ``ru_maxrss``; on Linux it covers the child and any of its own children it waited
for). A cell that ran in several attempts (interrupted, then resumed) reports the sum of their
wall times and the largest of their peaks; ``attempts.json`` in the cell folder lists them.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import erc
from erc.benchmark.config import BenchmarkConfig
from erc.benchmark.plan import ATTEMPTS, MARKER, Cell, CellPlan, format_plan, is_complete, plan, stage_finished
from erc.core.config import ConfigError, save_config
from erc.core.errors import ErcError
from erc.core.io import read_json, write_json
from erc.core.logs import setup_logging

logger = logging.getLogger(__name__)
JOB = "job.json"
LOG = "cell.log"
LOCK = "running.json"


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's process: alive
        return True
    return True


def claim(cell: Cell) -> dict | None:
    """Take ``cell`` for this process (``running.json``, created exclusively); None when taken, else the holder.

    Several ``erc benchmark`` processes on one output folder (say one per free core) share the cells this
    way. A lock of a process that is gone (same host) is stale and taken over; one of another host is
    respected (delete the file if that process is gone).
    """
    cell.folder.mkdir(parents=True, exist_ok=True)
    path = cell.folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text(encoding="utf-8") or "{}")
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and not _alive(holder["pid"]):
                logger.info("%s: taking over the lock of process %d, which is gone", cell.label, holder["pid"])
                path.unlink(missing_ok=True)
                continue
            if not holder:         # being written this very moment by its holder
                time.sleep(0.2)
                continue
            return holder
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me, fh)
        return None
    return {"pid": "?", "host": "?"}


def release(cell: Cell) -> None:
    (cell.folder / LOCK).unlink(missing_ok=True)


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
            holder = claim(p.cell)
            if holder is not None:
                logger.info("[%d/%d] %s: running in process %s on %s, left to it", i, len(todo), p.cell.label,
                            holder.get("pid"), holder.get("host"))
                continue
            try:
                if is_complete(p.cell):            # finished by another benchmark process since the plan
                    logger.info("[%d/%d] %s: finished meanwhile, skipped", i, len(todo), p.cell.label)
                    continue
                logger.info("[%d/%d] %s %s -> %s", i, len(todo), p.action, p.cell.label, p.cell.folder)
                attempt = run_cell(p.cell)
                finished = attempt["exit_code"] == 0 and stage_finished(p.cell)
                if finished:
                    mark_complete(p.cell)
            finally:
                release(p.cell)
            if finished:
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
