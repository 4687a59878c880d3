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


def test_published_figures_beside_ours_with_known_numbers(tmp_path):
    """Each published figure beside our rows of its method and dataset (percent), in md, csv and json."""
    import csv

    cfg = config_from_dict(BenchmarkConfig, {
        "output_dir": str(tmp_path / "b"), "seeds": 2, "bootstrap_resamples": 99, "modalities": {"text": ["text"]},
        "datasets": {"synthetic": {"features": {"h1": {"text_source": "hash"}}}},
        "methods": {"graph": {}, "graph_cmerc": {}},
        "published": [
            {"method": "graph_cmerc", "dataset": "synthetic", "metric": "weighted_f1", "value": 62.75,
             "source": "Paper A, 2019", "selection": "test"},
            {"method": "graph", "dataset": "synthetic", "metric": "accuracy", "value": 40,
             "source": "Paper B, 2020", "selection": "validation"}]}, "test")
    by = {c.label: c for c in cells(cfg)}
    _fake(by["synthetic/h1/text/graph"], right=False)                 # ours: 0.0 on every metric
    _fake(by["synthetic/h1/text/graph_cmerc"], right=True)            # ours: 1.0 on every metric
    write_table(cfg, list(by.values()))
    out = tmp_path / "b"
    published = json.loads((out / "benchmark.json").read_text())["published"]
    assert [(p["method"], p["published"], p["ours_mean"], p["ours_std"], p["difference"]) for p in published] == [
        ("graph_cmerc", 62.75, 100.0, 0.0, pytest.approx(37.25)), ("graph", 40.0, 0.0, 0.0, -40.0)]
    assert published[0]["note"] == "test-selected there, validation-selected here"
    assert published[1]["note"] == "validation-selected there and here"
    md = (out / "benchmark.md").read_text()
    assert "## Published figures" in md
    assert ("| graph_cmerc | synthetic | weighted_f1 | 62.75 | Paper A, 2019 | h1 | text | 100.00 ± 0.00 | +37.25 "
            "| test-selected there, validation-selected here |") in md
    assert "| graph | synthetic | accuracy | 40.00 | Paper B, 2020 | h1 | text | 0.00 ± 0.00 | -40.00 |" in md
    with open(out / "benchmark_published.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["published"], r["ours_mean"], r["source"]) for r in rows] == [
        ("graph_cmerc", "62.75", "100.0", "Paper A, 2019"), ("graph", "40.0", "0.0", "Paper B, 2020")]


def test_published_figure_without_a_finished_cell_is_listed_without_ours(tmp_path):
    cfg = config_from_dict(BenchmarkConfig, {
        "output_dir": str(tmp_path / "b"), "seeds": 1, "modalities": {"text": ["text"]},
        "datasets": {"synthetic": {"features": {"h1": {"text_source": "hash"}}}}, "methods": {"graph": {}},
        "published": [{"method": "graph", "dataset": "synthetic", "value": 50.5, "source": "P", "selection": "test"}]},
        "test")
    write_table(cfg, cells(cfg))                                      # nothing has run
    md = (tmp_path / "b" / "benchmark.md").read_text()
    assert "| graph | synthetic | weighted_f1 | 50.50 | P | h1 | text | - (unfinished (0/1 seeds)) | - |" in md


def test_table_only_writes_the_published_figures_and_trains_nothing(tmp_path):
    from erc.benchmark.run import run_benchmark

    cfg = config_from_dict(BenchmarkConfig, {
        "output_dir": str(tmp_path / "b"), "seeds": 1, "modalities": {"text": ["text"]}, "table_only": True,
        "datasets": {"synthetic": {"features": {"h1": {"text_source": "hash"}}}}, "methods": {"graph": {}},
        "published": [{"method": "graph", "dataset": "synthetic", "value": 50.5, "source": "P", "selection": "test"}]},
        "test")
    run_benchmark(cfg)
    out = tmp_path / "b"
    assert not (out / "cells").exists()
    assert json.loads((out / "benchmark.json").read_text())["published"][0]["published"] == 50.5
    assert "## Published figures" in (out / "benchmark.md").read_text()
    assert (out / "benchmark_published.csv").read_text().splitlines()[1].startswith("graph,synthetic,weighted_f1,50.5,P")


def test_the_plot_hatches_unfinished_cells_and_only_those(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import erc.core.plotting as plotting
    from erc.benchmark.table import plot

    figs = []
    monkeypatch.setattr(plotting, "save_png", lambda fig, path: figs.append(fig) or path)
    row = {"dataset": "d", "features": "f", "modalities": "text", "test_weighted_f1_std": 0.01}
    rows = [{**row, "method": "graph", "status": "complete", "test_weighted_f1_mean": 0.6},
            {**row, "method": "hrg", "status": "unfinished (1/2 seeds)", "test_weighted_f1_mean": 0.5}]
    plot(SimpleNamespace(seeds=2, selection_metric="weighted_f1"), rows, tmp_path / "b.png")
    bars = [p for p in figs[0].axes[0].patches]
    assert [round(b.get_height(), 2) for b in bars] == [0.6, 0.5]
    assert [b.get_hatch() for b in bars] == [None, "//"]
