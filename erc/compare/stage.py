"""The comparison stage as the pipeline sees it: what makes a run, where its outputs go, what it reports."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from erc.compare.config import CompareConfig
from erc.core.runs import IdentityRule, StageSpec

# Every input the report depends on; where the work goes and the prediction cache do not change it.
COMPARE_IDENTITY = IdentityRule(ignore=frozenset({"overwrite_predictions"}),
                                inputs=("data.path", "model", "anchors", "finetuned", "finetune_config", "nli_model"))


def compare_outputs(output_dir: str | Path) -> dict[str, Path]:
    d = Path(output_dir)
    return {"report_html": d / "report.html", "report_md": d / "report.md", "report_json": d / "report.json"}


def _summary(cfg: CompareConfig, link: Callable[[Path], str]) -> list[str]:
    out = compare_outputs(cfg.output_dir)
    if not out["report_html"].is_file():
        return []
    return ["## Comparison report", "",
            f"[report.html]({link(out['report_html'])}) (open in a browser), [report.md]({link(out['report_md'])}), "
            f"[report.json]({link(out['report_json'])}).", ""]


COMPARE = StageSpec(
    name="compare", config_class=CompareConfig, run="erc.compare.run:run_compare", identity_rule=COMPARE_IDENTITY,
    place=lambda folder: {"output_dir": str(folder)}, outputs=lambda cfg: compare_outputs(cfg.output_dir),
    summary=_summary, main_process_only=True, takes_command=True)
