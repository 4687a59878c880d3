"""What a run is: its identity, its best epoch, its seed summary, and (for the pipeline) its stage spec.

Light on purpose (no torch, no accelerate): the pipeline and the stage specs import
it at ``--help`` time. The Accelerate side of the harness is :mod:`erc.core.harness`.

Run identity
------------
A run folder holds ``run.json``: the stage, the *identity* of the run (the resolved
config without the fields that do not change what the run computes, such as
``output_dir`` or ``num_threads``) and a fingerprint (size + modification time)
of every input file or folder the config names. Resuming into the folder, or
skipping it as complete, requires the same identity; anything else stops before
a file is written, naming the fields and inputs that changed and the two ways
out (``--overwrite`` clears the folder, or a new ``--output-dir``).
Each stage says what its identity is with an :class:`IdentityRule`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from erc.core.config import ConfigError
from erc.core.io import read_json, write_json

IDENTITY_FILE = "run.json"
# Fields of every stage that say where or how fast a run goes, never what it computes.
COMMON_IGNORE = frozenset({"output_dir", "overwrite", "resume", "num_threads", "threads", "report_to",
                           "progress", "plots", "allow_config_change"})


# `report_to` of every training command: Accelerate's trackers (one name, "all", or "none")
REPORT_TO = ("none", "all", "tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive")
REPORT_TO_HELP = ("experiment tracker for every epoch's metrics and the resolved config (Accelerate "
                  "log_with; logs under output_dir/logs): none, all, tensorboard, wandb, mlflow, ...")
OVERWRITE_HELP = ("clear output_dir first when it holds another run (a different config or different "
                  "input files); without it such a folder is refused")
ALLOW_CONFIG_CHANGE_HELP = ("resume from a checkpoint whose stored config differs from this one "
                            "(its optimizer state, learning rate included, is loaded as saved)")


class RunMismatchError(ConfigError):
    """An output folder holds another run (different config or inputs) than the one asked for."""


# ----------------------------------------------------------------------------- identity
def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data": {"path": p}}`` -> ``{"data.path": p}``; lists and scalars are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, name + "."))
        else:
            out[name] = list(v) if isinstance(v, tuple) else v
    return out


def config_dict(cfg: Any) -> dict[str, Any]:
    """A (possibly nested) config dataclass or dict as a plain dict."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return dict(cfg)


