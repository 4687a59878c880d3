"""The comparison report: ``report.md``, self-contained ``report.html`` and ``report.json``.

Figures are PNGs in ``figures/`` (linked from the Markdown) and embedded as
base64 ``data:`` URIs in the HTML, so the HTML is one file that opens anywhere.
``report.json`` holds every number shown (and the per-seed ones behind them).
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from erc.compare.data import resolve_class_set
from erc.compare.stage import compare_outputs
from erc.core.io import atomic_write_text, write_json
from erc.core.metrics import VAD_NAMES
from erc.core.plotting import pyplot, save_png
from erc.core.runs import mean_std

logger = logging.getLogger(__name__)

DIM_SHORT = {"valence": "V", "arousal": "A", "dominance": "D"}
NO_LABELS_NOTE = ("Zero-shot rows used no labels: no V/A/D value and no emotion label reached the "
                  "encoder, the anchor phrases or the fixed map onto the 1-5 scale. Labels enter "
                  "those rows only through the Random Forest, which every row shares.")


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
_plt = pyplot


def _save(fig, path: Path) -> Path:
    return save_png(fig, path, dpi=90)


def _grid(n: int, max_cols: int = 4):
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    return rows, cols


def emotion_colours(names: Sequence[str]) -> dict:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    out = {n: cmap(i % 10) for i, n in enumerate(names)}
    out["other"] = (0.75, 0.75, 0.75, 1.0)
    return out


def fig_training_curves(settings, path: Path) -> Path | None:
    import pandas as pd

    runs = [s for s in settings if s.train_log]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.4 * len(runs)), squeeze=False)
    for row, s in zip(axes, runs):
        log = pd.read_csv(s.train_log)
        ax = row[0]
        for col in ("train_loss", "val_loss"):
            if col in log:
                ax.plot(log["epoch"], log[col], marker="o", label=col)
        ax.set(title=f"{s.name}: loss", xlabel="epoch", ylabel="MSE (standardised)")
        ax.legend(fontsize=8)
        ax = row[1]
        for col in log.columns:
            if col.startswith("val_") and (col.endswith("_pearson") or col.endswith("_ccc")):
                ax.plot(log["epoch"], log[col], marker=".", label=col[4:])
        ax.set(title=f"{s.name}: validation metrics", xlabel="epoch")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def fig_confusions(results: dict, path: Path) -> Path:
    plt = _plt()
    cls_sets = list(results["emotion"])
    n_set = max(len(results["emotion"][c]["settings"]) for c in cls_sets)
    fig, axes = plt.subplots(len(cls_sets), n_set, figsize=(3.3 * n_set, 3.3 * len(cls_sets)),
                             squeeze=False)
    for r, cs in enumerate(cls_sets):
        entry = results["emotion"][cs]
        labels = entry["labels"]
        for c, (name, st) in enumerate(entry["settings"].items()):
            cm = np.asarray(st["confusion_matrix_summed_over_seeds"], dtype=np.float64)
            norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax = axes[r, c]
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
            ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            acc = st["summary"]["accuracy"]["mean"]
            ax.set_title(f"{cs} | {name}\nacc {acc:.3f}", fontsize=8)
            if c == 0:
                ax.set_ylabel("true")
            ax.set_xlabel("predicted", fontsize=7)
        for c in range(len(entry["settings"]), n_set):
            axes[r, c].axis("off")
    fig.tight_layout()
    return _save(fig, path)


def fig_distributions(settings, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for d, name in enumerate(VAD_NAMES):
        ax = axes[d]
        lo = min(float(s.pred_test[:, d].min()) for s in settings)
        hi = max(float(s.pred_test[:, d].max()) for s in settings)
        bins = np.linspace(lo, hi, 31) if hi > lo else 10
        for s in settings:
            style = dict(histtype="stepfilled", alpha=0.25, color="k") if s.kind == "gold" else dict(histtype="step", linewidth=1.5)
            ax.hist(s.pred_test[:, d], bins=bins, density=True, label=s.name, **style)
        ax.set(title=f"{name} (test split)", xlabel="value")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _emotion_names(emotions: Sequence, class_set) -> list[str]:
    return [class_set.mapping.get(e, "other") if isinstance(e, str) else "other" for e in emotions]


def _scatter_by_emotion(ax, xy: np.ndarray, names: list[str], colours: dict, s: float = 6) -> None:
    names = np.asarray(names)
    order = [n for n in colours if n == "other"] + [n for n in colours if n != "other"]
    for n in order:
        m = names == n
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=s, color=colours[n], label=n, alpha=0.7, linewidths=0)


def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(x, dtype=np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
    if x.shape[1] > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def fig_tsne(arrays: list[tuple[str, np.ndarray]], names: list[str], colours: dict, title: str,
             seed: int, path: Path) -> Path | None:
    if not arrays:
        return None
    plt = _plt()
    rows, cols = _grid(len(arrays))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
    for ax, (label, x) in zip(axes.flat, arrays):
        _scatter_by_emotion(ax, _tsne(x, seed), names, colours)
        ax.set_title(f"{title}: {label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(arrays):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return _save(fig, path)


def fig_va_scatter(settings, names: list[str], colours: dict, path: Path, scale) -> Path:
    plt = _plt()
    gold = [s for s in settings if s.kind == "gold"]
    others = [s for s in settings if s.kind != "gold"]
    panels = [("gold V/A", gold[0].pred_test)] + [(f"predicted: {s.name}", s.pred_test) for s in others]
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.8 * rows), squeeze=False)
    for ax, (label, pred) in zip(axes.flat, panels):
        _scatter_by_emotion(ax, pred[:, :2], names, colours, s=5)
        ax.set(title=label, xlabel="valence", ylabel="arousal", xlim=scale, ylim=scale)
        ax.title.set_fontsize(9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _f(x, nd: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def vad_table(results: dict, settings, split: str) -> tuple[list[str], list[list[str]]]:
    head = ["setting", "labels used", "MSE", "RMSE", "MAE"]
    for d in VAD_NAMES:
        head += [f"{DIM_SHORT[d]} RMSE", f"{DIM_SHORT[d]} MAE", f"{DIM_SHORT[d]} r", f"{DIM_SHORT[d]} CCC"]
    rows = []
    for s in settings:
        if s.kind == "gold":
            continue
        m = results["vad"][s.name][split]
        row = [s.name, "yes" if s.uses_labels else "no", _f(m["mse"]), _f(m["rmse"]), _f(m["mae"])]
        for d in VAD_NAMES:
            row += [_f(m[f"{d}_rmse"]), _f(m[f"{d}_mae"]), _f(m[f"{d}_pearson"]), _f(m[f"{d}_ccc"])]
        rows.append(row)
    return head, rows


def emotion_table(entry: dict) -> tuple[list[str], list[list[str]]]:
    head = ["setting", "labels used (V/A/D)", "accuracy", "weighted F1", "macro F1"]
    head += [f"F1 {lab}" for lab in entry["labels"]] + ["CV wF1 (train)", "best params (seed 1st)"]
    rows = []
    for name, st in entry["settings"].items():
        sm = st["summary"]
        pm = lambda k: f"{sm[k]['mean']:.3f} ± {sm[k]['std']:.3f}"  # noqa: E731
        p0 = st["per_seed"][0]
        params = ", ".join(f"{k}={v}" for k, v in sorted(p0["best_params"].items()))
        rows.append([name, "yes" if st["uses_labels"] else "no", pm("accuracy"), pm("weighted_f1"),
                     pm("macro_f1")] + [f"{sm['per_class_f1'][lab]:.3f}" for lab in entry["labels"]]
                    + [f"{np.mean([r['cv_score'] for r in st['per_seed']]):.3f}", params])
    return head, rows


def finetuned_seed_summary(results: dict, settings) -> dict | None:
    """Mean ± sample std over the fine-tuned models (seeds) of their headline numbers."""
    names = [s.name for s in settings if s.kind == "fine-tuned"]
    if len(names) < 2:
        return None
    def ms(values) -> dict:
        mean, std = mean_std(values)
        return {"mean": mean, "std": std}

    out: dict = {"models": names, "vad_test": {}, "emotion": {}}
    for k in [f"{d}_{m}" for d in VAD_NAMES for m in ("pearson", "ccc")] + ["rmse"]:
        out["vad_test"][k] = ms([results["vad"][n]["test"][k] for n in names])
    for cs, entry in results["emotion"].items():
        out["emotion"][cs] = {k: ms([entry["settings"][n]["summary"][k]["mean"] for n in names])
                              for k in ("accuracy", "weighted_f1", "macro_f1")}
    return out


def seed_summary_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    pm = lambda d: f"{d['mean']:.3f} ± {d['std']:.3f}"  # noqa: E731
    head = ["quantity", f"mean ± std over {len(summary['models'])} fine-tuned models"]
    rows = [[f"test {k.replace('_', ' ')}", pm(v)] for k, v in summary["vad_test"].items()]
    for cs, ms in summary["emotion"].items():
        rows += [[f"{cs} {k.replace('_', ' ')} (forest)", pm(v)] for k, v in ms.items()]
    return head, rows


def _md_table(head, rows) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1400px;margin:2em auto;
padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{background:#eef6ee;border-left:4px solid #4a4;padding:.6em 1em}code{background:#f4f4f4;padding:1px 4px}
dt{font-weight:600}"""


