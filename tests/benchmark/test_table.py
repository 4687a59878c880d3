"""The benchmark table from hand-made cells (no training): blocks, the transcript method in every features
block, the significance columns with known answers, an unfinished cell."""
from __future__ import annotations

import json

import pytest

from erc.benchmark.config import BenchmarkConfig
from erc.benchmark.plan import cells
from erc.benchmark.run import mark_complete
from erc.benchmark.table import write_table
from erc.core.config import config_from_dict
from erc.core.io import write_csv, write_json

GOLD = {"d1": [0, 1, 2], "d2": [2, 2], "d3": [1, 0, 0, 1]}     # 3 test dialogues, classes 0..2


def _predictions(run_dir, seed, right: bool):
    rows = [{"dialogue_id": d, "position": i, "label": y, "pred": y if right else (y + 1) % 3}
            for d, ys in GOLD.items() for i, y in enumerate(ys)]
    write_csv(run_dir / f"seed_{seed}" / "best_model" / "test_predictions.csv", rows)
    score = 1.0 if right else 0.0
    result = {"seed": seed, "valid": {"weighted_f1": 0.5}, "test": {m: score for m in ("weighted_f1", "accuracy",
                                                                                       "macro_f1")}}
    write_json(run_dir / f"seed_{seed}" / "result.json", result)
    return result


def _fake(cell, right: bool, seeds=(0, 1), finished=True):
    per_seed = [_predictions(cell.run_dir, s, right) for s in seeds]
    if finished:
        write_json(cell.run_dir / "results.json", {"per_seed": per_seed})
        (cell.run_dir / "epochs.csv").write_text("seed,epoch\n")
        mark_complete(cell)


def test_table_blocks_and_significance_with_known_answers(tmp_path):
    cfg = config_from_dict(BenchmarkConfig, {
        "output_dir": str(tmp_path / "b"), "seeds": 2, "bootstrap_resamples": 999, "modalities": {"text": ["text"]},
        "datasets": {"synthetic": {"features": {"h1": {"text_source": "hash"}, "h2": {"text_source": "hash"}}}},
        "methods": {"graph": {}, "graph_cmerc": {}, "hrg": {}}}, "test")
    by = {c.label: c for c in cells(cfg)}
    for label in ("synthetic/h1/text/graph", "synthetic/h2/text/graph"):
        _fake(by[label], right=False)                                   # the reference: wrong everywhere
    _fake(by["synthetic/h1/text/graph_cmerc"], right=True)
    _fake(by["synthetic/h2/text/graph_cmerc"], right=True, seeds=(0,), finished=False)   # still running
    _fake(by["synthetic/transcript/text/hrg"], right=True)
    write_table(cfg, list(by.values()))
    rows = json.loads((tmp_path / "b" / "benchmark.json").read_text())["rows"]
    got = [(r["features"], r["method"]) for r in rows]
    assert got == [("h1", "graph"), ("h1", "graph_cmerc"), ("h1", "hrg"), ("h2", "graph"), ("h2", "graph_cmerc"),
                   ("h2", "hrg")]
    by_row = {k: r for k, r in zip(got, rows)}
    for key in (("h1", "graph_cmerc"), ("h1", "hrg"), ("h2", "hrg")):
        r = by_row[key]
        assert r["delta_weighted_f1"] == pytest.approx(1.0) and r["p_value"] == pytest.approx(1 / 1000)
        assert (r["ci_low"], r["ci_high"]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert by_row[("h1", "hrg")]["cell"] == by_row[("h2", "hrg")]["cell"] == "cells/synthetic/transcript/text/hrg"
    unfinished = by_row[("h2", "graph_cmerc")]
    assert unfinished["status"] == "unfinished (1/2 seeds)" and unfinished["p_value"] is None
    assert unfinished["significance_note"] == "unfinished" and unfinished["test_weighted_f1_mean"] == 1.0
    ref = by_row[("h1", "graph")]
    assert ref["test_weighted_f1_mean"] == 0.0 and ref["test_weighted_f1_std"] == 0.0 and ref["p_value"] is None
    md = (tmp_path / "b" / "benchmark.md").read_text()
    assert "| +1.000 | [+1.000, +1.000] | 0.0010 |" in md
    assert "(unfinished (1/2 seeds))" in md and md.count("(reference)") == 2
