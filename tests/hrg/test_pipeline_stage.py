"""HRG-SSA as a pipeline stage: runs when listed, reports in summary.md, is skipped when complete."""
from __future__ import annotations

import json

from erc.core.config import resolve_config
from erc.pipeline import DEFAULT_STAGES, PipelineConfig, hrg_config, run_pipeline

TINY = dict(window=3, gat_heads=2, gat_head_dim=8, fusion_layers=1, scorer_dim=8,
            max_length=48, batch_size=3, eval_batch_size=2, epochs_frozen=1, epochs_full=1, lr_frozen=3.0e-3,
            lr_full=1.0e-3, num_threads=1, progress=False, data={"dataset": "synthetic", "valid_fraction": 0.25,
                                           "modalities": ["text", "audio"]})


def test_train_hrg_stage(tmp_path, tiny_t5_dir):
    assert "train-hrg" not in DEFAULT_STAGES and "train-hrg" not in PipelineConfig().stages   # opt-in
    cfg = resolve_config(PipelineConfig, {"output_dir": str(tmp_path / "p"), "stages": ["train-hrg"],
                                          "synthetic_dialogues": 12,
                                          "train_hrg": {**TINY, "backbone": str(tiny_t5_dir)}})
    stage_cfg = hrg_config(cfg)
    assert stage_cfg.output_dir == str(tmp_path / "p" / "train_hrg") and stage_cfg.data.synthetic_dialogues == 12
    summary = run_pipeline(cfg)
    results = json.loads((tmp_path / "p" / "train_hrg" / "results.json").read_text())
    text = summary.read_text()
    assert "## HRG-SSA (test at the best validation epoch)" in text
    assert f"| test_weighted_f1 | {results['test_weighted_f1_mean']:.3f} |" in text
    assert "leak" not in text.lower()                      # predicted history labels: nothing leaks
    stamp = (tmp_path / "p" / "train_hrg" / "results.json").stat().st_mtime_ns
    run_pipeline(cfg)                                       # complete, same identity: skipped
    assert (tmp_path / "p" / "train_hrg" / "results.json").stat().st_mtime_ns == stamp
    assert "skipped (complete)" in summary.read_text()
