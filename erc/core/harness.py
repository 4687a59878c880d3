"""The training harness every trained stage uses: start-up, trackers and named checkpoints.

:func:`start_run` does a run's start-up in one order, the same for every stage:
``Accelerator`` (the CPU-process rule of :mod:`erc.core.accel`, trackers from
``report_to``, ``project_dir`` = the run folder) -> logging -> the one thread rule
(:func:`set_threads`) -> seed (``accelerate.utils.set_seed``, once) -> run identity
(:mod:`erc.core.runs`: refuse a folder that holds another run, before anything is
written) -> run folder checked writable -> ``run.json`` and the resolved
``config.yaml`` -> ``init_trackers`` with the flattened config.

:class:`Checkpoints` keeps named folders (``epoch_N/``, ``step_N/``) written by
:func:`erc.core.state_io.save_training_state` (what ``accelerator.save_state`` saves, as
safetensors + JSON: no pickle) under a temporary name and renamed into place, each with
the resolved ``config.yaml``, ``trainer_state.json`` (the loop's counters and history,
JSON) and ``checkpoint.json`` (written last: file sizes, progress, the run identity).
A checkpoint is complete when its ``checkpoint.json`` is there and every file has its
recorded size. Resuming takes the newest complete one (also one left complete under its
temporary name by a kill between the two renames), says which, warns about damaged
ones and falls back to the previous, and refuses one whose stored identity differs
from the run's unless told.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed

from erc.core.accel import end_stage, use_cpu_processes
from erc.core.config import ConfigError, save_config
from erc.core.io import atomic_replace_dir, check_writable, read_json, write_json
from erc.core.logs import setup_logging
from erc.core.state_io import load_training_state, save_training_state
from erc.core.runs import (
    IdentityRule,
    RunIdentity,
    RunMismatchError,
    check_run_dir,
    clear_run_dir,
    config_dict,
    flatten,
    record_identity,
)

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = re.compile(r"\.?(epoch|step)_(\d+)(\.tmp|\.old)?")
MANIFEST = "checkpoint.json"
TRAINER_STATE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
LOGS_DIR = "logs"


# ----------------------------------------------------------------------------- start-up
def set_threads(num_threads: int) -> None:
    """The one thread rule of every stage: 0 leaves torch's default, N > 0 uses N intra-op threads."""
    if num_threads < 0:
        raise ConfigError(f"field 'num_threads': expected >= 0 (0 = torch default), got {num_threads}")
    if num_threads > 0:
        torch.set_num_threads(num_threads)


@functools.cache
def _glibc(name: str):
    """glibc's function ``name`` (``malloc_trim``, ``mallopt``), or None (another libc, another OS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def _set_malloc_options(*options: tuple[int, int]) -> bool:
    """``mallopt(param, value)`` for each pair; False where ``mallopt`` is unavailable or one refuses."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and all(bool(mallopt(param, value)) for param, value in options)


#: glibc ``mallopt`` parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: Allocations from this size up get their own mapping, returned to the OS when freed (glibc's default
#: starts at 128 KiB and then follows the largest chunk freed so far, up to 32 MiB).
STEADY_MMAP_THRESHOLD = 1 << 20
#: :func:`fast_steady_heap`'s mmap and trim thresholds: every tensor of a training step (a few MiB)
#: is served from the one heap and its pages stay mapped from step to step.
FAST_HEAP_THRESHOLD = 64 << 20


@functools.cache
def fast_steady_heap(threshold: int = FAST_HEAP_THRESHOLD) -> bool:
    """The heap setting of a training run that wants speed and a repeatable peak (glibc; the default).

    Like :func:`steady_heap` (one arena for every thread, fixed thresholds, so the peak does not
    follow thread timing or the history of frees), but with mmap and trim thresholds high enough
    that a step's tensors reuse heap pages that are already resident: no page faults from mapping
    and unmapping each tensor, and no re-touching of trimmed pages in the next step. The peak is a
    few hundred MiB higher than :func:`steady_heap` with a trim after every step, and the epoch
    faster (``bench/bench_graph_epoch.py`` against ``--release-memory``; docs/graph_speed.md).
    Idempotent; False where ``mallopt`` is unavailable or refuses.
    """
    return _set_malloc_options((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, threshold), (_M_TRIM_THRESHOLD, threshold))


