"""``cli.py pipeline``: finetune -> embed -> train-graph -> compare in one run directory.

Each stage declares itself (:class:`erc.core.runs.StageSpec` in ``erc/<stage>/stage.py``:
config class, run function, where its outputs go, which files make it complete,
its summary lines); this module only chains them (which output of one stage feeds
which field of the next) and knows none of their file names.

Each stage runs in ``output_dir/<stage>/``; its ``run.json`` records the stage's run
identity (config and input files) and ``stage_complete.json`` marks it finished. Before
anything is written, every stage is planned: a complete stage whose identity is unchanged
is skipped; an unfinished one resumes (the training stages from their newest
checkpoint); a stage whose inputs are redone in this run (``--force STAGE``, or an
unfinished stage upstream) is redone; a stage folder that holds another config or other
inputs stops the pipeline with a message naming the changes and the ways out
(``--force STAGE``, ``--overwrite`` for the whole folder, or a new ``--output-dir``).

Under ``accelerate launch`` every process runs the pipeline: the training
stages (finetune, train-graph) share the work through Accelerate; embedding
and the comparison run on the main process while the others wait.
"""
from __future__ import annotations

import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erc.compare.stage import COMPARE
from erc.core.cli import add_stage_command
from erc.core.config import ConfigError, config_from_dict, merge_values, save_config
from erc.core.io import atomic_write_text, write_json
from erc.core.logs import setup_logging
from erc.core.runs import (
    RunMismatchError,
    StageSpec,
    check_run_dir,
    clear_run_dir,
    read_identity,
    record_identity,
)
from erc.graph.stage import TRAIN_GRAPH
from erc.hrg.stage import TRAIN_HRG
from erc.vad.stage import EMBED, FINETUNE

logger = logging.getLogger(__name__)

SPECS: dict[str, StageSpec] = {s.name: s for s in (FINETUNE, EMBED, TRAIN_GRAPH, COMPARE, TRAIN_HRG)}
STAGES = tuple(SPECS)
DEFAULT_STAGES = ("finetune", "embed", "train-graph", "compare")   # train-hrg runs when listed
# which stages' outputs each stage reads (the chaining below); redoing one redoes its readers
USES = {"finetune": (), "embed": ("finetune",), "train-graph": ("embed",), "compare": ("finetune",),
        "train-hrg": ()}
MARKER = "stage_complete.json"


def _graph_defaults() -> dict:
    # Small enough for the Quickstart (2 CPU cores, minutes); the published settings are in configs/graph_*.yaml.
    return {"epochs": 15, "hidden_dim": 64, "layers": [2, 2, 2], "win_p": 4, "win_f": 4, "shift_win": 4,
            "lr": 1.0e-3, "batch_size": 8, "seeds": 3, "data": {"modalities": ["text", "audio", "visual"]}}


def _compare_defaults() -> dict:
    # Synthetic: the fine-tuned model validated on session 4, so the comparison tests on session 5.
    # Forest grid: 50 trees, unlimited depth, leaf 1 or 10 (2 candidates x 3 folds + refit per search);
    # on the Quickstart this keeps every forest metric within seed noise of 100 trees x depth {0, 8}.
    return {"data": {"test_sessions": [5]}, "forest_n_estimators": [50], "forest_max_depth": [0],
            "forest_min_samples_leaf": [1, 10], "tsne_max_points": 600}


