"""Peak RSS of graph training alone (no floor model, no test passes): the quick memory figure of issue 29.

Reads a bench pickle (``bench_graph_epoch.write_bench_pickle``), trains ``--epochs`` epochs of
``configs/graph_iemocap6.yaml`` with the real step and prints one JSON line: peak RSS, RSS after
loading, seconds, and the epoch losses (equal losses across code versions = the same training).
The allocator knobs are flags so that one code version can be measured with and without them
(train-graph itself applies both when ``release_memory`` is on); ``PYTHONPATH`` picks the code.

    python bench/graph_memory_probe.py PICKLE [--hidden-dim 512] [--epochs 1] [--trim-after-load]
                                       [--mallopt THRESHOLD ARENAS]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))   # PYTHONPATH first: it picks the code version measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pickle")
    ap.add_argument("--hidden-dim", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--recompute-graphs", action="store_true", help="train-graph's recompute_graphs on")
    ap.add_argument("--release-memory", action="store_true",
                    help="train-graph's release_memory on (lean heap and a trim after every step)")
    ap.add_argument("--trim-after-load", action="store_true", help="malloc_trim(0) after reading the data")
    ap.add_argument("--mallopt", type=int, nargs=2, metavar=("MMAP_THRESHOLD", "ARENA_MAX"), default=None,
                    help="glibc mallopt before anything is allocated (0 leaves a value alone)")
    args = ap.parse_args()
    libc = ctypes.CDLL("libc.so.6")
    if args.mallopt:
        if args.mallopt[0]:
            libc.mallopt(-3, args.mallopt[0])    # M_MMAP_THRESHOLD
        if args.mallopt[1]:
            libc.mallopt(-8, args.mallopt[1])    # M_ARENA_MAX
    import torch

    torch.set_num_threads(args.num_threads)
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    from erc.core.config import config_from_dict, load_yaml
    from erc.core.harness import fused_adamw, training_heap
    from erc.data.dialogues import load_splits, make_loader
    from erc.graph.config import GraphTrainConfig
    from erc.graph.losses import LossCombiner
    from erc.graph.train import build_model, train_one_epoch

    def rss() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    values = load_yaml(ROOT / "configs" / "graph_iemocap6.yaml")
    values["data"].update(path=args.pickle)
    values.update(epochs=args.epochs, progress=False, hidden_dim=args.hidden_dim,
                  recompute_graphs=args.recompute_graphs, release_memory=args.release_memory)
    cfg = config_from_dict(GraphTrainConfig, values, "probe")
    if args.release_memory:
        training_heap(True)
    splits = load_splits(cfg.data)
    if args.trim_after_load:
        libc.malloc_trim(0)
    rss_after_load = rss()
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    set_seed(0)
    model = build_model(cfg, splits)
    combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
    opt = fused_adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    model, opt, loader = accelerator.prepare(model, opt, make_loader(splits.train, cfg.batch_size, shuffle=True, seed=0))
    t, cpu, losses = time.perf_counter(), time.process_time(), []
    for epoch in range(cfg.epochs):
        loader.set_epoch(epoch)
        losses.append(train_one_epoch(model, combiner, loader, opt, accelerator, epoch, cfg)["loss"])
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_after_load_mib": rss_after_load, "train_s": time.perf_counter() - t,
                      "train_cpu_s": time.process_time() - cpu, "losses": losses,
                      "hidden_dim": args.hidden_dim, "trim_after_load": args.trim_after_load,
                      "recompute_graphs": args.recompute_graphs, "release_memory": args.release_memory,
                      "mallopt": args.mallopt}), flush=True)


if __name__ == "__main__":
    main()