@functools.cache
def steady_heap(mmap_threshold: int = STEADY_MMAP_THRESHOLD, arena_max: int = 1) -> bool:
    """Make the process's peak resident memory a property of the program, not of thread timing (glibc).

    Two glibc malloc behaviours make the peak of the same training run differ from run to run
    (``bench/bench_graph_epoch.py --repeats``, docs/graph_speed.md): intra-op threads that allocate
    get arenas of their own, which hold freed memory apart from the main heap depending on which
    thread ran what; and the mmap threshold moves up with the largest block freed so far, so
    whether a 1-30 MiB tensor lands in the heap (where freed space is reused or stranded) or in a
    mapping of its own depends on the history of frees. Here one arena serves every thread and
    the threshold is fixed: every tensor of ``mmap_threshold`` bytes or more is mapped when
    allocated and unmapped when freed, so resident memory follows the live tensors. Results are
    unchanged (allocation only). Idempotent; False where ``mallopt`` is unavailable or refuses.
    """
    return _set_malloc_options((_M_MMAP_THRESHOLD, mmap_threshold), (_M_ARENA_MAX, arena_max))


def training_heap(release_memory: bool) -> bool:
    """The heap setting of a training stage: :func:`steady_heap` (lean: with a trim after every step)
    when ``release_memory``, else :func:`fast_steady_heap` (the default)."""
    return steady_heap() if release_memory else fast_steady_heap()


def native_bf16(device_type: str = "cpu") -> bool:
    """Whether ``device_type`` computes bf16 matrix products natively: a CUDA device that supports bf16,
    or a CPU with AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo flags). Elsewhere bf16 autocast on CPU is
    emulated and slower than float32."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_mixed_precision(value: str, device_type: str) -> str:
    """``mixed_precision`` as Accelerate takes it: ``auto`` becomes ``bf16`` where :func:`native_bf16`, else ``no``."""
    if value != "auto":
        return value
    return "bf16" if native_bf16(device_type) else "no"


def finish_seed(accelerator: Accelerator, run_dir: Path, result: Mapping[str, Any], history: list) -> dict:
    """End of one seed of a multi-seed stage, after its epoch loop: every process waits, the main one
    writes ``run_dir/result.json``, the accelerator's references are freed; returns ``result`` with the
    seed's epoch ``history`` (which stays in ``epochs.csv``, not in ``result.json``)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(Path(run_dir) / "result.json", dict(result))
    accelerator.free_memory()
    return {**result, "history": history}


def normalization_record(splits: Any) -> dict[str, dict[str, list]]:
    """The training statistics each modality was z-scored with (``splits.normalization``), as lists: saved
    beside a model, so that prediction applies the same."""
    return {m: {k: np.asarray(v).tolist() for k, v in st.items()}
            for m, st in (getattr(splits, "normalization", None) or {}).items()}


def publish_best(run_dir: Path, best_dir: Path, accelerator: Accelerator, test_metrics: Mapping[str, Any],
                 write: Callable[[Path, dict], None], calibration: tuple | None = None) -> dict:
    """Write a new best epoch's folder atomically and return its test metrics.

    ``write(tmp, metrics)`` fills a new, empty folder ``run_dir/.best_model.tmp`` on the main process, which
    then replaces ``best_dir`` (readers see the old folder or the new one, never half of one). ``calibration``:
    ``(valid_logits, valid_labels, test_logits, test_labels)``; the temperature is fitted on validation only,
    the test calibration figures and the temperature join the metrics, and ``calibration.json`` with the
    reliability diagrams joins the folder (:func:`erc.core.calibration.best_epoch_calibration`).
    """
    from erc.core.calibration import best_epoch_calibration

    tmp = Path(run_dir) / ".best_model.tmp"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    metrics = dict(test_metrics)
    if calibration is not None:
        cal = best_epoch_calibration(*calibration, tmp if main else None)
        metrics.update({k[len("test_"):]: v for k, v in cal.items() if k.startswith("test_")},
                       temperature=cal["temperature"])
    if main:
        write(tmp, metrics)
        atomic_replace_dir(tmp, best_dir)
    return metrics