@dataclass
class PipelineConfig:
    """The whole pipeline. Stage sections (named like the stage's folder: ``finetune``, ``embed``,
    ``train_graph``, ``compare``) hold that stage's own config in its YAML form, ``data:`` section
    included (FinetuneConfig, EmbedConfig, GraphTrainConfig, CompareConfig); the pipeline sets
    the fields that chain the stages (output dirs, model folder, embeddings file)."""

    output_dir: str = field(default="runs/pipeline", metadata={"help": "run directory (one sub-folder per stage)"})
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES), metadata={
        "help": f"stages to run, in order, from {', '.join(STAGES)} (train-hrg: HRG-SSA, a stage of its own "
                "reading the train_hrg section)", "choices": STAGES})
    force: list[str] = field(default_factory=list, metadata={
        "help": "stages to redo from scratch even if complete (their folders are deleted first; "
                "the stages that use their outputs are redone too)", "choices": STAGES})
    overwrite: bool = field(default=False, metadata={
        "help": "clear output_dir first (when it holds stages of another config; without it they are refused)"})
    synthetic_dialogues: int = field(default=60, metadata={
        "help": "size of the built-in synthetic corpus, the same for every stage"})
    model: str = field(default="", metadata={
        "help": "base encoder (Hub name or local folder) for fine-tuning and for the comparison's zero-shot "
                "setting; overrides the model of both sections (empty: the sections' own)"})
    finetune: dict = field(default_factory=lambda: {"epochs": 4}, metadata={
        "cli": False, "help": "FinetuneConfig fields"})
    embed: dict = field(default_factory=dict, metadata={"cli": False, "help": "EmbedConfig fields"})
    train_graph: dict = field(default_factory=_graph_defaults, metadata={
        "cli": False, "help": "GraphTrainConfig fields"})
    graph_variants: dict = field(default_factory=dict, metadata={
        "cli": False, "help": "more train-graph runs on the same embeddings, each in train_graph_<name>/: "
                              "name -> GraphTrainConfig fields that override the train_graph section "
                              "(merged into it; e.g. text_timing: {data: {modalities: [text, timing]}})"})
    compare: dict = field(default_factory=_compare_defaults, metadata={
        "cli": False, "help": "CompareConfig fields"})
    train_hrg: dict = field(default_factory=dict, metadata={"cli": False, "help": "HRGTrainConfig fields"})


VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")


def stage_dir(cfg: PipelineConfig, stage: str, variant: str | None = None) -> Path:
    """``output_dir/<stage>/``; a graph variant runs in ``output_dir/train_graph_<variant>/``."""
    return Path(cfg.output_dir) / (stage.replace("-", "_") + (f"_{variant}" if variant else ""))


def units(cfg: PipelineConfig) -> list[tuple[str, str | None]]:
    """What runs, in order: ``(stage, variant)``; variant None is the stage's own section, and
    train-graph is followed by one unit per entry of ``graph_variants``."""
    out: list[tuple[str, str | None]] = []
    for name in cfg.stages:
        out.append((name, None))
        if name == "train-graph":
            out += [(name, v) for v in cfg.graph_variants]
    return out


def unit_label(stage: str, variant: str | None) -> str:
    return stage if variant is None else f"{stage}[{variant}]"


# ----- stage configs (the chaining is here, in one place) -------------------------------------

def finetune_config(cfg: PipelineConfig):
    sec = cfg.finetune
    # resume auto: an interrupted fine-tuning run continues from its newest checkpoint (same identity only)
    values = {"resume": "auto", **sec,
              "data": {"synthetic_dialogues": cfg.synthetic_dialogues, **(sec.get("data") or {})},
              **({"model": cfg.model} if cfg.model else {}),
              **FINETUNE.place(stage_dir(cfg, "finetune"))}
    return config_from_dict(FINETUNE.config_class, values, "pipeline section 'finetune'")


def embed_config(cfg: PipelineConfig):
    g = cfg.train_graph.get("data") or {}
    values = {"dataset": g.get("dataset", "synthetic"), "path": g.get("path"),
              "synthetic_dialogues": g.get("synthetic_dialogues", cfg.synthetic_dialogues),
              **cfg.embed,
              "model": str(FINETUNE.outputs(finetune_config(cfg))["model"]),
              **EMBED.place(stage_dir(cfg, "embed"))}
    return config_from_dict(EMBED.config_class, values, "pipeline section 'embed'")


