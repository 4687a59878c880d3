"""The benchmark's one table: ``benchmark.{md,csv,json,png}`` in the benchmark folder.

Rows are grouped in blocks of one (dataset, text features, modality variant); a block lists every
method entry. A method that reads its own text (HRG-SSA reads the transcript) has one cell per
(dataset, modality variant) and appears, with the same figures, in every features block of it, so
that it is compared with the reference on each feature set.

Per row: test weighted F1, accuracy and macro F1 (each seed's test score at its best validation
epoch; mean ± sample std over seeds), validation weighted F1 (the same), the cell's wall time and
peak resident memory (see :mod:`erc.benchmark.run`), and against the reference method of the
block: Δ weighted F1 (method - reference, seeds pooled), its 95 % paired-bootstrap interval and the
two-sided p-value (:func:`erc.core.significance.paired_bootstrap`, resampling test dialogues).

The config's ``published:`` figures (papers' numbers, in percent) are listed beside our rows of the same
method entry and dataset, ours in percent too (``benchmark.md``'s "Published figures" section,
``benchmark_published.csv``, ``benchmark.json``'s ``published``). They are context, not a test: the
papers' features, splits and epoch selection differ from ours (ours: always validation).
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from erc.benchmark.config import BenchmarkConfig
from erc.benchmark.plan import MARKER, Cell, is_complete
from erc.benchmark.run import read_attempts
from erc.core.io import atomic_write_text, read_json, write_csv, write_json
from erc.core.runs import mean_std, seed_run_outputs
from erc.core.significance import BootstrapResult, Predictions, paired_bootstrap

logger = logging.getLogger(__name__)
METRICS = ("weighted_f1", "accuracy", "macro_f1")
PREDICTIONS = Path("best_model") / "test_predictions.csv"
COLUMNS = ("dataset", "features", "modalities", "method", "stage", "status", "seeds",
           "test_weighted_f1_mean", "test_weighted_f1_std", "test_accuracy_mean", "test_accuracy_std",
           "test_macro_f1_mean", "test_macro_f1_std", "valid_weighted_f1_mean", "valid_weighted_f1_std",
           "wall_seconds", "peak_rss_mib", "reference", "delta_weighted_f1", "ci_low", "ci_high", "p_value",
           "significance_note", "cell")


def _read_predictions(path: Path) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {"dialogue_id": [r["dialogue_id"] for r in rows], "position": [int(r["position"]) for r in rows],
            "label": [int(r["label"]) for r in rows], "pred": [int(r["pred"]) for r in rows]}


class CellResults:
    """What the table needs of one cell, read once: per-seed metrics, cost, test predictions."""

    def __init__(self, cell: Cell):
        self.cell = cell
        results = seed_run_outputs(cell.run_dir)["results"]
        self.complete = is_complete(cell) and results.is_file()     # the marker of this very config
        if self.complete:
            self.per_seed = list(read_json(results).get("per_seed", []))
        else:          # the seeds finished so far (seed_<k>/result.json), shown as unfinished, not tested
            self.per_seed = [read_json(p / "result.json") for p in sorted(cell.run_dir.glob("seed_*"))
                             if (p / "result.json").is_file()] if cell.run_dir.is_dir() else []
        marker = read_json(cell.folder / MARKER) if (cell.folder / MARKER).is_file() else {}
        attempts = read_attempts(cell.folder)
        self.seconds = marker.get("seconds", sum(a["seconds"] for a in attempts) if attempts else None)
        self.peak_rss = marker.get("peak_rss_mib", max((a["peak_rss_mib"] for a in attempts), default=None))
        self._preds: list[dict] | None = None

    def stat(self, split: str, metric: str) -> tuple[float, float] | tuple[None, None]:
        vals = [float(r[split][metric]) for r in self.per_seed if (r.get(split) or {}).get(metric) is not None]
        return mean_std(vals) if vals else (None, None)

    def seed_predictions(self) -> list[dict]:
        if self._preds is None:
            self._preds = []
            for r in self.per_seed:
                path = self.cell.run_dir / f"seed_{r['seed']}" / PREDICTIONS
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: test predictions of a finished cell are missing")
                self._preds.append(_read_predictions(path))
        return self._preds

    def pooled(self) -> Predictions:
        d, y, p = [], [], []
        for t in self.seed_predictions():
            d += t["dialogue_id"]
            y += t["label"]
            p += t["pred"]
        return Predictions.from_rows(d, y, p)

    def test_utterances(self) -> set[tuple[str, int, int]]:
        first = self.seed_predictions()[0]
        return set(zip(first["dialogue_id"], first["position"], first["label"]))


def _blocks(cfg: BenchmarkConfig, cells: list[Cell]) -> list[tuple[tuple[str, str, str], list[Cell]]]:
    """(dataset, features, modalities) -> the cells of that block, in method-entry order."""
    by_key = {c.key: c for c in cells}
    out = []
    datasets = cfg.dataset_entries()
    methods = cfg.method_entries()
    for dname, entry in datasets.items():
        for variant in entry.modalities:
            for fname in entry.features:
                row = []
                for mname in methods:
                    c = by_key.get((dname, fname, variant, mname))
                    if c is None:      # a method reading its own text: its one cell of this dataset/variant
                        c = next((x for x in cells if x.dataset == dname and x.modalities == variant
                                  and x.method == mname and not x.spec.text_features), None)
                    if c is not None:
                        row.append(c)
                out.append(((dname, fname, variant), row))
    return out


def compare(a: CellResults, ref: CellResults, cfg: BenchmarkConfig) -> BootstrapResult | str:
    """The paired bootstrap of ``a`` against ``ref``, or the reason there is none."""
    if not (a.complete and ref.complete):
        return "unfinished"
    if a.test_utterances() != ref.test_utterances():
        return "different test utterances"
    return paired_bootstrap(a.pooled(), ref.pooled(), resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed)


def table_rows(cfg: BenchmarkConfig, cells: list[Cell]) -> list[dict[str, Any]]:
    results = {c.folder: CellResults(c) for c in cells}
    tests: dict[tuple[Path, Path], BootstrapResult | str] = {}
    out_root = Path(cfg.output_dir)
    rows = []
    for (dname, fname, variant), block in _blocks(cfg, cells):
        ref = next((c for c in block if c.method == cfg.reference), None)
        for c in block:
            r = results[c.folder]
            row: dict[str, Any] = {"dataset": dname, "features": fname, "modalities": variant, "method": c.method,
                                   "stage": c.spec.stage.name,
                                   "status": "complete" if r.complete else
                                   f"unfinished ({len(r.per_seed)}/{cfg.seeds} seeds)",
                                   "seeds": len(r.per_seed)}
            for split, metric in [("test", m) for m in METRICS] + [("valid", "weighted_f1")]:
                row[f"{split}_{metric}_mean"], row[f"{split}_{metric}_std"] = r.stat(split, metric)
            row.update(wall_seconds=r.seconds, peak_rss_mib=r.peak_rss, reference=ref.method if ref else None)
            test: BootstrapResult | str | None = None
            if ref is not None and c is not ref:
                key = (c.folder, ref.folder)
                if key not in tests:
                    tests[key] = compare(r, results[ref.folder], cfg)
                test = tests[key]
            if isinstance(test, BootstrapResult):
                row.update(delta_weighted_f1=test.delta, ci_low=test.ci_low, ci_high=test.ci_high, p_value=test.p_value)
            else:
                row.update(delta_weighted_f1=None, ci_low=None, ci_high=None, p_value=None)
            row["significance_note"] = test if isinstance(test, str) else None
            row["cell"] = c.folder.relative_to(out_root).as_posix() if c.folder.is_relative_to(out_root) \
                else str(c.folder)
            rows.append(row)
    return rows


PUBLISHED_COLUMNS = ("method", "dataset", "metric", "published", "source", "selection", "features", "modalities",
                     "status", "seeds", "ours_mean", "ours_std", "difference", "note")


def _selection_note(selection: str) -> str:
    return ("test-selected there, validation-selected here" if selection == "test"
            else "validation-selected there and here")


def published_rows(cfg: BenchmarkConfig, rows: list[dict]) -> list[dict[str, Any]]:
    """Each published figure beside each of our rows of its method entry and dataset (one per features and
    modalities block; one row with no figures of ours when there is none). Percent, as the papers print them:
    ``ours_mean`` / ``ours_std`` are our test mean ± sample std x 100, ``difference`` = ours - published."""
    out = []
    for fig in cfg.published_figures():
        ours = [r for r in rows if r["method"] == fig.method and r["dataset"] == fig.dataset] or [None]
        for r in ours:
            mean, std = (None, None) if r is None else (r[f"test_{fig.metric}_mean"], r[f"test_{fig.metric}_std"])
            mean = None if mean is None else 100.0 * mean
            std = None if std is None else 100.0 * std
            out.append({"method": fig.method, "dataset": fig.dataset, "metric": fig.metric, "published": fig.value,
                        "source": fig.source, "selection": fig.selection,
                        "features": None if r is None else r["features"],
                        "modalities": None if r is None else r["modalities"],
                        "status": "no cell" if r is None else r["status"], "seeds": 0 if r is None else r["seeds"],
                        "ours_mean": mean, "ours_std": std,
                        "difference": None if mean is None else mean - fig.value,
                        "note": _selection_note(fig.selection)})
    return out


def render_published(published: list[dict]) -> list[str]:
    """The "Published figures" section of ``benchmark.md`` (no lines when the config lists none)."""
    if not published:
        return []
    lines = ["## Published figures", "",
             "Figures from papers beside ours for the same method and dataset, in percent (ours: test mean ± sample "
             "std over seeds x 100). Context, not a test: the papers' features, and often their splits and epoch "
             "selection, differ from ours; each row says which split picked the epoch there and here.", "",
             "| method | dataset | metric | published | source | features | modalities | ours | ours - published "
             "| selection |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in published:
        ours = "-" if r["ours_mean"] is None else f"{r['ours_mean']:.2f} ± {r['ours_std']:.2f}"
        if r["status"] != "complete":
            ours += f" ({r['status']})"
        diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
        lines.append(f"| {r['method']} | {r['dataset']} | {r['metric']} | {r['published']:.2f} | {r['source']} "
                     f"| {r['features'] or '-'} | {r['modalities'] or '-'} | {ours} | {diff} | {r['note']} |")
    return lines + [""]


def _pm(mean, std) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _num(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _p(p) -> str:
    return "-" if p is None else (f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}")


def render_markdown(cfg: BenchmarkConfig, rows: list[dict], published: list[dict] | None = None) -> str:
    lines = [f"# Benchmark: `{cfg.output_dir}`", "",
             f"Every cell: the same split per dataset, seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}, each seed's epoch "
             f"picked by validation {cfg.selection_metric} (the test split selects nothing); test and validation "
             "figures are mean ± sample std over seeds at those epochs.",
             f"Δ wF1: method - {cfg.reference} (the reference) on the same dataset, features and modalities, seeds "
             f"pooled; 95 % CI and two-sided p from a paired bootstrap over test dialogues ({cfg.bootstrap_resamples} "
             f"resamples, seed {cfg.bootstrap_seed}; erc/core/significance.py).",
             "Wall time: the cell's child process, start-up included, summed over attempts; peak RSS: that process's "
             "maximum resident memory (os.wait4 ru_maxrss), the largest over attempts.", ""]
    lines += ["| dataset | features | modalities | method | seeds | test wF1 | test acc | test macro F1 | valid wF1 "
              f"| wall (s) | peak RSS (MiB) | Δ wF1 vs {cfg.reference} | 95 % CI | p |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = "-" if r["ci_low"] is None else f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        delta = (r["significance_note"] or "-") if r["delta_weighted_f1"] is None else f"{r['delta_weighted_f1']:+.3f}"
        if r["method"] == r["reference"]:
            delta = "(reference)"
        status = "" if r["status"] == "complete" else f" ({r['status']})"
        lines.append(f"| {r['dataset']} | {r['features']} | {r['modalities']} | [{r['method']}]({r['cell']}/){status} "
                     f"| {r['seeds']} | {_pm(r['test_weighted_f1_mean'], r['test_weighted_f1_std'])} "
                     f"| {_pm(r['test_accuracy_mean'], r['test_accuracy_std'])} "
                     f"| {_pm(r['test_macro_f1_mean'], r['test_macro_f1_std'])} "
                     f"| {_pm(r['valid_weighted_f1_mean'], r['valid_weighted_f1_std'])} "
                     f"| {_num(r['wall_seconds'], '.1f')} | {_num(r['peak_rss_mib'], '.0f')} | {delta} | {ci} "
                     f"| {_p(r['p_value'])} |")
    lines += ["", "A method that reads its own text (e.g. HRG-SSA, from the transcript) has one cell per dataset and "
              "modalities; it is listed in every features block with the same figures (the `cell` link is the same).",
              ""]
    lines += render_published(published or [])
    return "\n".join(lines)


def plot(cfg: BenchmarkConfig, rows: list[dict], path: Path) -> Path:
    """Grouped bars: one group per (dataset, features, modalities), one bar per method, test wF1 ± std."""
    import numpy as np

    from erc.core.plotting import pyplot, save_png

    plt = pyplot()
    groups = list(dict.fromkeys((r["dataset"], r["features"], r["modalities"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {(r["dataset"], r["features"], r["modalities"], r["method"]): r for r in rows}
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) * max(1, len(methods)) / 2), 4.5))
    x = np.arange(len(groups))
    for i, m in enumerate(methods):
        means = [by.get((*g, m), {}).get("test_weighted_f1_mean") for g in groups]
        stds = [by.get((*g, m), {}).get("test_weighted_f1_std") for g in groups]
        bars = ax.bar(x + (i - (len(methods) - 1) / 2) * width, [np.nan if v is None else v for v in means], width,
                      yerr=[0.0 if s is None else s for s in stds], capsize=3, label=m)
        for bar, g in zip(bars, groups):          # an unfinished cell's seeds so far: hatched, not a result
            if by.get((*g, m), {}).get("status", "complete") != "complete":
                bar.set_hatch("//")
                bar.set_alpha(0.5)
    ax.set_xticks(x, ["\n".join(g) for g in groups], fontsize=8)
    ax.set_ylabel("test weighted F1 (mean ± std over seeds)")
    ax.set_title(f"Benchmark ({cfg.seeds} seeds; selection on validation {cfg.selection_metric}; "
                 "hatched: unfinished cell)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # outside the axes: over no bar
    ax.grid(axis="y", alpha=0.3)
    return save_png(fig, path)


def write_table(cfg: BenchmarkConfig, cells: list[Cell]) -> Path:
    """``benchmark.md`` / ``.csv`` / ``.json`` / ``.png`` and ``benchmark_published.csv`` in ``cfg.output_dir``;
    returns the Markdown path."""
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(cfg, cells)
    published = published_rows(cfg, rows)
    md = out / "benchmark.md"
    atomic_write_text(md, render_markdown(cfg, rows, published))
    write_csv(out / "benchmark.csv", rows, columns=COLUMNS)
    write_csv(out / "benchmark_published.csv", published, columns=PUBLISHED_COLUMNS)   # header only: none listed
    write_json(out / "benchmark.json", {
        "protocol": {"seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)), "selection": f"valid_{cfg.selection_metric}",
                     "reference": cfg.reference, "bootstrap_resamples": cfg.bootstrap_resamples,
                     "bootstrap_seed": cfg.bootstrap_seed,
                     "statistic": "paired bootstrap over test dialogues of the weighted-F1 difference, seeds pooled",
                     "wall_seconds": "child process wall time, summed over attempts",
                     "peak_rss_mib": "child process max RSS (os.wait4 ru_maxrss), max over attempts"},
        "rows": rows, "published": published})
    plot(cfg, rows, out / "benchmark.png")
    return md
