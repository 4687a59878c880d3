"""The graph bench's child runs end to end on a small pickle and reports every figure issue 11 names.

The bench itself is not timed here; this catches the bench drifting from the training code
(an import renamed, a config field moved) before someone needs its figures.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from erc.data.synthetic_pickles import write_layout_pickle
from erc.data.dialogues import make_loader
from erc.graph.edges import cross_modal_graph

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"train_epoch_s", "eval_test_s", "floor_s", "floor_ratio", "peak_rss_mib", "edges_per_batch",
        "eval_floor_s", "eval_floor_ratio", "release_memory"}


def test_bench_child_reports_every_figure(tmp_path):
    pkl = write_layout_pickle(tmp_path / "small.pkl", "iemocap6", n_dialogues=10, total_utterances=160,
                              min_len=8, max_len=24, seed=0, test_fraction=0.3)
    cmd = [sys.executable, str(ROOT / "bench" / "bench_graph_epoch.py"), "--child", "--pickle", str(pkl),
           "--window", "3", "--epochs", "2", "--eval-reps", "1", "--hidden-dim", "8", "--num-threads", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT "):])
    assert KEYS <= r.keys()
    assert r["floor_ratio"] == r["train_epoch_s"] / r["floor_s"]
    assert r["eval_floor_ratio"] == r["eval_test_s"] / r["eval_floor_s"]
    assert r["window"] == 3 and r["hidden_dim"] == 8 and len(r["epoch_s"]) == 2
    assert r["release_memory"] is False and len(r["eval_s"]) == len(r["eval_floor_s_all"]) == 1
    assert "eval_int8_s" not in r                       # only with --int8
    lean = subprocess.run(cmd + ["--release-memory", "--int8"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert lean.returncode == 0, lean.stderr[-2000:]
    line = [ln for ln in lean.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    q = json.loads(line[len("RESULT "):])
    assert q["release_memory"] is True
    assert len(q["eval_int8_s_all"]) == 1 and q["eval_int8_s"] == q["eval_int8_s_all"][0] > 0
    assert 0.5 <= q["int8_argmax_agreement"] <= 1.0    # the int8 copy of the same trained model

    # edges_per_batch is the mean edge count of the training batches at window 3/3
    from erc.core.config import config_from_dict, load_yaml
    from erc.data.dialogues import load_splits
    from erc.graph.config import GraphTrainConfig

    values = load_yaml(ROOT / "configs" / "graph_iemocap6.yaml")
    values["data"].update(path=str(pkl))
    cfg = config_from_dict(GraphTrainConfig, values, "test")
    train = load_splits(cfg.data).train
    counts = [cross_modal_graph(b.ptr, 3, 3, cfg.max_distance).edge_index.shape[1]
              for b in make_loader(train, cfg.batch_size)]
    assert r["edges_per_batch"] == sum(counts) / len(counts)
    assert r["train_utterances"] == sum(len(d) for d in train)