def release_free_heap() -> bool:
    """Hand the heap memory freed so far back to the OS (glibc ``malloc_trim(0)``); False where unavailable.

    A training step frees most of what it allocated, but glibc keeps the freed chunks mapped and a
    step with other shapes cannot always reuse them, so resident memory ratchets up over an epoch
    (on IEMOCAP-6 at published size, by more than the step's own working set). Trimming after each
    optimizer step caps the peak at about one step's working set; the price is re-touching those
    pages in the next step (see ``bench/bench_graph_epoch.py``).
    """
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def make_run_dir(run_dir: Path) -> None:
    """Check ``run_dir`` can be written (:func:`erc.core.io.check_writable`), then create it."""
    check_writable(run_dir, "field 'output_dir':", folder=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def tracker_config(cfg: Any) -> dict[str, Any]:
    """The resolved config flattened to scalars trackers accept (lists joined, None as 'None')."""
    out = {}
    for k, v in flatten(config_dict(cfg)).items():
        if isinstance(v, list):
            v = ",".join(map(str, v))
        elif v is None:
            v = "None"
        out[k] = v
    return out


def start_local(cfg: Any, output_dir: str | Path | None, config_path: str | Path | None = None) -> Path | None:
    """Start-up of a stage that runs in one process without Accelerate (embed, compare; main process
    only under a multi-process pipeline): logging, the thread rule, seed, output folder checked
    writable, resolved config saved. Returns the output folder. A config without ``seed`` is not
    seeded (nothing random runs). ``output_dir=None``: the stage writes one file, which it checks
    itself, and no folder is created before the work has succeeded."""
    setup_logging(True)
    set_threads(int(getattr(cfg, "num_threads", 0) or 0))
    if hasattr(cfg, "seed"):
        set_seed(int(cfg.seed))
    if output_dir is None:
        return None
    out = Path(output_dir)
    make_run_dir(out)
    if config_path is not None:
        save_config(cfg, config_path)
    return out


@dataclass
class Run:
    """A started run: its Accelerator, folder, config and identity."""

    stage: str
    accelerator: Accelerator
    output_dir: Path
    config: Any
    identity: RunIdentity
    status: str                     # "new" (fresh folder), "same" (this run's folder) or "clear" (overwritten)
    tracking: bool = False

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        """Send the numeric ``values`` of one epoch to the trackers (no-op without trackers)."""
        if not self.tracking:
            return
        scalars = {f"{prefix}{k}": float(v) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.accelerator.log(scalars, step=step)

    def checkpoints(self, directory: str | Path, keep: int = 0) -> "Checkpoints":
        return Checkpoints(self, Path(directory), keep)

    def finish(self) -> None:
        """Free the accelerator's prepared objects; wait for every process; end the trackers (and the process
        group unless a pipeline owns it).

        A DDP-wrapped model still alive when the gloo group is torn down is destroyed later, with its
        reducer's reference to the group, and that destructor can deadlock once a peer process has exited
        (seen: a 2-process finetune whose rank 1 hung in ``~ProcessGroupGloo`` after rank 0 had finished).
        The caller drops its own references first; here the accelerator's go, and the garbage is collected
        while every process is still there.
        """
        self.accelerator.free_memory()
        gc.collect()
        self.accelerator.wait_for_everyone()
        end_stage(self.accelerator)


def start_run(cfg: Any, stage: str, rule: IdentityRule, **accelerator_kwargs: Any) -> Run:
    """Start a run of ``stage`` with config ``cfg`` (see the module doc for the order).

    Reads the common fields ``output_dir``, ``seed``, ``num_threads``, ``mixed_precision``,
    ``report_to`` and ``overwrite`` of ``cfg`` (missing ones take their neutral value).
    Raises :class:`erc.core.runs.RunMismatchError` before writing anything when
    ``output_dir`` holds another run.
    """
    out_dir = Path(cfg.output_dir)
    report_to = getattr(cfg, "report_to", "none") or "none"
    if getattr(cfg, "mixed_precision", "no") == "auto":   # resolved before the identity and the saved config.yaml
        device = "cpu" if use_cpu_processes() or not torch.cuda.is_available() else "cuda"
        cfg.mixed_precision = resolve_mixed_precision("auto", device)
        logger.info("mixed_precision auto: %s (%s)", cfg.mixed_precision, device)
    accelerator = Accelerator(
        cpu=use_cpu_processes(), mixed_precision=getattr(cfg, "mixed_precision", "no"),
        log_with=None if report_to == "none" else report_to,
        project_config=ProjectConfiguration(project_dir=str(out_dir), logging_dir=str(out_dir / LOGS_DIR)),
        **accelerator_kwargs)
    setup_logging(accelerator.is_main_process)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != accelerator.num_processes:
        raise RuntimeError(f"WORLD_SIZE={world} but Accelerate runs {accelerator.num_processes} process(es): "
                           "independent runs would overwrite each other's files. On CPU launch with "
                           f"`accelerate launch --multi_gpu --num_processes N cli.py {stage} ...` or "
                           f"`torchrun --nproc_per_node N cli.py {stage} ...`")
    set_threads(int(getattr(cfg, "num_threads", 0) or 0))
    set_seed(int(getattr(cfg, "seed", 0)))

    identity = rule.identity(stage, cfg, accelerator.num_processes)
    status = check_run_dir(out_dir, identity, bool(getattr(cfg, "overwrite", False)))  # every process, read-only
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and status == "clear":
        logger.info("--overwrite: clearing %s", out_dir)
        clear_run_dir(out_dir)
    accelerator.wait_for_everyone()
    make_run_dir(out_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if status != "same":
            record_identity(out_dir, identity)
        save_config(cfg, out_dir / CONFIG_FILE)
    if status == "same":
        logger.info("%s: continuing the run in %s (same config and inputs, fingerprint %s)",
                    stage, out_dir, identity.fingerprint)
    run = Run(stage, accelerator, out_dir, cfg, identity, status, tracking=report_to != "none")
    if run.tracking:
        accelerator.init_trackers(stage.replace("-", "_"), config=tracker_config(cfg))
    accelerator.wait_for_everyone()
    return run


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class Candidate:
    path: Path
    name: str                   # the final name, e.g. epoch_3
    progress: int
    manifest: dict


def _manifest_problem(path: Path) -> tuple[dict | None, str | None]:
    """``(manifest, None)`` for a complete checkpoint, else ``(None, what is wrong)``."""
    mf = path / MANIFEST
    if not mf.is_file():
        return None, f"no {MANIFEST} (the save did not finish)"
    try:
        manifest = read_json(mf)
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"{mf} is unreadable ({exc})"
    for rel, size in files.items():
        f = path / rel
        if not f.is_file():
            return None, f"{f} is missing"
        if f.stat().st_size != size:
            return None, f"{f} has {f.stat().st_size} bytes, {size} were written (truncated or damaged)"
    return manifest, None


class Checkpoints:
    """Named checkpoint folders of one run under ``directory`` (see the module doc)."""

    def __init__(self, run: Run, directory: Path, keep: int = 0):
        self.run, self.dir, self.keep = run, Path(directory), int(keep)
        self.accelerator = run.accelerator

    # ---- saving ------------------------------------------------------------------------------
    def save(self, name: str, trainer_state: Mapping[str, Any], progress: int) -> Path:
        """``save_state`` into ``.name.tmp``, add config, trainer state and manifest, rename to ``name``."""
        if not CHECKPOINT_NAME.fullmatch(name) or name.startswith("."):
            raise ValueError(f"checkpoint name {name!r}: expected epoch_N or step_N")
        acc = self.accelerator
        final, tmp, old = self.dir / name, self.dir / f".{name}.tmp", self.dir / f".{name}.old"
        if acc.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        save_training_state(acc, tmp)
        acc.wait_for_everyone()
        if acc.is_main_process:
            write_json(tmp / TRAINER_STATE, dict(trainer_state))
            save_config(self.run.config, tmp / CONFIG_FILE)
            files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
            write_json(tmp / MANIFEST, {"name": name, "progress": int(progress), "files": files,
                                        "fingerprint": self.run.identity.fingerprint,
                                        "identity": self.run.identity.config, "written": time.time()})
            if final.exists():
                if old.exists():
                    shutil.rmtree(old)
                os.replace(final, old)          # rename 1 of 2 (only when the name is re-used)
            os.replace(tmp, final)              # rename 2 of 2
            if old.exists():
                shutil.rmtree(old)
            self._prune(keep_also=final)
        acc.wait_for_everyone()
        return final

    def _prune(self, keep_also: Path) -> None:
        complete = [c for c in self.scan(warn=False) if c.path.name == c.name]
        if self.keep > 0:
            for c in complete[self.keep:]:
                if c.path != keep_also:
                    shutil.rmtree(c.path, ignore_errors=True)
        for p in self._leftovers():
            shutil.rmtree(p, ignore_errors=True)

    def _leftovers(self) -> list[Path]:
        """Temporary folders of earlier saves (a newer checkpoint now exists)."""
        if not self.dir.is_dir():
            return []
        return [p for p in self.dir.iterdir() if p.is_dir() and p.name.startswith(".")
                and CHECKPOINT_NAME.fullmatch(p.name)]

    def clear(self) -> int:
        """Delete every checkpoint (a fresh start of this run); returns how many there were."""
        n = 0
        if self.accelerator.is_main_process and self.dir.is_dir():
            for p in self.dir.iterdir():
                if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name):
                    shutil.rmtree(p)
                    n += 1
        self.accelerator.wait_for_everyone()
        return n

    # ---- finding -----------------------------------------------------------------------------
    def scan(self, warn: bool = True) -> list[Candidate]:
        """Complete checkpoints, newest first (an epoch checkpoint after a step one at the same step)."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = CHECKPOINT_NAME.fullmatch(p.name)
            if not p.is_dir() or not m or (p.name.startswith(".") != bool(m.group(3))):
                continue
            manifest, problem = _manifest_problem(p)
            if manifest is None:
                if warn and not m.group(3):
                    logger.warning("checkpoint %s is not usable: %s; skipping it", p, problem)
                continue
            rank = {None: 2, ".tmp": 1, ".old": 0}[m.group(3)]
            found.append((int(manifest.get("progress", 0)), m.group(1) == "epoch", rank,
                          Candidate(p, f"{m.group(1)}_{m.group(2)}", int(manifest.get("progress", 0)), manifest)))
        found.sort(key=lambda t: t[:3], reverse=True)
        return [t[3] for t in found]

    def _check_identity(self, c: Candidate, allow_config_change: bool) -> None:
        stored = RunIdentity(self.run.stage, dict(c.manifest.get("identity") or {}))
        changes = stored.config_changes(RunIdentity(self.run.stage, self.run.identity.config))
        if not changes:
            return
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
        if allow_config_change:
            logger.warning("resuming from %s although its config differs (%s): told to allow it", c.path, shown)
            return
        raise RunMismatchError(f"checkpoint {c.path} was written by another config (changed: {shown}).\n"
                               "Resume with that config, pass --allow-config-change to load it anyway, or start "
                               "a new --output-dir.")

    def _move_into_place(self, c: Candidate) -> Candidate:
        """A checkpoint left complete under its temporary name: finish the interrupted rename."""
        final = self.dir / c.name
        if c.path == final:
            return c
        if self.accelerator.is_main_process:
            if final.exists():
                shutil.rmtree(final)
            os.replace(c.path, final)
        self.accelerator.wait_for_everyone()
        logger.info("checkpoint %s was complete under its temporary name %s (interrupted between two renames); "
                    "moved into place", final, c.path.name)
        return Candidate(final, c.name, c.progress, c.manifest)

    def _load(self, c: Candidate) -> dict:
        load_training_state(self.accelerator, c.path)
        return read_json(c.path / TRAINER_STATE)

    def start(self, resume: str, allow_config_change: bool = False) -> tuple[dict, Path] | None:
        """Apply a run's ``resume`` setting; ``(trainer_state, path)`` to continue from, or None to start fresh.

        ``never``: start fresh, removing earlier checkpoints of this run; ``auto``: the newest
        complete checkpoint if there is one; ``latest``: the same, an error if there is none;
        anything else: that checkpoint folder.
        """
        if resume == "never":
            if self.clear():
                logger.info("resume never: earlier checkpoints under %s removed; starting from scratch", self.dir)
            return None
        got = self.resume("latest" if resume in ("auto", "latest") else resume, allow_config_change)
        if got is None and resume == "latest":
            raise ConfigError(f"field 'resume': latest: no complete checkpoint under {self.dir}")
        return got

    def resume(self, which: str = "latest", allow_config_change: bool = False) -> tuple[dict, Path] | None:
        """Load a checkpoint; returns ``(trainer_state, path)`` or None when there is nothing to resume.

        ``which``: ``"latest"`` (the newest complete checkpoint; a damaged one is named
        in a warning and the previous one is tried) or a checkpoint folder.
        """
        if which != "latest":
            path = Path(which)
            manifest, problem = _manifest_problem(path) if path.is_dir() else (None, "no such folder")
            if manifest is None:
                raise ConfigError(f"field 'resume': {path} is not a complete checkpoint: {problem}")
            m = CHECKPOINT_NAME.fullmatch(path.name)
            c = Candidate(path, m.group(0).strip(".") if m else path.name, int(manifest.get("progress", 0)), manifest)
            self._check_identity(c, allow_config_change)
            state = self._load(c)
            logger.info("resumed from %s", path)
            return state, path
        candidates = self.scan()
        self.accelerator.wait_for_everyone()   # every process has scanned before any rename
        for i, c in enumerate(candidates):
            self._check_identity(c, allow_config_change)
            c = self._move_into_place(c)
            try:
                state = self._load(c)
            except Exception as exc:  # noqa: BLE001 - any failure to load means: use the previous one
                nxt = candidates[i + 1].path if i + 1 < len(candidates) else None
                logger.warning("checkpoint %s could not be loaded (%s: %s); %s", c.path, type(exc).__name__,
                               str(exc).splitlines()[0] if str(exc) else "", f"using {nxt}" if nxt else
                               "no older checkpoint: starting from scratch")
                continue
            logger.info("resumed from %s (newest complete checkpoint of %d)", c.path, len(candidates))
            return state, c.path
        return None


def fused_adamw(param_groups, **kwargs) -> torch.optim.AdamW:
    """AdamW with its fused kernel (one pass over each tensor per step) where torch has one for these parameters.

    The same update as the default per-tensor loop (about ten elementwise ops per parameter tensor), at a
    fraction of the cost on CPU: measured on all-MiniLM-L6-v2, 1 thread, 0.17 s -> 0.03 s of CPU time per step
    against 0.56 s of forward + backward (``docs/finetune_speed.md``); on the graph model (14.4M parameters,
    amsgrad, 2 threads) 32 -> 7 ms per step (``docs/graph_speed.md``). torch before 2.4 has no CPU kernel and
    refuses ``fused=True`` for CPU parameters: then the default loop. Used by the fine-tuning and graph
    stages (HRG-SSA keeps the plain loop: its seeded figures were measured with it).
    """
    param_groups = list(param_groups)      # tried twice: a generator would be spent by the first try
    try:
        return torch.optim.AdamW(param_groups, fused=True, **kwargs)
    except RuntimeError:
        return torch.optim.AdamW(param_groups, **kwargs)