Figure = tuple  # (title, caption, path)


def report_figures(cfg, data, settings, results: dict, sub: np.ndarray, fig_dir: Path) -> list[Figure]:
    """Every figure of the report as ``(title, caption, png path)``; figures without data are left out."""
    first_cs = resolve_class_set(cfg.class_sets[0], data.train["emotion"].tolist())
    names_sub = _emotion_names(data.test["emotion"].iloc[sub].tolist(), first_cs)
    names_all = _emotion_names(data.test["emotion"].tolist(), first_cs)
    colours = emotion_colours(first_cs.labels)
    scale = (cfg.scale_min - 0.1, cfg.scale_max + 0.1)
    figures = [
        ("Training of the fine-tuned runs", "Loss (train / validation) and validation Pearson r / CCC "
         "per epoch, from each run's train_log.csv.", fig_training_curves(settings, fig_dir / "training_curves.png")),
        ("Confusion matrices (test split)", "Row-normalised, counts summed over the forest seeds; "
         "one row per class set, one column per setting.", fig_confusions(results, fig_dir / "confusion_matrices.png")),
        ("Predicted V/A/D distributions (test split)", "Density histograms per setting; grey filled: gold.",
         fig_distributions(settings, fig_dir / "vad_distributions.png")),
        ("t-SNE of predicted V/A/D (test split)", f"Coloured by emotion ({first_cs.name}); "
         f"{len(sub)} utterances.", fig_tsne([(s.name, s.pred_test[sub]) for s in settings], names_sub, colours,
                                             "V/A/D", cfg.seed, fig_dir / "tsne_vad.png")),
        ("t-SNE of encoder embeddings (test split)", f"Pooled encoder embeddings (zero-shot: the base "
         f"encoder; fine-tuned: its encoder); coloured by emotion ({first_cs.name}).",
         fig_tsne([(s.name, s.embeddings_test) for s in settings if s.embeddings_test is not None],
                  names_sub, colours, "embeddings", cfg.seed, fig_dir / "tsne_embeddings.png")),
        ("Valence/arousal: gold vs predicted (test split)", f"Coloured by emotion ({first_cs.name}).",
         fig_va_scatter(settings, names_all, colours, fig_dir / "va_scatter.png", scale)),
    ]
    return [(t, c, p) for t, c, p in figures if p is not None]


