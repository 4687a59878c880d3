"""``erc benchmark`` end to end on the synthetic corpus: cells in child processes, the table, the
significance row, a second invocation that skips everything, and a resumed cell."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from sklearn.metrics import f1_score

from erc.cli import main

CONFIG = {
    "seeds": 2, "reference": "graph", "bootstrap_resamples": 500, "num_threads": 1,
    "modalities": {"text": ["text"]},
    "datasets": {"synthetic": {"data": {"synthetic_dialogues": 12, "valid_fraction": 0.25},
                               "features": {"hash32": {"text_source": "hash", "hash_dim": 32}}}},
    "methods": {
        "graph": {"overrides": {"epochs": 2, "hidden_dim": 16, "layers": [1, 1, 1], "win_p": 2, "win_f": 2,
                                "batch_size": 4}},
        "hrg": {"overrides": {"backbone": "builtin:tiny", "head": "classify", "window": 2, "gat_heads": 2,
                              "gat_head_dim": 8, "fusion_layers": 0, "scorer_dim": 8, "max_length": 32,
                              "batch_size": 4, "eval_batch_size": 4, "epochs_frozen": 1, "epochs_full": 0,
                              "lr_frozen": 3.0e-3}},
        "mlp": {"overrides": {"epochs": 2, "mlp_dims": [16], "hidden_dim": 16, "batch_size": 4}}},
}


def _pooled_wf1(cell_run, seeds=(0, 1)):
    y, p = [], []
    for s in seeds:
        with open(cell_run / f"seed_{s}" / "best_model" / "test_predictions.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                y.append(int(r["label"]))
                p.append(int(r["pred"]))
    return f1_score(y, p, average="weighted", zero_division=0)


def test_benchmark_end_to_end_skip_and_resume(tmp_path, capsys):
    out = tmp_path / "bench"
    config = tmp_path / "benchmark.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "output_dir": str(out)}))
    assert main(["benchmark", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "benchmark plan: 3 cell(s), 3 run, 0 resume, 0 skip" in printed

    for name in ("benchmark.md", "benchmark.csv", "benchmark.json", "benchmark.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    rows = json.loads((out / "benchmark.json").read_text())["rows"]
    assert [(r["dataset"], r["features"], r["modalities"], r["method"]) for r in rows] == [
        ("synthetic", "hash32", "text", "graph"), ("synthetic", "hash32", "text", "hrg"),
        ("synthetic", "hash32", "text", "mlp")]
    graph_run = out / "cells" / "synthetic" / "hash32" / "text" / "graph" / "run"
    hrg_run = out / "cells" / "synthetic" / "transcript" / "text" / "hrg" / "run"
    mlp_run = out / "cells" / "synthetic" / "hash32" / "text" / "mlp" / "run"
    assert json.loads((mlp_run / "run.json").read_text())["stage"] == "train-baseline"
    assert "method: mlp" in (mlp_run / "config.yaml").read_text()
    for row, run in zip(rows, (graph_run, hrg_run, mlp_run)):
        per_seed = json.loads((run / "results.json").read_text())["per_seed"]
        assert [r["seed"] for r in per_seed] == [0, 1] and row["seeds"] == 2
        want = [r["test"]["weighted_f1"] for r in per_seed]
        assert row["test_weighted_f1_mean"] == pytest.approx(np.mean(want))
        assert row["test_weighted_f1_std"] == pytest.approx(np.std(want, ddof=1))
        assert row["wall_seconds"] > 0 and row["peak_rss_mib"] > 50       # a child process with torch loaded
    graph, hrg, mlp = rows
    assert graph["delta_weighted_f1"] is None and graph["reference"] == "graph"
    # the significance rows: the observed difference is the pooled (both seeds) test wF1 difference
    assert hrg["delta_weighted_f1"] == pytest.approx(_pooled_wf1(hrg_run) - _pooled_wf1(graph_run), abs=1e-12)
    assert mlp["delta_weighted_f1"] == pytest.approx(_pooled_wf1(mlp_run) - _pooled_wf1(graph_run), abs=1e-12)
    assert hrg["ci_low"] <= hrg["ci_high"] and 1 / 501 <= hrg["p_value"] <= 1.0
    md = (out / "benchmark.md").read_text()
    assert "| Δ wF1 vs graph | 95 % CI | p |" in md and "(reference)" in md
    assert f"{hrg['delta_weighted_f1']:+.3f} | [{hrg['ci_low']:+.3f}, {hrg['ci_high']:+.3f}]" in md
    with open(out / "benchmark.csv", newline="") as fh:
        assert [r["method"] for r in csv.DictReader(fh)] == ["graph", "hrg", "mlp"]

    # second invocation: every cell is complete with the same identity -> nothing runs
    stamps = {p: p.stat().st_mtime_ns for p in (graph_run / "results.json", hrg_run / "results.json",
                                                mlp_run / "results.json")}
    assert main(["benchmark", "--config", str(config)]) == 0
    assert "3 cell(s), 0 run, 0 resume, 3 skip" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # an interrupted cell (seed 1 lost, no results, no marker) resumes: seed 0 is not retrained
    import shutil

    cell = graph_run.parent
    (cell / "cell.json").unlink()
    (graph_run / "results.json").unlink()
    shutil.rmtree(graph_run / "seed_1")
    kept = graph_run / "seed_0" / "best_model" / "test_predictions.csv"
    kept_stamp = kept.stat().st_mtime_ns
    assert main(["benchmark", "--config", str(config)]) == 0
    assert "3 cell(s), 0 run, 1 resume, 2 skip" in capsys.readouterr().out
    assert kept.stat().st_mtime_ns == kept_stamp and (graph_run / "seed_1" / "best_model").is_dir()
    assert len(json.loads((cell / "attempts.json").read_text())) == 2
    assert stamps[hrg_run / "results.json"] == (hrg_run / "results.json").stat().st_mtime_ns
