"""``cli.py pipeline``: finetune -> embed -> train-graph -> compare in one run directory.

Each stage writes into ``output_dir/<stage>/`` and, when it has finished,
``output_dir/<stage>/stage_complete.json``. A stage whose marker and outputs
exist is skipped, so an interrupted pipeline resumes where it stopped (and an
interrupted fine-tuning run resumes from its last epoch checkpoint);
``--force STAGE`` deletes that stage's folder and runs it again.

Under ``accelerate launch`` every process runs the pipeline: the training
stages (finetune, train-graph) share the work through Accelerate; embedding
and the comparison run on the main process while the others wait.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from erc.core.config import ConfigError, config_from_dict, save_config
from erc.core.io import atomic_write_text, read_json, write_json

logger = logging.getLogger(__name__)

STAGES = ("finetune", "embed", "train-graph", "compare")
MARKER = "stage_complete.json"


def _graph_defaults() -> dict:
    # Small enough for the Quickstart (2 CPU cores, minutes); the published settings are in configs/graph_*.yaml.
    return {"epochs": 15, "hidden_dim": 64, "layers": [2, 2, 2], "win_p": 4, "win_f": 4, "shift_win": 4,
            "lr": 1.0e-3, "batch_size": 8, "seeds": 3, "modalities": ["text", "audio", "visual"]}


def _compare_defaults() -> dict:
    # Synthetic: the fine-tuned model validated on session 4, so the comparison tests on session 5.
    # Forest grid: 50 trees, unlimited depth, leaf 1 or 10 (2 candidates x 3 folds + refit per search);
    # on the Quickstart this keeps every forest metric within seed noise of 100 trees x depth {0, 8}.
    return {"test_sessions": [5], "forest_n_estimators": [50], "forest_max_depth": [0],
            "forest_min_samples_leaf": [1, 10], "tsne_max_points": 600}


@dataclass
class PipelineConfig:
    """The whole pipeline. Stage sections hold fields of that stage's own config
    (FinetuneConfig, EmbedConfig, GraphTrainConfig, CompareConfig); the pipeline sets
    the fields that chain the stages (output dirs, model folder, embeddings file)."""

    output_dir: str = field(default="runs/pipeline", metadata={"help": "run directory (one sub-folder per stage)"})
    stages: list[str] = field(default_factory=lambda: list(STAGES), metadata={
        "help": f"stages to run, in order, from {', '.join(STAGES)}"})
    force: list[str] = field(default_factory=list, metadata={
        "help": "stages to redo from scratch even if complete (their folders are deleted first)"})
    synthetic_dialogues: int = field(default=60, metadata={
        "help": "size of the built-in synthetic corpus, the same for every stage"})
    finetune: dict = field(default_factory=lambda: {"epochs": 4}, metadata={
        "cli": False, "help": "FinetuneConfig fields"})
    embed: dict = field(default_factory=dict, metadata={"cli": False, "help": "EmbedConfig fields"})
    graph: dict = field(default_factory=_graph_defaults, metadata={
        "cli": False, "help": "GraphTrainConfig fields"})
    compare: dict = field(default_factory=_compare_defaults, metadata={
        "cli": False, "help": "CompareConfig fields"})

    def validate(self) -> None:
        for name in ("stages", "force"):
            bad = [s for s in getattr(self, name) if s not in STAGES]
            if bad:
                raise ConfigError(f"field '{name}': unknown stage(s) {bad}; expected some of {list(STAGES)}")


def stage_dir(cfg: PipelineConfig, stage: str) -> Path:
    return Path(cfg.output_dir) / stage.replace("-", "_")


# ----- stage configs (the chaining is here, in one place) -------------------------------------

def finetune_config(cfg: PipelineConfig):
    from erc.vad.config import FinetuneConfig

    values = {"synthetic_dialogues": cfg.synthetic_dialogues, **cfg.finetune,
              "output_dir": str(stage_dir(cfg, "finetune"))}
    return config_from_dict(FinetuneConfig, values, "pipeline section 'finetune'")


def embed_config(cfg: PipelineConfig):
    from erc.vad.config import EmbedConfig

    g = cfg.graph
    values = {"dataset": g.get("dataset", "synthetic"), "path": g.get("path"),
              "synthetic_dialogues": g.get("synthetic_dialogues", cfg.synthetic_dialogues),
              **cfg.embed,
              "model": str(stage_dir(cfg, "finetune") / "best_model"),
              "output": str(stage_dir(cfg, "embed") / "embeddings.npz")}
    return config_from_dict(EmbedConfig, values, "pipeline section 'embed'")


def graph_config(cfg: PipelineConfig):
    from erc.graph.config import GraphTrainConfig

    values = {"synthetic_dialogues": cfg.synthetic_dialogues, **cfg.graph,
              "text_source": "embeddings", "text_embeddings": embed_config(cfg).output,
              "output_dir": str(stage_dir(cfg, "train-graph"))}
    return config_from_dict(GraphTrainConfig, values, "pipeline section 'graph'")


def compare_config(cfg: PipelineConfig):
    from erc.compare.config import CompareConfig

    values = {"synthetic_dialogues": cfg.synthetic_dialogues, **cfg.compare,
              "finetuned": [str(stage_dir(cfg, "finetune"))], "train_finetuned": False,
              "output_dir": str(stage_dir(cfg, "compare"))}
    return config_from_dict(CompareConfig, values, "pipeline section 'compare'")


def _outputs(cfg: PipelineConfig, stage: str) -> dict[str, Path]:
    """The files whose presence (with the marker) means the stage is complete."""
    d = stage_dir(cfg, stage)
    return {
        "finetune": {"model": d / "best_model", "metrics": d / "metrics.json", "log": d / "train_log.csv"},
        "embed": {"embeddings": Path(embed_config(cfg).output)},
        "train-graph": {"results": d / "results.json", "epochs": d / "epochs.csv"},
        "compare": {"report_html": d / "report.html", "report_md": d / "report.md", "report_json": d / "report.json"},
    }[stage]


def is_complete(cfg: PipelineConfig, stage: str) -> bool:
    return (stage_dir(cfg, stage) / MARKER).is_file() and all(p.exists() for p in _outputs(cfg, stage).values())


# ----- running --------------------------------------------------------------------------------

def _run_stage(cfg: PipelineConfig, stage: str, state) -> None:
    if stage == "finetune":
        from erc.vad.train import run_finetune

        fcfg = finetune_config(cfg)
        ckpts = Path(fcfg.output_dir) / "checkpoints"
        if not fcfg.resume and ckpts.is_dir() and any(ckpts.iterdir()):
            fcfg.resume = "latest"   # an interrupted fine-tuning run continues from its last checkpoint
            logger.info("finetune: resuming from the latest checkpoint in %s", ckpts)
        run_finetune(fcfg)
    elif stage == "embed":
        if state.is_main_process:
            from erc.vad.embed import run_embed

            run_embed(embed_config(cfg))
    elif stage == "train-graph":
        from erc.graph.train import run_train_graph

        run_train_graph(graph_config(cfg))
    elif stage == "compare":
        if state.is_main_process:
            from erc.compare.run import run_compare

            run_compare(compare_config(cfg), command=f"python cli.py pipeline (stage compare of {cfg.output_dir})")


def run_pipeline(cfg: PipelineConfig) -> Path:
    """Run the stages in order, skipping complete ones; write ``summary.md``; return its path."""
    from accelerate import PartialState

    from erc.core.accel import pipeline_owns_process_group, use_cpu_processes
    from erc.core.logs import setup_logging

    state = PartialState(cpu=use_cpu_processes())
    setup_logging(state.is_main_process)
    out = Path(cfg.output_dir)
    # Resolve every stage config up front: a typo in the YAML fails now, not after an hour of training.
    resolved = {"finetune": finetune_config, "embed": embed_config,
                "train-graph": graph_config, "compare": compare_config}
    for stage in cfg.stages:
        resolved[stage](cfg)
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        for stage in cfg.force:
            if stage_dir(cfg, stage).exists():
                logger.info("--force %s: removing %s", stage, stage_dir(cfg, stage))
                shutil.rmtree(stage_dir(cfg, stage))
    state.wait_for_everyone()
    timings: dict[str, float | str] = {}
    with pipeline_owns_process_group():
        for stage in cfg.stages:
            if is_complete(cfg, stage):
                logger.info("stage %s: complete in %s, skipped", stage, stage_dir(cfg, stage))
                timings[stage] = "skipped (complete)"
                continue
            logger.info("stage %s: running into %s", stage, stage_dir(cfg, stage))
            t0 = time.time()
            _run_stage(cfg, stage, state)
            state.wait_for_everyone()
            timings[stage] = time.time() - t0
            if state.is_main_process:
                write_json(stage_dir(cfg, stage) / MARKER,
                           {"stage": stage, "seconds": timings[stage],
                            "outputs": {k: str(v) for k, v in _outputs(cfg, stage).items()}})
            state.wait_for_everyone()
    summary = out / "summary.md"
    if state.is_main_process:
        atomic_write_text(summary, render_summary(cfg, timings, state.num_processes))
        state.print(f"\npipeline finished: summary {summary}\n"
                    f"report: {_outputs(cfg, 'compare')['report_html'] if 'compare' in cfg.stages else '-'}")
    state.wait_for_everyone()
    state.destroy_process_group()
    return summary


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def render_summary(cfg: PipelineConfig, timings: dict, num_processes: int) -> str:
    """Markdown with links to every stage's results and their headline numbers."""
    out = Path(cfg.output_dir)
    lines = [f"# Pipeline summary: `{out}`", "",
             f"Processes: {num_processes}. Stages: {', '.join(cfg.stages)}. Resolved config: [config.yaml](config.yaml).",
             "", "| stage | folder | wall time (s) |", "|---|---|---|"]
    for stage in cfg.stages:
        t = timings.get(stage, "-")
        rel = stage_dir(cfg, stage).relative_to(out)
        lines.append(f"| {stage} | [{rel}/]({rel}/) | {t if isinstance(t, str) else f'{t:.1f}'} |")
    lines.append("")
    ft = _outputs(cfg, "finetune")["metrics"]
    if "finetune" in cfg.stages and ft.is_file():
        m = read_json(ft)
        test = m.get("test", m)
        lines += ["## V/A/D fine-tuning (test split, best validation epoch)", "",
                  "| dimension | Pearson r | CCC | RMSE |", "|---|---|---|---|"]
        for d in ("valence", "arousal", "dominance"):
            lines.append(f"| {d} | {_fmt(test.get(f'{d}_pearson'))} | {_fmt(test.get(f'{d}_ccc'))} | "
                         f"{_fmt(test.get(f'{d}_rmse'))} |")
        lines += ["", "Files: [metrics.json](finetune/metrics.json), [train_log.csv](finetune/train_log.csv), "
                      "[plots/](finetune/plots/), model [best_model/](finetune/best_model/).", ""]
    gr = _outputs(cfg, "train-graph")["results"]
    if "train-graph" in cfg.stages and gr.is_file():
        r = read_json(gr)
        lines += ["## Graph model (test at the best validation epoch)", ""]
        lines += [f"Selection: {r.get('selection', '-')}; {len(r.get('seeds', []))} seed(s); "
                  f"modalities {', '.join(r.get('modalities', []))}.", "",
                  "| metric | mean | std |", "|---|---|---|"]
        for key in ("test_accuracy", "test_weighted_f1", "test_macro_f1", "test_ece", "test_ts_ece"):
            if f"{key}_mean" in r:
                lines.append(f"| {key} | {_fmt(r[key + '_mean'])} | {_fmt(r.get(key + '_std'))} |")
        lines += ["", "Files: [results.json](train_graph/results.json), [epochs.csv](train_graph/epochs.csv).", ""]
    rep = _outputs(cfg, "compare")["report_html"]
    if "compare" in cfg.stages and rep.is_file():
        lines += ["## Comparison report", "",
                  "[report.html](compare/report.html) (open in a browser), [report.md](compare/report.md), "
                  "[report.json](compare/report.json).", ""]
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    """The ``pipeline`` subcommand (registered by :mod:`erc.cli`)."""
    from erc.core.cli import add_stage_command

    add_stage_command(subparsers, "pipeline", PipelineConfig, run_pipeline,
                      help="finetune -> embed -> train-graph -> compare in one run directory "
                           "(complete stages are skipped; --force STAGE redoes one)")