def report_facts(cfg, data, settings, command: str | None, now: str, elapsed_s: float) -> tuple[list, dict]:
    """The run's facts (data, split, encoders, seeds, command, time) and its seeds."""
    encoders = {s.name: s.source for s in settings if s.kind != "gold"}
    seeds = {"seed (data split, subsample, t-SNE)": cfg.seed, "forest seeds": list(cfg.forest_seeds),
             "fine-tune seeds": list(cfg.finetune_seeds) if cfg.train_finetuned else "given folders"}
    facts = [
        ("Data", data.description),
        ("Split", data.split_description + "; the forest's hyperparameters are chosen by "
         f"{cfg.cv_folds}-fold cross-validation on the training split only (folds keep dialogues "
         f"whole, scoring {cfg.cv_scoring}); the test split is used once per forest"),
        ("Encoders", "; ".join(f"{k}: {v}" for k, v in encoders.items())),
        ("Seeds", "; ".join(f"{k}: {v}" for k, v in seeds.items()) + ". Forest metrics are mean ± "
         "sample std over the forest seeds."),
        ("Command", command or "(called from Python)"),
        ("Written", f"{now}, {elapsed_s:.0f} s"),
    ]
    if any(s.kind == "zero-shot" and "anchor" in s.name for s in settings):
        facts.append(("Anchor map", f"value = {cfg.scale_min} + ({cfg.scale_max} - {cfg.scale_min}) * "
                      f"sigmoid((cos(u, high) - cos(u, low)) / {cfg.anchor_temperature}); phrases from "
                      f"{cfg.anchors}"))
    return facts, seeds


