"""Seconds per training epoch and peak memory of the graph model, IEMOCAP-6 configuration.

A SYNTHETIC IEMOCAP-6 GraphSmile pickle at real size (151 dialogues, 7,433
utterances, text 4 x 1024 (mean of the layers), audio 1582, visual 342) is
written to a temporary file and loaded with ``erc.data.dialogues.load_splits``; the
model of ``configs/graph_iemocap6.yaml`` (hidden 512, 7/7/7 layers, batch 16
dialogues, AdamW) is trained for ``--epochs`` epochs with the real training
step (:func:`erc.graph.train.train_one_epoch` under Accelerate) for each window
(default: 3, 17 = the published setting, -1 = whole dialogue). Each window
runs in a fresh child process so its peak memory is its own.

    python bench/bench_graph_epoch.py [--num-threads 2] [--epochs 2] [--windows 3 17 -1]

Figures printed: edges per batch graph, seconds per epoch (first epoch and the
mean of the others), peak resident memory of the child (``ru_maxrss``) and, on
a GPU, ``torch.cuda.max_memory_allocated``. Nothing is asserted about speed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.num_threads)
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from erc.core.config import config_from_dict, load_yaml
    from erc.data.dialogues import load_splits, make_loader
    from erc.graph.config import GraphTrainConfig
    from erc.graph.edges import cross_modal_graph
    from erc.graph.losses import LossCombiner
    from erc.graph.train import build_model, train_one_epoch

    values = load_yaml(ROOT / "configs" / "graph_iemocap6.yaml")
    values["data"].update(path=args.pickle)
    values.update(win_p=args.window, win_f=args.window, epochs=args.epochs, progress=False)
    if args.hidden_dim:
        values["hidden_dim"] = args.hidden_dim
    cfg = config_from_dict(GraphTrainConfig, values, "bench")
    t = time.perf_counter()
    splits = load_splits(cfg.data)
    load_s = time.perf_counter() - t
    accelerator = Accelerator(cpu=args.device == "cpu")
    set_seed(0)
    model = build_model(cfg, splits)
    combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    loader = make_loader(splits.train, cfg.batch_size, shuffle=True, seed=0)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    edges = [cross_modal_graph(b.ptr, cfg.win_p, cfg.win_f, cfg.max_distance).edge_index.shape[1]
             for b in make_loader(splits.train, cfg.batch_size)]
    times = []
    for epoch in range(cfg.epochs):
        loader.set_epoch(epoch)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        train_one_epoch(model, combiner, loader, opt, accelerator, epoch, cfg)
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    out = {"window": args.window, "device": str(accelerator.device), "threads": torch.get_num_threads(),
           "train_dialogues": len(splits.train), "train_utterances": sum(len(d) for d in splits.train),
           "all_utterances": sum(v["utterances"] for v in splits.summary().values()),
           "edges_per_batch_mean": sum(edges) / len(edges), "edges_per_epoch": sum(edges),
           "load_s": load_s, "epoch_s": times,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if accelerator.device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--windows", type=int, nargs="*", default=[3, 17, -1])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--hidden-dim", type=int, default=None, help="override the config (smoke tests)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pickle", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, default=17, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from erc.data.synthetic_pickles import write_layout_pickle

    with tempfile.TemporaryDirectory() as tmp:
        path = write_layout_pickle(Path(tmp) / "iemocap6_synthetic.pkl", "iemocap6", n_dialogues=151,
                                   total_utterances=7433, min_len=20, max_len=80, seed=0,
                                   test_fraction=31 / 151)
        print(f"synthetic IEMOCAP-6 pickle: 151 dialogues, 7433 utterances, "
              f"{path.stat().st_size / 2**20:.0f} MiB; config configs/graph_iemocap6.yaml "
              f"(hidden {args.hidden_dim or 512}, layers 7/7/7, batch 16); {args.num_threads} CPU thread(s), device {args.device}")
        print(f"{'window':>8} {'edges/batch':>12} {'epoch 1 (s)':>12} {'later (s)':>10} {'peak RSS MiB':>13}"
              + ("  cuda peak MiB" if args.device == "cuda" else ""))
        env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads), "MKL_NUM_THREADS": str(args.num_threads)}
        for w in args.windows:
            cmd = [sys.executable, __file__, "--child", "--pickle", str(path), "--window", str(w),
                   "--num-threads", str(args.num_threads), "--epochs", str(args.epochs), "--device", args.device]
            if args.hidden_dim:
                cmd += ["--hidden-dim", str(args.hidden_dim)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"window {w}: child failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            later = r["epoch_s"][1:]
            later_s = f"{sum(later) / len(later):10.1f}" if later else f"{'-':>10}"
            name = "whole" if w < 0 else str(w)
            print(f"{name:>8} {r['edges_per_batch_mean']:12.0f} {r['epoch_s'][0]:12.1f} {later_s} "
                  f"{r['peak_rss_mib']:13.0f}" + (f"  {r['cuda_peak_mib']:14.0f}" if "cuda_peak_mib" in r else ""))
            print(f"         raw: {json.dumps(r)}")
        print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
