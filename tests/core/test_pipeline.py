"""The pipeline chains the four stages, skips complete ones, and redoes a forced one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from erc.core.config import ConfigError, resolve_config
from erc.pipeline import MARKER, PipelineConfig, graph_config, is_complete, stage_dir
from tests.conftest import free_port, run_processes

ROOT = Path(__file__).resolve().parents[2]

TINY = {
    "synthetic_dialogues": 30,
    "finetune": {"epochs": 1, "batch_size": 16, "num_threads": 1},
    "embed": {"batch_size": 64},
    "train_graph": {"epochs": 2, "hidden_dim": 16, "layers": [1, 1, 1], "win_p": 2, "win_f": 2, "shift_win": 3,
                    "batch_size": 8, "progress": False, "num_threads": 1},
    "compare": {"data": {"test_sessions": [5]}, "forest_seeds": [0], "forest_n_estimators": [20],
                "forest_max_depth": [0], "forest_min_samples_leaf": [1], "cv_folds": 2,
                "class_sets": ["iemocap4"], "tsne_max_points": 100, "num_threads": 1},
}


def _run(project_root, cfg_path, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "cli.py", "pipeline", "--config", str(cfg_path), *extra],
                          cwd=project_root, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout + proc.stderr


def test_stage_chaining_is_explicit(tmp_path):
    cfg = resolve_config(PipelineConfig, {"output_dir": str(tmp_path)})
    g = graph_config(cfg)
    assert g.data.text_source == "embeddings"
    assert g.data.text_embeddings == str(stage_dir(cfg, "embed") / "embeddings.npz")
    assert g.output_dir == str(tmp_path / "train_graph")
    assert not is_complete(cfg, "finetune")


def test_unknown_stage_and_section_field_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="stages"):
        resolve_config(PipelineConfig, {"stages": ["finetune", "train"]})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train_graph": {"hiden_dim": 8}}))
    cfg = resolve_config(PipelineConfig, None, bad)
    with pytest.raises(ConfigError, match="hiden_dim"):
        graph_config(cfg)


def test_pipeline_end_to_end_then_skip_then_force(tmp_path, project_root):
    out = tmp_path / "run"
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(out)}))
    log = _run(project_root, cfg_path)
    for stage in ("finetune", "embed", "train_graph", "compare"):
        assert (out / stage / MARKER).is_file(), stage
    assert (out / "compare" / "report.html").is_file()
    assert (out / "finetune" / "best_model").is_dir()
    summary = (out / "summary.md").read_text()
    assert "compare/report.html" in summary and "train_graph/results.json" in summary
    report = json.loads((out / "compare" / "report.json").read_text())
    emotion = report["emotion_metrics"]["iemocap4"]["settings"]
    assert len(emotion) >= 3 and any("gold" in n for n in emotion)      # zero-shot, fine-tuned, gold
    for name, entry in emotion.items():                                   # the forest figures, per setting
        acc, wf1 = entry["summary"]["accuracy"], entry["summary"]["weighted_f1"]
        r = (report["vad_metrics"].get(name) or {}).get("test", {}).get("valence_pearson")
        assert (f"| {name} | {'-' if r is None else f'{r:.3f}'} | " in summary and
                f"| {acc['mean']:.3f} ± {acc['std']:.3f} | {wf1['mean']:.3f} ± {wf1['std']:.3f} |" in summary), name
    graph = json.loads((out / "train_graph" / "results.json").read_text())
    assert f"| test_weighted_f1 | {graph['test_weighted_f1_mean']:.3f} |" in summary
    assert "report:" in log

    # A second run finds every stage complete and redoes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)}
    log = _run(project_root, cfg_path)
    assert log.count("skipped") >= 4
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)} == mtimes

    # --force compare redoes only that stage.
    log = _run(project_root, cfg_path, "--force", "compare")
    new = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)}
    assert new["compare"] != mtimes[out / "compare" / MARKER]
    assert all(new[s] == mtimes[out / s / MARKER] for s in ("finetune", "embed", "train_graph"))
    marker = json.loads((out / "compare" / MARKER).read_text())
    assert marker["stage"] == "compare" and marker["seconds"] > 0


def test_pipeline_embed_cross_fit_fine_tunes_its_folds_inside_the_embed_stage(tmp_path, project_root):
    out = tmp_path / "run"
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "stages": ["finetune", "embed"], "output_dir": str(out),
                                        "embed": {"batch_size": 64, "cross_fit": 2}}))
    _run(project_root, cfg_path)
    for fold, train in (("fold_1-2", [3]), ("fold_3", [1, 2])):      # the finetune trains on sessions 1-3
        assert json.loads((out / "embed" / "cross_fit" / fold / "metrics.json").read_text())["sessions"]["train"] == train
    record = json.loads((out / "embed" / "embeddings.npz.cross_fit.json").read_text())
    assert [e["name"] for e in record["encoders"]] == ["fold_1-2", "fold_3", "full"]
    assert record["encoders"][-1]["model"] == str(out / "finetune" / "best_model")
    summary = (out / "summary.md").read_text()
    assert "## Embeddings, cross-fitted (2 folds)" in summary and "| fold_3 | [3] | [1, 2] |" in summary


def test_incomplete_stage_reruns(tmp_path, project_root):
    """A stage folder without its marker (an interrupted run) is not taken as complete."""
    cfg = resolve_config(PipelineConfig, {"output_dir": str(tmp_path)})
    d = stage_dir(cfg, "embed")
    d.mkdir(parents=True)
    (d / "embeddings.npz").write_bytes(b"partial")
    assert not is_complete(cfg, "embed")
    (d / MARKER).write_text("{}")
    assert is_complete(cfg, "embed")


@pytest.mark.slow
def test_pipeline_two_processes(tmp_path, project_root):
    """`accelerate launch --multi_gpu --num_processes 2 cli.py pipeline` on CPU: every stage runs, the
    training stages in 2 processes, and the process group survives from one stage to the next."""
    out = tmp_path / "run2"
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "output_dir": str(out)}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           "cli.py", "pipeline", "--config", str(cfg_path)]
    proc = run_processes(cmd, cwd=project_root, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert json.loads((out / "train_graph" / "results.json").read_text())["num_processes"] == 2
    assert (out / "compare" / "report.html").is_file() and (out / "summary.md").is_file()


def test_second_pipeline_run_with_another_config_is_refused_then_overwrite(tmp_path):
    """A complete stage is skipped only with the same run identity: another lr or data stops the pipeline
    before it writes anything, naming the stage and the fields; --overwrite clears the folder and reruns."""
    from erc.core.config import config_from_dict
    from erc.core.runs import RunMismatchError
    from erc.pipeline import run_pipeline

    out = tmp_path / "p"
    base = {"output_dir": str(out), "stages": ["finetune"], "synthetic_dialogues": 12,
            "finetune": {"epochs": 1, "batch_size": 16, "num_threads": 1, "plots": False}}
    run_pipeline(config_from_dict(PipelineConfig, base))
    marker = out / "finetune" / MARKER
    before = {str(p): p.stat().st_mtime_ns for p in out.rglob("*")}
    run_pipeline(config_from_dict(PipelineConfig, base))                       # same config: skipped
    stage_files = {k: v for k, v in before.items() if "/finetune/" in k}
    assert {str(p): p.stat().st_mtime_ns for p in (out / "finetune").rglob("*")} == stage_files
    snapshot = {str(p): p.stat().st_mtime_ns for p in out.rglob("*")}
    changed = {**base, "synthetic_dialogues": 14, "finetune": {**base["finetune"], "lr": 1.0e-3}}
    with pytest.raises(RunMismatchError) as err:
        run_pipeline(config_from_dict(PipelineConfig, changed))
    msg = str(err.value)
    assert "finetune (" in msg and "lr 0.002 -> 0.001" in msg and "data.synthetic_dialogues 12 -> 14" in msg
    assert "--force finetune" in msg and "--overwrite" in msg and "--output-dir" in msg
    assert {str(p): p.stat().st_mtime_ns for p in out.rglob("*")} == snapshot   # nothing written
    run_pipeline(config_from_dict(PipelineConfig, {**changed, "overwrite": True}))
    assert json.loads((out / "finetune" / "run.json").read_text())["config"]["lr"] == 1.0e-3
    assert marker.stat().st_mtime_ns != before[str(marker)]


def test_model_flag_sets_the_base_encoder_of_finetune_and_compare_only():
    """`pipeline --model PATH` fine-tunes PATH and uses it for the zero-shot setting; embed uses the
    fine-tuned folder; without the flag each section keeps its own model."""
    from erc.core.config import resolve_config
    from erc.pipeline import PipelineConfig, compare_config, embed_config, finetune_config

    yaml = ROOT / "configs" / "pipeline_iemocap_minilm.yaml"
    cfg = resolve_config(PipelineConfig, {"model": "/models/minilm"}, yaml)
    assert finetune_config(cfg).model == "/models/minilm" and compare_config(cfg).model == "/models/minilm"
    assert embed_config(cfg).model == str(Path("runs/pipeline_iemocap_minilm/finetune/best_model"))
    assert finetune_config(cfg).data.test_sessions == [4] and 5 not in finetune_config(cfg).data.train_sessions
    plain = resolve_config(PipelineConfig, {"compare": {"model": "builtin:tiny"}, "finetune": {"model": "x"}})
    assert finetune_config(plain).model == "x" and compare_config(plain).model == "builtin:tiny"


def test_cross_fit_under_several_processes_is_refused_before_anything_runs(tmp_path, monkeypatch):
    """The fold fine-tunings run inside the embed stage, on the main process only: with two processes
    the pipeline says so up front instead of waiting forever at a barrier."""
    import accelerate

    from erc.pipeline import run_pipeline

    class TwoProcesses:
        num_processes, is_main_process = 2, True

        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(accelerate, "PartialState", TwoProcesses)
    cfg = resolve_config(PipelineConfig, {**TINY, "stages": ["finetune", "embed"], "output_dir": str(tmp_path / "run"),
                                          "embed": {"cross_fit": 2}})
    with pytest.raises(ConfigError, match="cross_fit .* --num_processes 1"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_graph_variants_train_in_their_own_folders_and_report_side_by_side(tmp_path, project_root):
    """graph_variants: one more train-graph run per entry on the same embeddings, its section merged
    over train_graph (text only here, beside the text + audio + visual default), each in
    train_graph_<name>/ and in the summary; re-run skips them, a changed variant is named, --force
    train-graph redoes every variant."""
    out = tmp_path / "run"
    variants = {"text_only": {"data": {"modalities": ["text"]}, "layers": [1]}}
    body = {**TINY, "stages": ["finetune", "embed", "train-graph"], "output_dir": str(out), "graph_variants": variants}
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump(body))
    _run(project_root, cfg_path)
    base = json.loads((out / "train_graph" / "results.json").read_text())
    text = json.loads((out / "train_graph_text_only" / "results.json").read_text())
    assert base["modalities"] == ["text", "audio", "visual"] and text["modalities"] == ["text"]
    for folder in ("train_graph", "train_graph_text_only"):
        marker = json.loads((out / folder / MARKER).read_text())
        assert marker["stage"] == "train-graph" and marker.get("variant") == ("text_only" if "text" in folder else None)
    run_cfg = yaml.safe_load((out / "train_graph_text_only" / "config.yaml").read_text())
    assert run_cfg["hidden_dim"] == TINY["train_graph"]["hidden_dim"] and run_cfg["layers"] == [1]   # merged
    assert run_cfg["data"]["text_embeddings"] == str(out / "embed" / "embeddings.npz")
    summary = (out / "summary.md").read_text()
    assert "| train-graph[text_only] | [train_graph_text_only/](train_graph_text_only/) |" in summary
    assert "(test at the best validation epoch): variant `text_only`" in summary
    assert f"| test_weighted_f1 | {text['test_weighted_f1_mean']:.3f} |" in summary
    assert f"| test_weighted_f1 | {base['test_weighted_f1_mean']:.3f} |" in summary
    side = summary.split("## Graph runs side by side")[1]
    rows = {line.split(" | ")[0]: line for line in side.splitlines() if line.startswith("| ") and "](" in line}
    picked = "text_only" if text["valid_weighted_f1_mean"] > base["valid_weighted_f1_mean"] else "train_graph"
    for name, folder, mods, r in (("text_only", "train_graph_text_only", "text", text),
                                  ("train_graph", "train_graph", "text, audio, visual", base)):
        link = f"[{name}]({folder}/)"
        key = f"| **{link}** (selected)" if name == picked else f"| {link}"
        assert rows[key].endswith(
            f" | synthetic | {mods} | run/finetune/best_model † | 1 | {r['per_seed'][0]['best_epoch']} | "
            f"{r['valid_weighted_f1_mean']:.3f} ± 0.000 | {r['test_weighted_f1_mean']:.3f} ± 0.000 | "
            f"{r['test_accuracy_mean']:.3f} ± 0.000 |"), rows
    picked_link = "[text_only](train_graph_text_only/)" if picked == "text_only" else "[train_graph](train_graph/)"
    assert f"Selected on validation weighted_f1 (mean over seeds): **{picked_link}**" in side

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)}
    log = _run(project_root, cfg_path)
    assert "stage train-graph[text_only]: complete" in log
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)} == mtimes

    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump({**body, "graph_variants": {"text_only": {**variants["text_only"], "lr": 0.5}}}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "cli.py", "pipeline", "--config", str(changed)], cwd=project_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "train-graph[text_only] (lr" in proc.stderr and "--force train-graph" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)} == mtimes

    _run(project_root, cfg_path, "--force", "train-graph")
    new = {p: p.stat().st_mtime_ns for p in out.glob("*/" + MARKER)}
    assert new[out / "train_graph_text_only" / MARKER] != mtimes[out / "train_graph_text_only" / MARKER]
    assert new[out / "train_graph" / MARKER] != mtimes[out / "train_graph" / MARKER]
    assert new[out / "embed" / MARKER] == mtimes[out / "embed" / MARKER]


@pytest.mark.parametrize("body, match", [
    ({"graph_variants": {"a/b": {}}}, "variant name 'a/b'"),
    ({"stages": ["finetune", "embed"], "graph_variants": {"t": {}}}, "vary train-graph, which is not in stages"),
    ({"graph_variants": {"t": {"hiden_dim": 8}}}, r"graph_variants.t.*hiden_dim"),
    ({"graph_variants": {"t": [1]}}, "graph_variants.t: expected a mapping"),
])
def test_bad_graph_variants_are_refused_before_anything_is_written(tmp_path, body, match):
    from erc.pipeline import plan

    cfg = resolve_config(PipelineConfig, {**body, "output_dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match=match):
        plan(cfg)
    assert not (tmp_path / "run").exists()


def test_stages_with_different_mixed_precision_run_in_one_pipeline(tmp_path, project_root):
    """Accelerate keeps one AcceleratorState per process; each stage gets its own precision all the same."""
    out = tmp_path / "run"
    cfg_path = tmp_path / "pipeline.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "stages": ["finetune", "embed", "train-graph"],
                                        "output_dir": str(out),
                                        "finetune": {**TINY["finetune"], "mixed_precision": "bf16"}}))
    _run(project_root, cfg_path)
    assert yaml.safe_load((out / "finetune" / "config.yaml").read_text())["mixed_precision"] == "bf16"
    assert yaml.safe_load((out / "train_graph" / "config.yaml").read_text())["mixed_precision"] == "no"
    assert (out / "summary.md").is_file()