def report_sections(results: dict, settings, seed_summary: dict | None) -> list[tuple[str, str | None, tuple]]:
    """The report's tables as ``(title, note, (head, rows))``."""
    sections: list[tuple[str, str | None, tuple]] = [
        ("V/A/D prediction, test split", None, vad_table(results, settings, "test")),
        ("V/A/D prediction, training split", "Fine-tuned models were trained (and their epoch chosen) "
         "on these utterances, so their training-split numbers are optimistic; the forest is fitted here.",
         vad_table(results, settings, "train")),
    ]
    if seed_summary is not None:
        sections.append(("Fine-tuned models: mean ± std over fine-tune seeds",
                         "Each fine-tuned model's forest number is itself the mean over the forest seeds.",
                         seed_summary_table(seed_summary)))
    for cs_name, entry in results["emotion"].items():
        counts = ", ".join(f"{lab} {n}" for lab, n in zip(entry["labels"], entry["test_counts"]))
        sections.append((f"Emotion from V/A/D (Random Forest), {cs_name}",
                         f"{entry['description']}. {entry['n_train']} train / {entry['n_test']} test "
                         f"utterances (test: {counts}).", emotion_table(entry)))
    return sections


def render_markdown(facts: list, sections: list, figures: list[Figure]) -> str:
    md = ["# Zero-shot vs fine-tuned V/A/D: comparison report", ""]
    md += [f"- **{k}:** `{v}`" if k == "Command" else f"- **{k}:** {v}" for k, v in facts]
    md += ["", f"> {NO_LABELS_NOTE}", ""]
    for title, note, table in sections:
        md += [f"## {title}", ""] + ([note, ""] if note else []) + [_md_table(*table), ""]
    md += ["## Figures", ""]
    for title, caption, p in figures:
        md += [f"### {title}", "", caption, "", f"![{title}](figures/{p.name})", ""]
    return "\n".join(md)


def render_html(facts: list, sections: list, figures: list[Figure]) -> str:
    """Self-contained HTML: the figures are embedded as base64 data URIs."""
    h = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
         "<title>Zero-shot vs fine-tuned V/A/D</title>", f"<style>{CSS}</style></head><body>",
         "<h1>Zero-shot vs fine-tuned V/A/D: comparison report</h1><dl>"]
    for k, v in facts:
        h.append(f"<dt>{html.escape(k)}</dt><dd>" + (f"<code>{html.escape(str(v))}</code>" if k == "Command"
                                                     else html.escape(str(v))) + "</dd>")
    h.append(f"</dl><p class='note'>{html.escape(NO_LABELS_NOTE)}</p>")
    for title, note, table in sections:
        h.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{html.escape(note)}</p>" if note else "")
                 + _html_table(*table))
    h.append("<h2>Figures</h2>")
    for title, caption, p in figures:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        h.append(f"<h3>{html.escape(title)}</h3><p>{html.escape(caption)}</p>"
                 f"<img alt='{html.escape(title)}' src='data:image/png;base64,{b64}'>")
    h.append("</body></html>")
    return "\n".join(h)


def write_report(cfg, data, settings, results: dict, sub: np.ndarray, out_dir: Path,
                 command: str | None, started: float) -> dict:
    """Write ``report.md``, ``report.html`` and ``report.json`` (+ ``figures/``); return report.json's content."""
    out_dir = Path(out_dir)
    files = compare_outputs(out_dir)
    figures = report_figures(cfg, data, settings, results, sub, out_dir / "figures")
    elapsed_s = time.time() - started
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts, seeds = report_facts(cfg, data, settings, command, now, elapsed_s)
    seed_summary = finetuned_seed_summary(results, settings)
    sections = report_sections(results, settings, seed_summary)
    atomic_write_text(files["report_md"], render_markdown(facts, sections, figures))
    atomic_write_text(files["report_html"], render_html(facts, sections, figures))
    report = {
        "title": "Zero-shot vs fine-tuned V/A/D comparison",
        "command": command,
        "written_utc": now,
        "elapsed_s": elapsed_s,
        "config": asdict(cfg),
        "data": {"description": data.description, "split": data.split_description,
                 "n_train": len(data.train), "n_test": len(data.test)},
        "no_labels_note": NO_LABELS_NOTE,
        "seeds": seeds,
        "settings": [{"name": s.name, "kind": s.kind, "uses_labels": s.uses_labels, "source": s.source,
                      "train_log": s.train_log, "info": s.info} for s in settings],
        "vad_metrics": results["vad"],
        "emotion_metrics": results["emotion"],
        "finetuned_seed_summary": seed_summary,
        "figures": {p.stem: f"figures/{p.name}" for _, _, p in figures},
    }
    write_json(files["report_json"], report)
    return report
