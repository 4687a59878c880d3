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


DIMS = ("valence", "arousal", "dominance")
# class sets written out here (not taken from erc.compare.data): raw emotion -> class, in output order
CLASS_SETS = {"iemocap4": (["ang", "hap", "sad", "neu"], {"exc": "hap"}),
              "iemocap6": (["hap", "sad", "neu", "ang", "exc", "fru"], {})}


def _prediction_tables(run: Path, rep: dict) -> dict:
    """predictions_{train,test}.csv; each setting's columns carried at full precision.

    The CSVs round predictions to 5 decimals, which moves a few Random Forest splits, so the
    digits come from the prediction cache (``predictions/*.npz``) after checking that each
    cached array rounds to exactly the CSV's columns."""
    import pandas as pd

    tables = {split: pd.read_csv(run / f"predictions_{split}.csv") for split in ("train", "test")}
    cached = [np.load(f) for f in sorted((run / "predictions").glob("*.npz"))]
    for s in rep["settings"]:
        if s["kind"] == "gold":
            continue
        cols = [f"{s['name']}:{d}" for d in DIMS]
        match = [z for z in cached
                 if all(np.abs(z[f"pred_{sp}"] - tables[sp][cols].to_numpy()).max() <= 5.01e-6
                        for sp in ("train", "test"))]
        assert len(match) == 1, f"{s['name']}: {len(match)} cached arrays round to its CSV columns"
        for sp in ("train", "test"):
            tables[sp][cols] = match[0][f"pred_{sp}"]
    return tables


def _lin_ccc(p: np.ndarray, t: np.ndarray) -> float:
    return 2 * np.cov(p, t, bias=True)[0, 1] / (p.var() + t.var() + (p.mean() - t.mean()) ** 2)


def test_report_numbers_match_prediction_tables(compare_run):
    """Every V/A/D metric of report.json, recomputed from the prediction tables with scikit-learn / scipy."""
    from scipy.stats import pearsonr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rep = json.loads((compare_run / "report.json").read_text())
    tables = _prediction_tables(compare_run, rep)
    settings = [s["name"] for s in rep["settings"] if s["kind"] != "gold"]
    assert set(rep["vad_metrics"]) == set(settings)
    for setting in settings:
        for split in ("train", "test"):
            gold = tables[split][[f"gold_{d}" for d in DIMS]].to_numpy()
            pred = tables[split][[f"{setting}:{d}" for d in DIMS]].to_numpy()
            assert np.all((pred >= 1) & (pred <= 5))
            ref = {"mse": mean_squared_error(gold, pred), "mae": mean_absolute_error(gold, pred)}
            ref["rmse"] = np.sqrt(ref["mse"])
            for j, d in enumerate(DIMS):
                ref[f"{d}_mse"] = mean_squared_error(gold[:, j], pred[:, j])
                ref[f"{d}_rmse"] = np.sqrt(ref[f"{d}_mse"])
                ref[f"{d}_mae"] = mean_absolute_error(gold[:, j], pred[:, j])
                ref[f"{d}_pearson"] = pearsonr(pred[:, j], gold[:, j])[0]
                ref[f"{d}_ccc"] = _lin_ccc(pred[:, j], gold[:, j])
            ref["pearson"] = np.mean([ref[f"{d}_pearson"] for d in DIMS])
            ref["ccc"] = np.mean([ref[f"{d}_ccc"] for d in DIMS])
            got = rep["vad_metrics"][setting][split]
            for k, v in ref.items():
                assert got[k] == pytest.approx(v, abs=1e-7), (setting, split, k)


def test_forest_numbers_match_a_refit_on_the_prediction_tables(compare_run):
    """Each setting's forest: refit with scikit-learn on that setting's train predictions (CV on
    train, folds by dialogue), scored on its test predictions; accuracy, F1s and confusion equal."""
    import yaml
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold

    rep = json.loads((compare_run / "report.json").read_text())
    cfg = yaml.safe_load((compare_run / "config.yaml").read_text())
    tables = _prediction_tables(compare_run, rep)
    grid = {"n_estimators": cfg["forest_n_estimators"],
            "max_depth": [None if v <= 0 else v for v in cfg["forest_max_depth"]],
            "min_samples_leaf": cfg["forest_min_samples_leaf"]}
    assert set(rep["emotion_metrics"]) == set(CLASS_SETS)
    for cs, (labels, merge) in CLASS_SETS.items():
        rows = {}
        for split, df in tables.items():
            e = df["emotion"].map(lambda x: merge.get(x, x))
            keep = e.isin(labels).to_numpy()
            rows[split] = keep, np.array([labels.index(x) for x in e[keep]])
        (ktr, ytr), (kte, yte) = rows["train"], rows["test"]
        entry = rep["emotion_metrics"][cs]
        assert entry["labels"] == labels and entry["n_test"] == len(yte) and entry["n_train"] == len(ytr)
        assert np.bincount(ytr).min() >= cfg["cv_folds"]    # so the folds are exactly cv_folds
        groups = tables["train"]["utterance_id"].str.rsplit("_", n=1).str[0].to_numpy()[ktr]  # SynNN_dlgNNN
        for s in rep["settings"]:
            cols = [f"gold_{d}" if s["kind"] == "gold" else f"{s['name']}:{d}" for d in DIMS]
            per_seed = entry["settings"][s["name"]]["per_seed"]
            assert [r["seed"] for r in per_seed] == cfg["forest_seeds"]
            for r in per_seed:
                search = GridSearchCV(RandomForestClassifier(random_state=r["seed"]), grid,
                                      scoring=cfg["cv_scoring"],
                                      cv=StratifiedGroupKFold(cfg["cv_folds"], shuffle=True, random_state=r["seed"]))
                search.fit(tables["train"][cols].to_numpy()[ktr], ytr, groups=groups)
                y_pred = search.predict(tables["test"][cols].to_numpy()[kte])
                where = (cs, s["name"], r["seed"])
                assert r["accuracy"] == pytest.approx(accuracy_score(yte, y_pred)), where
                assert r["weighted_f1"] == pytest.approx(f1_score(yte, y_pred, average="weighted")), where
                assert r["macro_f1"] == pytest.approx(f1_score(yte, y_pred, average="macro")), where
                assert r["confusion_matrix"] == confusion_matrix(yte, y_pred, labels=range(len(labels))).tolist()
            summary = entry["settings"][s["name"]]["summary"]
            assert summary["accuracy"]["mean"] == pytest.approx(np.mean([r["accuracy"] for r in per_seed]))