def graph_config(cfg: PipelineConfig, variant: str | None = None):
    """The train_graph section, or a ``graph_variants`` entry merged into it (its own folder)."""
    sec, where = cfg.train_graph, "pipeline section 'train_graph'"
    if variant is not None:
        if variant not in cfg.graph_variants:
            raise ConfigError(f"graph_variants: no variant {variant!r}; defined: {', '.join(cfg.graph_variants) or 'none'}")
        over = cfg.graph_variants[variant] or {}
        if not isinstance(over, dict):
            raise ConfigError(f"graph_variants.{variant}: expected a mapping of train-graph fields, got {over!r}")
        sec, where = merge_values(sec, over), f"pipeline section 'graph_variants.{variant}' (over 'train_graph')"
    values = {**sec, "data": {"synthetic_dialogues": cfg.synthetic_dialogues, **(sec.get("data") or {}),
                              "text_source": "embeddings",
                              "text_embeddings": str(EMBED.outputs(embed_config(cfg))["embeddings"])},
              **TRAIN_GRAPH.place(stage_dir(cfg, "train-graph", variant))}
    return config_from_dict(TRAIN_GRAPH.config_class, values, where)


def compare_config(cfg: PipelineConfig):
    sec = cfg.compare
    values = {**sec, "data": {"synthetic_dialogues": cfg.synthetic_dialogues, **(sec.get("data") or {})},
              "finetuned": [finetune_config(cfg).output_dir], "train_finetuned": False,
              **({"model": cfg.model} if cfg.model else {}),
              **COMPARE.place(stage_dir(cfg, "compare"))}
    return config_from_dict(COMPARE.config_class, values, "pipeline section 'compare'")


def hrg_config(cfg: PipelineConfig):
    sec = cfg.train_hrg
    values = {**sec, "data": {"synthetic_dialogues": cfg.synthetic_dialogues, **(sec.get("data") or {})},
              **TRAIN_HRG.place(stage_dir(cfg, "train-hrg"))}
    return config_from_dict(TRAIN_HRG.config_class, values, "pipeline section 'train_hrg'")


STAGE_CONFIGS = {"finetune": finetune_config, "embed": embed_config, "train-graph": graph_config,
                 "compare": compare_config, "train-hrg": hrg_config}


def unit_config(cfg: PipelineConfig, stage: str, variant: str | None = None):
    return graph_config(cfg, variant) if variant is not None else STAGE_CONFIGS[stage](cfg)


def check_variants(cfg: PipelineConfig) -> None:
    """Variant names make folder names; variants need the stage they vary."""
    if not isinstance(cfg.graph_variants, dict):
        raise ConfigError(f"graph_variants: expected a mapping name -> train-graph fields, got {cfg.graph_variants!r}")
    for name in cfg.graph_variants:
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise ConfigError(f"graph_variants: variant name {name!r} is not a folder suffix "
                              "(letters, digits and '_', starting with a letter or digit)")
    if cfg.graph_variants and "train-graph" not in cfg.stages:
        raise ConfigError(f"graph_variants ({', '.join(cfg.graph_variants)}) vary train-graph, which is not in "
                          f"stages ({', '.join(cfg.stages)})")


def is_complete(cfg: PipelineConfig, stage: str, stage_cfg: Any = None, variant: str | None = None) -> bool:
    """The stage's marker and every output it declares exist (identity is checked by :func:`plan`)."""
    stage_cfg = stage_cfg if stage_cfg is not None else unit_config(cfg, stage, variant)
    return (stage_dir(cfg, stage, variant) / MARKER).is_file() and SPECS[stage].is_complete(stage_cfg)


# ----- planning ---------------------------------------------------------------------------------

@dataclass
class StagePlan:
    name: str
    config: Any
    action: str           # "skip" (complete, same identity), "run" (new or unfinished), "redo" (clear first)
    reason: str = ""
    variant: str | None = None   # a graph_variants entry (train-graph only)

    @property
    def label(self) -> str:
        return unit_label(self.name, self.variant)


