"""Seconds per training epoch and peak memory of each baseline (DialogueRNN, DialogueGCN, MLP) on real data.

Each method runs ``train-baseline`` itself (:func:`erc.baselines.train.run_train_baseline`: the real
step under Accelerate, validation every epoch, test at each new best validation epoch) with its
``configs/baseline_<method>_<dataset>.yaml`` for a few epochs and one seed, in a fresh child
process so its peak memory is its own. Per method:

* ``epoch_s``: training seconds of each epoch (forward, loss, backward, Adam; ``train_seconds`` of
  ``epochs.csv``); ``train_epoch_s``: their median after the first epoch (all of them when there
  is only one); ``epoch_cpu_s`` / ``train_epoch_cpu_s``: the same in CPU seconds of the process (all
  its threads; on a shared, busy machine the wall time also counts the waits for a core);
* ``epoch_wall_s``: the child's wall time per epoch, training + validation + test + saving the best
  model (data loading excluded);
* ``peak_rss_mib``: the child's ``ru_maxrss`` (data loading included); ``rss_after_load_mib``:
  after reading the data.

    ERC_DATA_DIR=/work/shared/data python bench/bench_baselines.py \\
        --text-embeddings runs/emb/cosmic_iemocap.npz [--dataset cosmic_iemocap] [--num-threads 2] \\
        [--epochs 2] [--methods dialoguernn dialoguegcn mlp] [--device cpu|cuda] [--mixed-precision no|bf16] [--json]

``--mixed-precision bf16`` trains under Accelerate's bf16 autocast (the config field ``mixed_precision``;
on CPU it pays only where the processor has native bf16, e.g. ``avx512_bf16`` / AMX).

``--json`` prints one JSON object per method on stdout (the table goes to stderr). Nothing is
asserted about speed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("dialoguernn", "dialoguegcn", "mlp")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(args: argparse.Namespace) -> dict:
    """One method in this process; returns its figures."""
    sys.path.insert(0, str(ROOT))
    import pandas as pd

    from erc.baselines.config import BaselineTrainConfig
    from erc.baselines.train import run_train_baseline
    from erc.core.config import resolve_config
    from erc.data.dialogues import load_splits

    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"
    out = Path(tempfile.mkdtemp(prefix=f"bench_{args.one}_"))
    cfg = resolve_config(BaselineTrainConfig, {
        "data": {"text_embeddings": args.text_embeddings}, "epochs": args.epochs, "seeds": 1,
        "num_threads": args.num_threads, "mixed_precision": args.mixed_precision, "checkpoint": False,
        "progress": False, "output_dir": str(out)},
        ROOT / "configs" / f"baseline_{args.one}_{args.dataset}.yaml")
    import torch

    torch.set_num_threads(args.num_threads)
    splits = load_splits(cfg.data)
    after_load = rss_mib()
    t0 = time.perf_counter()
    summary = run_train_baseline(cfg, splits=splits)
    wall = time.perf_counter() - t0
    hist = pd.read_csv(out / "epochs.csv")
    secs = [float(s) for s in hist.train_seconds]
    cpu = [float(s) for s in hist.train_cpu_seconds]
    steady, steady_cpu = secs[1:] or secs, cpu[1:] or cpu
    return {"method": args.one, "dataset": args.dataset, "num_threads": args.num_threads, "device": args.device,
            "mixed_precision": cfg.mixed_precision,
            "epochs": len(secs), "train_epoch_s": statistics.median(steady), "epoch_s": secs,
            "train_epoch_cpu_s": statistics.median(steady_cpu), "epoch_cpu_s": cpu,
            "epoch_wall_s": wall / max(len(secs), 1), "peak_rss_mib": rss_mib(), "rss_after_load_mib": after_load,
            "train_utterances": sum(len(d) for d in splits.train),
            "valid_weighted_f1_last": float(hist.valid_weighted_f1.iloc[-1]),
            "output_dir": str(out), "causal": summary["causal"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--text-embeddings", required=True, help="embeddings file from `cli.py embed` for the dataset")
    p.add_argument("--dataset", default="cosmic_iemocap", choices=("cosmic_iemocap", "cosmic_meld"))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--num-threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "auto"),
                   help="Accelerate mixed precision of the training step (auto: bf16 where the device has it)")
    p.add_argument("--json", action="store_true", help="one JSON object per method on stdout")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)      # child mode
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return
    rows = []
    for m in args.methods:
        cmd = [sys.executable, __file__, "--one", m, "--text-embeddings", args.text_embeddings, "--dataset",
               args.dataset, "--epochs", str(args.epochs), "--num-threads", str(args.num_threads),
               "--device", args.device, "--mixed-precision", args.mixed_precision]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"{m}: the child failed (exit {proc.returncode})")
        row = json.loads(line[-1][len("RESULT "):])
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    out = sys.stderr if args.json else sys.stdout
    print(f"\n{args.dataset}, {args.num_threads} thread(s), {args.device}, mixed precision "
          f"{rows[0]['mixed_precision'] if rows else args.mixed_precision}, {args.epochs} epoch(s), one seed", file=out)
    print("| method | train epoch, wall (s) | train epoch, CPU (s) | epochs, wall (s) | epoch incl. eval, wall (s) | "
          "peak RSS (MiB) | RSS after load (MiB) |", file=out)
    print("|---|---|---|---|---|---|---|", file=out)
    for r in rows:
        print(f"| {r['method']} | {r['train_epoch_s']:.1f} | {r['train_epoch_cpu_s']:.1f} | "
              f"{', '.join(f'{s:.1f}' for s in r['epoch_s'])} | {r['epoch_wall_s']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_after_load_mib']:.0f} |", file=out)


if __name__ == "__main__":
    main()