def test_every_embedded_image_is_a_png(compare_run):
    """Each <img> of report.html is a base64 data URI that decodes to a complete PNG, byte for byte the
    figure file it was made from."""
    import base64
    import io
    import re

    from PIL import Image

    rep = json.loads((compare_run / "report.json").read_text())
    html = (compare_run / "report.html").read_text()
    srcs = re.findall(r"<img [^>]*src='([^']*)'", html)
    assert len(srcs) == html.count("<img ") == len(rep["figures"]) == 6
    files = {(compare_run / f).read_bytes() for f in rep["figures"].values()}
    for src in srcs:
        head, _, b64 = src.partition(",")
        assert head == "data:image/png;base64"
        data = base64.b64decode(b64, validate=True)
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
        with Image.open(io.BytesIO(data)) as im:
            im.verify()                                    # chunk CRCs
        with Image.open(io.BytesIO(data)) as im:
            im.load()                                      # every pixel decompresses
            assert im.format == "PNG" and min(im.size) >= 100
        assert data in files
    assert len({src for src in srcs}) == 6                 # six different figures


def test_rerun_reuses_cached_predictions(compare_run, tiny_encoder_dir, tmp_path, caplog):
    """A re-run reuses every cached prediction file (and says so); changing a setting that the predictions
    depend on (the anchor temperature) recomputes and rewrites that setting's file, and only that one."""
    import logging
    import shutil

    from erc.compare.run import run_compare
    from erc.core.io import read_json

    out = tmp_path / "run"                      # a copy: the module's compare_run stays as the fixture made it
    shutil.copytree(compare_run, out)
    pred = out / "predictions"
    files = sorted(p.name for p in pred.glob("*.npz"))
    finetuned = [f for f in files if f.startswith("finetuned_")]
    assert "zeroshot_anchor.npz" in files and len(finetuned) == 1 and len(files) == 2
    stamps = {f: (pred / f).stat().st_mtime_ns for f in files}
    with np.load(pred / "zeroshot_anchor.npz") as z:
        anchor_before = z["pred_test"].copy()
    base = {"model": str(tiny_encoder_dir), "output_dir": str(out), "synthetic_dialogues": 30,
            "class_sets": ["iemocap4"], "forest_seeds": [0], "forest_n_estimators": [15],
            "forest_max_depth": [0], "forest_min_samples_leaf": [1], "tsne_max_points": 80,
            "finetuned": [str(compare_run / "finetune" / "seed_0")], "train_finetuned": False, "num_threads": 1}
    with caplog.at_level(logging.INFO, logger="erc.compare.run"):
        rep = run_compare(resolve_config(CompareConfig, base), command="test")
    assert {f: (pred / f).stat().st_mtime_ns for f in files} == stamps      # nothing recomputed
    assert caplog.text.count("reusing cached predictions of") == 2
    assert [s["name"] for s in rep["settings"]][:2] == ["zero-shot anchor", "fine-tuned seed_0"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="erc.compare.run"):
        run_compare(resolve_config(CompareConfig, {**base, "anchor_temperature": 0.5}), command="test")
    assert "cached predictions of zeroshot_anchor were made with other settings: recomputing" in caplog.text
    assert (pred / "zeroshot_anchor.npz").stat().st_mtime_ns != stamps["zeroshot_anchor.npz"]
    assert read_json(pred / "zeroshot_anchor.json")["meta"]["temperature"] == 0.5
    with np.load(pred / "zeroshot_anchor.npz") as z:
        assert not np.allclose(z["pred_test"], anchor_before)             # really recomputed, not re-stamped
    assert (pred / finetuned[0]).stat().st_mtime_ns == stamps[finetuned[0]]
    assert caplog.text.count("reusing cached predictions of") == 1


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