def plan(cfg: PipelineConfig, num_processes: int = 1) -> list[StagePlan]:
    """What each stage will do, decided before anything is written; raises RunMismatchError when a
    stage folder holds another config or other inputs (naming them, and the ways out)."""
    check_variants(cfg)
    plans, redone, problems = [], set(), []
    for name, variant in units(cfg):
        spec, stage_cfg = SPECS[name], unit_config(cfg, name, variant)
        folder = stage_dir(cfg, name, variant)
        upstream = [u for u in USES[name] if u in redone]
        if name in cfg.force:
            p = StagePlan(name, stage_cfg, "redo", "--force", variant)
        elif upstream:
            p = StagePlan(name, stage_cfg, "redo", f"it reads the outputs of {', '.join(upstream)}, which is redone",
                          variant)
        else:
            try:
                status = check_run_dir(folder, spec.identity(stage_cfg, num_processes), overwrite=False)
            except RunMismatchError:
                recorded = read_identity(folder)
                changes = recorded.changes(spec.identity(stage_cfg, num_processes)) if recorded else \
                    ["its folder has files but no run.json"]
                problems.append((name, f"{unit_label(name, variant)} "
                                       f"({'; '.join(changes[:4])}{' ...' if len(changes) > 4 else ''})"))
                continue
            done = status == "same" and is_complete(cfg, name, stage_cfg, variant)
            p = StagePlan(name, stage_cfg, "skip" if done else "run", variant=variant)
        plans.append(p)
        if p.action != "skip":
            redone.add(name)
    if problems:
        names = list(dict.fromkeys(name for name, _ in problems))
        raise RunMismatchError(
            f"{cfg.output_dir} holds stages of another pipeline run: {'; '.join(text for _, text in problems)}.\n"
            f"Use --force {' '.join(names)} to redo them, --overwrite to clear {cfg.output_dir}, "
            "or choose a new --output-dir.")
    return plans


# ----- running --------------------------------------------------------------------------------

def _run_stage(cfg: PipelineConfig, p: StagePlan, state) -> None:
    spec = SPECS[p.name]
    if spec.main_process_only and not state.is_main_process:
        return
    if spec.main_process_only:   # stages without a harness: the pipeline records their identity
        record_identity(stage_dir(cfg, p.name, p.variant), spec.identity(p.config, state.num_processes))
    kwargs = {"command": f"python cli.py pipeline (stage {p.label} of {cfg.output_dir})"} if spec.takes_command else {}
    spec.run_function()(p.config, **kwargs)


