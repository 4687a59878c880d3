"""The comparison stage as the pipeline sees it: what makes a run, where its outputs go, what it reports."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.compare.config import CompareConfig
from erc.core.io import read_json
from erc.core.runs import IdentityRule, StageSpec, format_cell

# Every input the report depends on; where the work goes and the prediction cache do not change it.
COMPARE_IDENTITY = IdentityRule(ignore=frozenset({"overwrite_predictions"}),
                                inputs=("data.path", "model", "anchors", "finetuned", "finetune_config", "nli_model"))


def compare_outputs(output_dir: str | Path) -> dict[str, Path]:
    d = Path(output_dir)
    return {"report_html": d / "report.html", "report_md": d / "report.md", "report_json": d / "report.json"}


def _pm(entry: dict | None) -> str:
    return "-" if not entry else f"{format_cell(entry.get('mean'))} ± {format_cell(entry.get('std'))}"


def figures_table(report: dict) -> list[str]:
    """One row per setting: test Pearson r of each V/A/D dimension, and the forest's test accuracy and
    weighted F1 per class set (mean ± std over the forest seeds), from ``report.json``."""
    emotion, vad = report.get("emotion_metrics") or {}, report.get("vad_metrics") or {}
    settings = list(dict.fromkeys(n for cs in emotion.values() for n in cs.get("settings", {})))
    head = ["setting", "valence r", "arousal r", "dominance r"]
    for cs in emotion:
        head += [f"{cs} accuracy", f"{cs} weighted F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in settings:
        test = (vad.get(name) or {}).get("test") or {}
        cells = [name, *[format_cell(test.get(f"{d}_pearson")) for d in ("valence", "arousal", "dominance")]]
        for cs in emotion.values():
            summary = (cs.get("settings", {}).get(name) or {}).get("summary") or {}
            cells += [_pm(summary.get("accuracy")), _pm(summary.get("weighted_f1"))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summary(cfg: CompareConfig, link: Callable[[Path], str]) -> list[str]:
    out = compare_outputs(cfg.output_dir)
    if not out["report_html"].is_file():
        return []
    lines = ["## Comparison report (test split; forest on predicted V/A/D, mean ± std over forest seeds)", ""]
    if out["report_json"].is_file():
        report = read_json(out["report_json"])
        lines += [f"Data: {(report.get('data') or {}).get('split', '-')}.", "", *figures_table(report), ""]
    return lines + [f"[report.html]({link(out['report_html'])}) (open in a browser), "
                    f"[report.md]({link(out['report_md'])}), [report.json]({link(out['report_json'])}).", ""]


COMPARE = StageSpec(
    name="compare", config_class=CompareConfig, run="erc.compare.run:run_compare", identity_rule=COMPARE_IDENTITY,
    place=lambda folder: {"output_dir": str(folder)}, outputs=lambda cfg: compare_outputs(cfg.output_dir),
    summary=_summary, main_process_only=True, takes_command=True)