def path_fingerprint(value: Any) -> dict | None:
    """Size and modification time of a file, or of every file under a folder; None if not a path."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return None
    p = Path(value)
    if not p.exists():
        return None
    if p.is_file():
        st = p.stat()
        return {"kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    h = hashlib.sha256()
    n, total = 0, 0
    for root, dirs, files in os.walk(p):
        dirs.sort()
        for name in sorted(files):
            f = Path(root, name)
            st = f.stat()
            h.update(f"{f.relative_to(p)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            n, total = n + 1, total + st.st_size
    return {"kind": "folder", "files": n, "size": total, "digest": h.hexdigest()[:16]}


def _describe(fp: dict | None, times: bool = False) -> str:
    if fp is None:
        return "absent"
    if fp["kind"] == "file":
        if times and "mtime_ns" in fp:
            stamp = _dt.datetime.fromtimestamp(fp["mtime_ns"] / 1e9, _dt.timezone.utc)
            return f"{fp['size']} bytes modified {stamp:%Y-%m-%d %H:%M:%S} UTC"
        return f"{fp['size']} bytes"
    if times:
        return f"{fp['files']} files, {fp['size']} bytes, listing digest {fp.get('digest', '?')} (sizes and times)"
    return f"{fp['files']} files, {fp['size']} bytes"


@dataclass
class RunIdentity:
    """The config fields and input fingerprints that make a run this run."""

    stage: str
    config: dict[str, Any]                       # flat; only the fields that change results
    inputs: dict[str, Any] = field(default_factory=dict)   # field -> {"path", "fingerprint"}

    @property
    def fingerprint(self) -> str:
        blob = json.dumps({"stage": self.stage, "config": self.config, "inputs": self.inputs},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {"stage": self.stage, "fingerprint": self.fingerprint, "config": self.config, "inputs": self.inputs}

    @classmethod
    def from_json(cls, data: Mapping) -> "RunIdentity":
        return cls(stage=str(data.get("stage", "")), config=dict(data.get("config") or {}),
                   inputs=dict(data.get("inputs") or {}))

    def config_changes(self, other: "RunIdentity") -> list[str]:
        """``field old -> new`` for every config field that differs (this = recorded, other = asked)."""
        out = []
        for k in sorted(set(self.config) | set(other.config)):
            a, b = self.config.get(k, "(absent)"), other.config.get(k, "(absent)")
            if json.dumps(a, default=str) != json.dumps(b, default=str):
                out.append(f"{k} {a!r} -> {b!r}")
        return out

    def input_changes(self, other: "RunIdentity") -> list[str]:
        out = []
        for k in sorted(set(self.inputs) | set(other.inputs)):
            a, b = self.inputs.get(k) or {}, other.inputs.get(k) or {}
            if a.get("path") == b.get("path") and a.get("fingerprint") != b.get("fingerprint"):
                then, now = _describe(a.get("fingerprint")), _describe(b.get("fingerprint"))
                if then == now:        # same size: the modification time (a copy, a checkout, a touch) differs
                    then, now = _describe(a.get("fingerprint"), times=True), _describe(b.get("fingerprint"), times=True)
                out.append(f"{k} {b.get('path')} changed ({then} then, {now} now)")
        return out

    def changes(self, other: "RunIdentity") -> list[str]:
        if self.stage != other.stage:
            return [f"stage {self.stage!r} -> {other.stage!r}"]
        return self.config_changes(other) + self.input_changes(other)


@dataclass(frozen=True)
class IdentityRule:
    """What makes two runs of a stage the same run.

    ``ignore``: flat field names that do not change what the run computes (on top of
    :data:`COMMON_IGNORE`); ``inputs``: flat field names whose values are input files or
    folders (a list of paths is fine); ``extra(cfg, num_processes)``: derived fields
    (e.g. the global batch size) that join the identity; ``added``: ``(flat name, default)``
    of fields added after runs were recorded, left out while at that default, so that a run
    recorded before the field existed is still the same run.
    """

    ignore: frozenset[str] = frozenset()
    inputs: tuple[str, ...] = ()
    extra: Callable[[Any, int], dict] | None = None
    added: tuple[tuple[str, Any], ...] = ()

    def comparable(self, flat: dict, keep: frozenset[str] = frozenset()) -> dict:
        """``flat`` (a flattened config) without the fields that do not change what a run computes (``ignore``
        and :data:`COMMON_IGNORE`, by full or last name, less ``keep``) and without the ``added`` fields at their
        defaults."""
        skip = (COMMON_IGNORE | self.ignore) - keep
        at_default = {k for k, default in self.added if flat.get(k) == default}
        return {k: v for k, v in flat.items()
                if k not in skip and k.split(".")[-1] not in skip and k not in at_default}

    def identity(self, stage: str, cfg: Any, num_processes: int = 1) -> RunIdentity:
        flat = flatten(config_dict(cfg))
        config = self.comparable(flat)
        if self.extra is not None:
            config.update(self.extra(cfg, num_processes))
        inputs = {}
        for name in self.inputs:
            value = flat.get(name)
            paths = value if isinstance(value, list) else [value]
            for i, p in enumerate(paths):
                fp = path_fingerprint(p)
                if fp is not None:
                    inputs[name if len(paths) == 1 else f"{name}[{i}]"] = {"path": str(p), "fingerprint": fp}
        return RunIdentity(stage, config, inputs)


def read_identity(run_dir: str | Path) -> RunIdentity | None:
    """The identity recorded in ``run_dir/run.json``, None when there is none."""
    path = Path(run_dir) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        return RunIdentity.from_json(read_json(path))
    except (ValueError, OSError) as exc:
        raise RunMismatchError(f"{path}: unreadable run record ({exc}); use --overwrite to clear "
                               f"{run_dir}, or choose a new --output-dir") from None


def mismatch_message(run_dir: str | Path, recorded: RunIdentity, asked: RunIdentity) -> str:
    changes = recorded.changes(asked)
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    return (f"{run_dir} holds another {recorded.stage} run (changed: {shown}).\n"
            f"Use --overwrite to clear that folder, or choose a new --output-dir.")


def _entries(run_dir: Path) -> list[Path]:
    return sorted(run_dir.iterdir()) if run_dir.is_dir() else []


def check_run_dir(run_dir: str | Path, identity: RunIdentity, overwrite: bool,
                  adoptable: Iterable[str] = ("checkpoints",)) -> str:
    """Decide, without writing, what a run into ``run_dir`` does: ``new``, ``same`` or ``clear``.

    ``same``: the folder holds this run (resume or skip). ``new``: nothing there, or only
    entries named in ``adoptable`` (checkpoints copied in to resume from; each checkpoint
    checks its own stored config). ``clear``: ``overwrite`` was given and the folder holds
    a run (recorded or with a ``config.yaml``). Anything else raises
    :class:`RunMismatchError` with the 2-line message.
    """
    run_dir = Path(run_dir)
    recorded = read_identity(run_dir)
    entries = _entries(run_dir)
    if not entries:
        return "new"
    if overwrite:
        if recorded is None and not (run_dir / "config.yaml").is_file():
            raise RunMismatchError(f"{run_dir} holds files that are not a run of this toolkit (no "
                                   f"{IDENTITY_FILE}, no config.yaml); --overwrite will not delete them.\n"
                                   "Choose a new --output-dir.")
        return "clear"
    if recorded is None:
        if all(p.name in set(adoptable) for p in entries):
            return "new"
        raise RunMismatchError(f"{run_dir} holds files but no {IDENTITY_FILE} (another program's output, or a run "
                               "of an older version).\nUse --overwrite to clear that folder, or choose a new "
                               "--output-dir.")
    if recorded.fingerprint != identity.fingerprint:
        raise RunMismatchError(mismatch_message(run_dir, recorded, identity))
    return "same"


def clear_run_dir(run_dir: str | Path) -> None:
    """Delete everything inside ``run_dir`` (the folder itself stays)."""
    for p in _entries(Path(run_dir)):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def record_identity(run_dir: str | Path, identity: RunIdentity) -> None:
    write_json(Path(run_dir) / IDENTITY_FILE, identity.to_json())


# ----------------------------------------------------------------------------- selection
def select_best(scores: Sequence[float | None], higher_is_better: bool = True) -> int:
    """Index of the first epoch with the best validation score (NaN and None never win).

    A pure function of the validation scores, so test scores cannot enter it.
    Raises ValueError when no score is finite.
    """
    best, best_i = None, -1
    for i, s in enumerate(scores):
        if s is None or math.isnan(s):
            continue
        if best is None or (s > best if higher_is_better else s < best):
            best, best_i = s, i
    if best_i < 0:
        raise ValueError("no finite validation score to select an epoch from")
    return best_i


# ----------------------------------------------------------------------------- seeds
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std: no values")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def summarize_seeds(per_seed: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, dict]:
    """``{key: {"mean", "std", "values"}}`` over the seeds that have a (non-None) value for ``key``.

    Keys that no seed has are left out. Std is the sample std (see :func:`mean_std`).
    """
    out: dict[str, dict] = {}
    for k in keys:
        vals = [float(r[k]) for r in per_seed if r.get(k) is not None]
        if vals:
            mean, std = mean_std(vals)
            out[k] = {"mean": mean, "std": std, "values": vals}
    return out


def summarize_split_seeds(results: Sequence[Mapping[str, Any]], keys: Iterable[str],
                          splits: Sequence[str] = ("test", "valid")) -> dict[str, float]:
    """``{split}_{metric}_mean`` / ``_std`` (sample std) over seeds of each seed's metrics at its best epoch
    (``results[i][split]``): the run summary every multi-seed stage writes into ``results.json``."""
    keys = tuple(keys)
    out: dict[str, float] = {}
    for split in splits:
        for k, v in summarize_seeds([r.get(split) or {} for r in results], keys).items():
            out[f"{split}_{k}_mean"], out[f"{split}_{k}_std"] = v["mean"], v["std"]
    return out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB; Linux reports ``ru_maxrss`` in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- pipeline stages
def format_cell(x: Any) -> str:
    """A number for a Markdown table: 3 decimals for floats, '-' for missing."""
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def seed_results_lines(title: str, intro: Sequence[str], results: Mapping[str, Any], keys: Sequence[str],
                       files: Mapping[str, str]) -> list[str]:
    """Summary lines of a multi-seed stage: a heading, ``intro`` lines, a ``| metric | mean | std |``
    table of ``keys`` read from ``results`` (``{key}_mean`` / ``{key}_std``), and links to ``files``."""
    lines = [f"## {title}", "", *intro, "", "| metric | mean | std |", "|---|---|---|"]
    for key in keys:
        if f"{key}_mean" in results:
            lines.append(f"| {key} | {format_cell(results[key + '_mean'])} | {format_cell(results.get(key + '_std'))} |")
    lines += ["", "Files: " + ", ".join(f"[{name}]({target})" for name, target in files.items()) + ".", ""]
    return lines


def seed_run_outputs(output_dir: str | Path) -> dict[str, Path]:
    """The files a multi-seed training stage (train-graph, train-hrg) writes into ``output_dir``."""
    d = Path(output_dir)
    return {"results": d / "results.json", "epochs": d / "epochs.csv"}


def seed_run_summary(output_dir: str | Path, link: Callable[[Path], str], title: str, keys: Sequence[str],
                     intro: Callable[[Mapping[str, Any]], list[str]]) -> list[str]:
    """:func:`seed_results_lines` of the run in ``output_dir`` (no lines before its results exist);
    ``intro(results)`` gives the lines under the heading."""
    out = seed_run_outputs(output_dir)
    if not out["results"].is_file():
        return []
    r = read_json(out["results"])
    return seed_results_lines(title, intro(r), r, keys,
                              {"results.json": link(out["results"]), "epochs.csv": link(out["epochs"])})


def _no_summary(cfg: Any, link: Callable[[Path], str]) -> list[str]:
    return []


@dataclass(frozen=True)
class StageSpec:
    """What the pipeline needs to know about a stage, declared by the stage itself.

    ``run`` is ``"module:function"`` (imported when the stage runs, so declaring a
    stage stays cheap); ``place(folder)`` gives the config values that put the stage's
    outputs into ``folder``; ``outputs(cfg)`` names the files that, with the pipeline's
    completion marker, make the stage complete; ``summary(cfg, link)`` returns Markdown
    lines for the pipeline's summary (``link(path)``: the path relative to the summary);
    ``main_process_only``: stages that do not use Accelerate run on the main process;
    ``takes_command``: the run function accepts ``command=`` (shown in its report).
    """

    name: str
    config_class: type
    run: str
    identity_rule: IdentityRule
    place: Callable[[Path], dict[str, Any]]
    outputs: Callable[[Any], dict[str, Path]]
    summary: Callable[[Any, Callable[[Path], str]], list[str]] = _no_summary
    main_process_only: bool = False
    takes_command: bool = False

    def run_function(self) -> Callable[..., Any]:
        import importlib

        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)

    def identity(self, cfg: Any, num_processes: int = 1) -> RunIdentity:
        return self.identity_rule.identity(self.name, cfg, num_processes)

    def is_complete(self, cfg: Any) -> bool:
        return all(p.exists() for p in self.outputs(cfg).values())