def _prepare_folder(cfg: PipelineConfig, plans: list[StagePlan]) -> None:
    """Main process: --overwrite, clear stages to redo, create folders, write the resolved config."""
    out = Path(cfg.output_dir)
    if cfg.overwrite and out.is_dir() and any(out.iterdir()):
        logger.info("--overwrite: clearing %s", out)
        clear_run_dir(out)
    for p in plans:
        folder = stage_dir(cfg, p.name, p.variant)
        if p.action == "redo" and folder.exists():
            logger.info("stage %s: redone (%s): removing %s", p.label, p.reason, folder)
            shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Plan every stage, run those that are not complete, write ``summary.md``; return its path."""
    from accelerate import PartialState   # lazy: this module registers `cli.py pipeline` (fast --help)

    from erc.core.accel import pipeline_owns_process_group, use_cpu_processes

    state = PartialState(cpu=use_cpu_processes())
    setup_logging(state.is_main_process)
    out = Path(cfg.output_dir)
    if cfg.overwrite and out.is_dir() and any(out.iterdir()) and not (out / "config.yaml").is_file():
        raise RunMismatchError(f"{out} holds files that are not a pipeline run (no config.yaml); --overwrite "
                               "will not delete them.\nChoose a new --output-dir.")
    # Resolve every stage config and check every stage folder up front: a typo or a changed config
    # fails now, before anything is written, not after an hour of training.
    if state.num_processes > 1 and "embed" in cfg.stages and embed_config(cfg).cross_fit:
        raise ConfigError("pipeline section 'embed': cross_fit fine-tunes its folds inside the embed stage, "
                          "which runs in one process; launch this pipeline with --num_processes 1")
    if cfg.overwrite:
        check_variants(cfg)
        plans = [StagePlan(n, unit_config(cfg, n, v), "run", variant=v) for n, v in units(cfg)]
    else:
        plans = plan(cfg, state.num_processes)
    if state.is_main_process:
        _prepare_folder(cfg, plans)
    state.wait_for_everyone()
    timings: dict[str, float | str] = {}
    with pipeline_owns_process_group():
        for p in plans:
            folder = stage_dir(cfg, p.name, p.variant)
            if p.action == "skip":
                logger.info("stage %s: complete in %s (same config and inputs), skipped", p.label, folder)
                timings[p.label] = "skipped (complete)"
                continue
            logger.info("stage %s: running into %s", p.label, folder)
            t0 = time.time()
            _run_stage(cfg, p, state)
            state.wait_for_everyone()
            timings[p.label] = time.time() - t0
            if state.is_main_process:
                write_json(folder / MARKER,
                           {"stage": p.name, **({"variant": p.variant} if p.variant else {}),
                            "seconds": timings[p.label],
                            "outputs": {k: str(v) for k, v in SPECS[p.name].outputs(p.config).items()}})
            state.wait_for_everyone()
    summary = out / "summary.md"
    if state.is_main_process:
        atomic_write_text(summary, render_summary(cfg, timings, state.num_processes))
        report = COMPARE.outputs(compare_config(cfg))["report_html"] if "compare" in cfg.stages else "-"
        state.print(f"\npipeline finished: summary {summary}\nreport: {report}")
    state.wait_for_everyone()
    state.destroy_process_group()
    return summary


def render_summary(cfg: PipelineConfig, timings: dict, num_processes: int) -> str:
    """Markdown with links to every stage's results and their headline numbers (lines from each stage)."""
    out = Path(cfg.output_dir)
    lines = [f"# Pipeline summary: `{out}`", "",
             f"Processes: {num_processes}. Stages: {', '.join(cfg.stages)}. Resolved config: [config.yaml](config.yaml).",
             "", "| stage | folder | wall time (s) |", "|---|---|---|"]
    for stage, variant in units(cfg):
        t = timings.get(unit_label(stage, variant), "-")
        rel = stage_dir(cfg, stage, variant).relative_to(out)
        lines.append(f"| {unit_label(stage, variant)} | [{rel}/]({rel}/) | {t if isinstance(t, str) else f'{t:.1f}'} |")
    lines.append("")

    def link(path: Path) -> str:
        return Path(path).relative_to(out).as_posix()

    for stage, variant in units(cfg):
        section = SPECS[stage].summary(unit_config(cfg, stage, variant), link)
        if variant is not None and section and section[0].startswith("## "):
            section = [f"{section[0]}: variant `{variant}`", *section[1:]]
        lines += section
    if "train-graph" in cfg.stages and cfg.graph_variants:
        lines += _graph_runs_table(cfg, link)
    return "\n".join(lines) + "\n"


def _graph_runs_table(cfg: PipelineConfig, link) -> list[str]:
    """The train-graph section and its variants in one ``erc results`` table, and the one validation picks."""
    from erc.core.results import read_run, render

    rows = []
    for stage, variant in units(cfg):
        folder = Path(graph_config(cfg, variant).output_dir) if stage == "train-graph" else None
        if folder is not None and TRAIN_GRAPH.outputs(graph_config(cfg, variant))["results"].is_file():
            rows.append(read_run(folder, f"[{variant or 'train_graph'}]({link(folder)}/)"))
    if not rows:
        return []
    return ["## Graph runs side by side (test at each seed's best validation epoch)", "",
            *render(rows, "weighted_f1", ["weighted_f1", "accuracy"]).splitlines(), ""]


def register(subparsers) -> None:
    """The ``pipeline`` subcommand (registered by :mod:`erc.cli`)."""
    add_stage_command(subparsers, "pipeline", PipelineConfig, run_pipeline,
                      help="finetune -> embed -> train-graph -> compare in one run directory "
                           "(complete stages are skipped; --force STAGE redoes one)")
