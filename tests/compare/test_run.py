"""``cli.py compare`` end to end on the synthetic corpus: report files, numbers, resume, HTML images."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from erc.compare.config import CompareConfig
from erc.core.config import ConfigError, resolve_config

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--synthetic-dialogues", "30", "--class-sets", "iemocap4", "iemocap6",
        "--forest-seeds", "0", "--forest-n-estimators", "15", "--forest-max-depth", "0", "4",
        "--forest-min-samples-leaf", "1", "--tsne-max-points", "80", "--finetune-epochs", "1",
        "--num-threads", "1"]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory, tiny_encoder_dir):
    out = tmp_path_factory.mktemp("compare") / "run"
    cmd = [sys.executable, "cli.py", "compare", "--config", "configs/compare_synthetic.yaml",
           "--model", str(tiny_encoder_dir), "--output-dir", str(out), *FAST]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_compare_writes_all_three_report_files(compare_run):
    for name in ("report.md", "report.html", "report.json", "config.yaml",
                 "predictions_train.csv", "predictions_test.csv"):
        assert (compare_run / name).is_file(), name
    rep = json.loads((compare_run / "report.json").read_text())
    names = [s["name"] for s in rep["settings"]]
    assert names == ["zero-shot anchor", "fine-tuned seed_0", "gold V/A/D (ceiling)"]
    assert [s["uses_labels"] for s in rep["settings"]] == [False, True, True]
    assert set(rep["emotion_metrics"]) == {"iemocap4", "iemocap6"}
    assert rep["emotion_metrics"]["iemocap4"]["labels"] == ["ang", "hap", "sad", "neu"]
    for setting in names:
        for cs in ("iemocap4", "iemocap6"):
            st = rep["emotion_metrics"][cs]["settings"][setting]
            assert 0.0 <= st["summary"]["accuracy"]["mean"] <= 1.0
            cm = np.array(st["confusion_matrix_summed_over_seeds"])
            assert cm.sum() == rep["emotion_metrics"][cs]["n_test"]
    # the gold ceiling on the synthetic corpus (class means well apart) is far above chance
    assert rep["emotion_metrics"]["iemocap4"]["settings"]["gold V/A/D (ceiling)"]["summary"]["accuracy"]["mean"] > 0.8
    for setting in names[:2]:
        for split in ("train", "test"):
            m = rep["vad_metrics"][setting][split]
            for d in ("valence", "arousal", "dominance"):
                assert {f"{d}_{k}" for k in ("mse", "rmse", "mae", "pearson", "ccc")} <= set(m)
    assert "python cli.py compare --config configs/compare_synthetic.yaml" in rep["command"]
    assert set(rep["figures"]) == {"training_curves", "confusion_matrices", "vad_distributions",
                                   "tsne_vad", "tsne_embeddings", "va_scatter"}
    md = (compare_run / "report.md").read_text()
    assert "Zero-shot rows used no labels" in md and "SYNTHETIC" in md
    html = (compare_run / "report.html").read_text()
    assert html.count("<img ") == html.count("src='data:image/png;base64,") == 6  # self-contained


def test_report_numbers_match_prediction_tables(compare_run):
    """The V/A/D metrics in report.json are recomputable from the written prediction CSV."""
    import pandas as pd

    from erc.core.metrics import regression_metrics

    rep = json.loads((compare_run / "report.json").read_text())
    df = pd.read_csv(compare_run / "predictions_test.csv")
    gold = df[["gold_valence", "gold_arousal", "gold_dominance"]].to_numpy()
    pred = df[[f"zero-shot anchor:{d}" for d in ("valence", "arousal", "dominance")]].to_numpy()
    m = regression_metrics(pred, gold)
    assert m["valence_pearson"] == pytest.approx(rep["vad_metrics"]["zero-shot anchor"]["test"]["valence_pearson"], abs=1e-4)
    assert np.all((pred >= 1) & (pred <= 5))


def test_rerun_reuses_cached_predictions(compare_run, tiny_encoder_dir):
    from erc.compare.run import run_compare

    before = {p.name: p.stat().st_mtime_ns for p in (compare_run / "predictions").glob("*.npz")}
    cfg = resolve_config(CompareConfig, {
        "model": str(tiny_encoder_dir), "output_dir": str(compare_run), "synthetic_dialogues": 30,
        "class_sets": ["iemocap4"], "forest_seeds": [0], "forest_n_estimators": [15],
        "forest_max_depth": [0], "forest_min_samples_leaf": [1], "tsne_max_points": 80,
        "finetuned": [str(compare_run / "finetune" / "seed_0")], "train_finetuned": False, "num_threads": 1})
    rep = run_compare(cfg, command="test")
    after = {p.name: p.stat().st_mtime_ns for p in (compare_run / "predictions").glob("*.npz")}
    assert before == after  # nothing recomputed
    assert [s["name"] for s in rep["settings"]][:2] == ["zero-shot anchor", "fine-tuned seed_0"]


def test_html_images_load_in_headless_chromium(compare_run, tmp_path):
    from bench.check_report_html import check_report, find_chromium

    if find_chromium() is None:
        pytest.skip("Chromium not installed (Debian: apt-get install -y chromium)")
    res = check_report(compare_run / "report.html", screenshot=tmp_path / "shot.png")
    assert res["total"] == 6 and res["loaded"] == 6 and not res["failed"]
    assert res["screenshot"] is not None


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="zero_shot"):
        resolve_config(CompareConfig, {"zero_shot": ["magic"]})
    with pytest.raises(ConfigError, match="nli_model"):
        resolve_config(CompareConfig, {"zero_shot": ["nli"]})
    with pytest.raises(ConfigError, match="overlap"):
        resolve_config(CompareConfig, {"train_sessions": [1, 2], "test_sessions": [2]})


def test_custom_table_with_its_own_labels(tmp_path, synthetic_corpus, tiny_encoder_dir):
    """A CSV with an emotion column and no split column: class set 'all', seeded dialogue split."""
    from erc.compare.data import load_compare_data
    from erc.compare.run import run_compare

    table = synthetic_corpus.utterances.drop(columns=["session"]).copy()
    table["mood"] = table["emotion"].map({"hap": "good", "exc": "good", "sad": "bad", "ang": "bad",
                                          "fru": "bad", "neu": "meh"})
    csv = tmp_path / "t.csv"
    table.drop(columns=["emotion"]).to_csv(csv, index=False)
    cfg = resolve_config(CompareConfig, {
        "format": "table", "path": str(csv), "emotion_column": "mood", "id_column": "utterance_id",
        "dialogue_column": "dialogue_id", "class_sets": ["all"], "model": str(tiny_encoder_dir),
        "forest_seeds": [0], "forest_n_estimators": [10], "forest_max_depth": [0],
        "forest_min_samples_leaf": [1], "tsne_max_points": 40, "num_threads": 1, "train_finetuned": False,
        "output_dir": str(tmp_path / "out")})
    data = load_compare_data(cfg)
    assert not set(data.train["dialogue_id"]) & set(data.test["dialogue_id"])
    rep = run_compare(cfg, command="test")
    assert rep["emotion_metrics"]["all"]["labels"] == ["bad", "good", "meh"]
    assert (tmp_path / "out" / "report.html").is_file()
    bad = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, emotion_column="nope"))
    with pytest.raises(ConfigError, match="nope"):
        load_compare_data(bad)
