"""The cells of a benchmark and what each will do, decided before anything runs.

A cell is one (dataset, modality variant, text features, method entry): one multi-seed run of the
method's stage in ``output_dir/cells/<dataset>/<features>/<modalities>/<method>/run/``. Its stage
config is, from bottom to top: the method's registry base, the entry's per-dataset base YAML, the
entry's overrides, then what the benchmark imposes on every cell alike: the dataset's split fields
(:data:`SPLIT_FIELDS`, from the dataset entry or the data defaults, never from a method), the
modalities, the text features (for methods that read them), ``seed``, ``seeds``,
``selection_metric``, ``output_dir`` and ``resume: auto``. Overrides that set an imposed field
are refused.

Each cell is planned against its folder with the stage's own run identity
(:mod:`erc.core.runs`): ``skip`` (complete: the benchmark's ``cell.json`` marker written after
the stage finished, with the same resolved config up to the fields that do not change what the run
computes (its identity's ``ignore``: threads, checkpointing, memory modes), and the stage's outputs
present), ``resume``
(the same run, unfinished: the stage continues from its newest checkpoint; more epochs or seeds
extend a finished one), ``run`` (nothing there yet); a folder with another identity (config or input
files changed) is refused, all such cells in one message.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from erc.benchmark.config import BenchmarkConfig, DatasetEntry, MethodEntry
from erc.benchmark.registry import METHODS, Method, config_fields
from erc.core.config import ConfigError, config_from_dict, config_to_dict, merge_values
from erc.core.io import read_json
from erc.core.runs import (IdentityRule, RunMismatchError, check_run_dir, flatten, read_identity,
                           seed_run_outputs)
from erc.data.config import DialogueDataConfig

SPLIT_FIELDS = ("dataset", "path", "valid_fraction", "split_seed", "synthetic_dialogues", "synthetic_seed")
MARKER = "cell.json"          # written by the benchmark when a cell's stage has finished
ATTEMPTS = "attempts.json"    # one entry per child process that ran the cell (wall time, peak RSS, exit code)
RUN = "run"                   # the stage's own output_dir inside the cell folder


@dataclass
class Cell:
    method: str            # method entry name (a table row)
    dataset: str           # dataset entry name
    features: str          # features entry name, or the method's text label (it reads its own text)
    modalities: str        # modality variant name
    spec: Method
    config: Any            # the stage config, resolved
    folder: Path

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.features, self.modalities, self.method)

    @property
    def label(self) -> str:
        return "/".join(self.key)

    @property
    def run_dir(self) -> Path:
        return self.folder / RUN

    def config_dict(self) -> dict:
        """The resolved stage config as JSON holds it (lists, not tuples)."""
        return json.loads(json.dumps(config_to_dict(self.config), default=str))


@dataclass
class CellPlan:
    cell: Cell
    action: str            # skip | resume | run
    reason: str = ""


def _imposed(cfg: BenchmarkConfig, cls: type, run_dir: Path) -> dict:
    values = {"seed": cfg.seed, "seeds": cfg.seeds, "selection_metric": cfg.selection_metric,
              "output_dir": str(run_dir), "resume": "auto", "progress": False}
    if cfg.num_threads:
        values["num_threads"] = cfg.num_threads
    names = config_fields(cls)
    missing = {"seed", "seeds", "output_dir"} - names
    if missing:
        raise ConfigError(f"{cls.__name__}: a benchmark method's config needs fields {sorted(missing)}")
    return {k: v for k, v in values.items() if k in names}


def _split_values(entry: DatasetEntry) -> dict:
    defaults = DialogueDataConfig(dataset=entry.data.get("dataset", entry.name))
    return {k: entry.data.get(k, getattr(defaults, k)) for k in SPLIT_FIELDS}


def _check_overrides(entry: MethodEntry, spec: Method) -> None:
    imposed = {"seed", "seeds", "selection_metric", "output_dir", "resume",
               *(f"data.{k}" for k in SPLIT_FIELDS), "data.modalities"}
    if spec.text_features:
        imposed |= {f"data.{k}" for k in ("text_source", "text_embeddings")}
    imposed |= set(flatten(spec.fixed))
    bad = sorted(k for k in flatten(entry.overrides) if k in imposed)
    if bad:
        raise ConfigError(f"methods.{entry.name}.overrides: {', '.join(bad)} set by the benchmark for every cell "
                          "alike (seeds, split, modalities, features) or by the method itself; set them at the "
                          "benchmark's top level or in the dataset entry, or choose another method")


def cell_config(cfg: BenchmarkConfig, entry: MethodEntry, dataset: DatasetEntry, features: str | None,
                variant: str, run_dir: Path) -> Any:
    """The stage config of one cell (module docstring: what comes from where)."""
    spec = METHODS[entry.method]
    _check_overrides(entry, spec)
    mods = cfg.modality_variants()[variant]
    registry_name = dataset.data.get("dataset", dataset.name)
    values = merge_values(spec.base(registry_name, mods), entry.base_values(dataset.name))
    values = merge_values(merge_values(values, entry.overrides), spec.fixed)
    data = {**(values.get("data") or {}), **dataset.data, **_split_values(dataset), "modalities": mods}
    if spec.text_features:
        feats = dataset.features[features]
        data.update({"text_source": "auto", "text_embeddings": None, **feats})   # nothing of the base's text
    values["data"] = data
    values.update(_imposed(cfg, spec.stage.config_class, run_dir))
    where = f"benchmark cell {dataset.name}/{features or spec.text_label}/{variant}/{entry.name}"
    return config_from_dict(spec.stage.config_class, values, where)


def cells(cfg: BenchmarkConfig) -> list[Cell]:
    """Every cell, in table order: dataset, modality variant, features, method entry."""
    out = []
    root = Path(cfg.output_dir) / "cells"
    methods, datasets = cfg.method_entries(), cfg.dataset_entries()
    for dname, dataset in datasets.items():
        for variant in dataset.modalities:
            done_textless = set()
            for fname in dataset.features:
                for mname, entry in methods.items():
                    spec = METHODS[entry.method]
                    if not spec.text_features:
                        if mname in done_textless:
                            continue
                        done_textless.add(mname)
                    feat = fname if spec.text_features else spec.text_label
                    folder = root / dname / feat / variant / mname
                    config = cell_config(cfg, entry, dataset, fname if spec.text_features else None, variant,
                                         folder / RUN)
                    out.append(Cell(mname, dname, feat, variant, spec, config, folder))
    _check_same_split(out)
    return out


def _check_same_split(all_cells: list[Cell]) -> None:
    """Every cell of a dataset has the same split fields and seeds (what the protocol promises)."""
    seen: dict[str, tuple] = {}
    for c in all_cells:
        data = c.config_dict()["data"]
        sig = (tuple(data.get(k) for k in SPLIT_FIELDS), c.config.seed, c.config.seeds)
        first = seen.setdefault(c.dataset, sig)
        if sig != first:
            raise ConfigError(f"benchmark: cell {c.label} would not share the split/seeds of the other "
                              f"{c.dataset} cells ({sig} vs {first})")


def stage_finished(cell: Cell) -> bool:
    """The stage's outputs are there and its ``results.json`` holds every seed, each trained to its last epoch
    (a time-boxed run, e.g. train-hrg's ``stop_after_epochs``, writes results before it has finished)."""
    if not cell.spec.stage.is_complete(cell.config):
        return False
    per_seed = read_json(seed_run_outputs(cell.run_dir)["results"]).get("per_seed", [])
    epochs = getattr(cell.config, "epochs", None)
    return len(per_seed) >= cell.config.seeds and all(
        r.get("finished", True) and (epochs is None or r.get("epochs_run", epochs) >= epochs) for r in per_seed)


#: Fields of a stage's identity ``ignore`` that make a run longer (more epochs or seeds extend it) rather than
#: leave it as it is: a cell's marker must match them, so a finished cell asked for more resumes.
EXTENDING = frozenset({"epochs", "seeds", "epochs_full", "stop_after_epochs"})


def _comparable(config: Any, rule: IdentityRule) -> Any:
    """A cell config, flat, as the marker comparison sees it: :meth:`IdentityRule.comparable` keeping
    :data:`EXTENDING` (so a finished cell asked for more epochs or seeds resumes). Fields that do not change what
    the run computes (e.g. ``recompute_graphs``, added after cells were finished, or another ``num_threads``) and
    later-added fields at their defaults are left out: a marker written before such a field existed still matches."""
    return rule.comparable(flatten(config), keep=EXTENDING) if isinstance(config, dict) else config


def is_complete(cell: Cell) -> bool:
    """The marker says the stage finished with this very config, and the stage's outputs are there."""
    marker = cell.folder / MARKER
    if not marker.is_file():
        return False
    rule = cell.spec.stage.identity_rule
    recorded = _comparable(read_json(marker).get("config"), rule)
    return recorded == _comparable(cell.config_dict(), rule) and cell.spec.stage.is_complete(cell.config)


def _missing_inputs(cell: Cell) -> list[str]:
    """Input files the cell's config names that do not exist (a placeholder path not filled in yet)."""
    flat = flatten(cell.config_dict())
    paths = [flat.get(k) for k in cell.spec.stage.identity_rule.inputs]
    return [str(p) for p in paths if isinstance(p, str) and p and not p.startswith("builtin:") and not Path(p).exists()]


def plan(cfg: BenchmarkConfig) -> list[CellPlan]:
    """Every cell's action; raises RunMismatchError naming every cell whose folder holds another run."""
    out, problems = [], []
    for cell in cells(cfg):
        identity = cell.spec.stage.identity(cell.config)
        try:
            status = check_run_dir(cell.run_dir, identity, overwrite=False)
        except RunMismatchError:
            recorded = read_identity(cell.run_dir)
            changes = recorded.changes(identity) if recorded else ["its folder has files but no run.json"]
            problems.append(f"{cell.label} ({'; '.join(changes[:4])}{' ...' if len(changes) > 4 else ''})")
            continue
        if status == "same" and is_complete(cell):
            out.append(CellPlan(cell, "skip", "complete, same config and inputs"))
        elif status == "same":
            out.append(CellPlan(cell, "resume", "unfinished (or extended): continues from its checkpoints"))
        else:
            out.append(CellPlan(cell, "run", "new"))
        missing = _missing_inputs(cell)
        if missing and out[-1].action != "skip":
            out[-1].reason += f"; MISSING input {', '.join(missing)}: this cell will fail"
    if problems:
        raise RunMismatchError(
            f"{cfg.output_dir} holds cells of another benchmark: {'; '.join(problems)}.\n"
            "Delete those cell folders to redo them, or choose a new --output-dir.")
    return out


def format_plan(plans: list[CellPlan]) -> str:
    width = max((len(p.cell.label) for p in plans), default=10)
    lines = [f"benchmark plan: {len(plans)} cell(s), "
             + ", ".join(f"{sum(p.action == a for p in plans)} {a}" for a in ("run", "resume", "skip"))]
    lines += [f"  {p.action:<6} {p.cell.label:<{width}}  ({p.cell.spec.stage.name}; {p.reason})" for p in plans]
    return "\n".join(lines)
