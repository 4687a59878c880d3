"""Loading time and peak memory of a SYNTHETIC IEMOCAP-6 GraphSmile pickle at real size.

151 dialogues, 7,433 utterances, all four 1024-d text layers, audio 1582, visual 342
(the 12-tuple layout of erc.data.registry's ``iemocap6``), written to a temporary file,
then loaded with ``erc.data.dialogues.load_splits`` for several text modes. Prints figures;
asserts nothing about speed.

    python bench/bench_fusion_load.py [--repeats 3] [--text-modes mean concat 0]

Peak memory: ``tracemalloc`` peak of Python/numpy allocations during the load (numpy
reports its buffers to tracemalloc), and the process's max RSS (``ru_maxrss``) at the end.
"""
from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erc.data.config import DialogueDataConfig  # noqa: E402
from erc.data.dialogues import load_splits, make_loader  # noqa: E402
from erc.data.synthetic_pickles import write_layout_pickle  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--text-modes", nargs="*", default=["mean", "concat", "0"])
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_layout_pickle(Path(tmp) / "iemocap6_synthetic.pkl", "iemocap6", n_dialogues=151,
                                   total_utterances=7433, min_len=20, max_len=80, seed=0,
                                   test_fraction=31 / 151)
        print(f"wrote synthetic IEMOCAP-6 pickle: {path.stat().st_size / 2**20:.1f} MiB "
              f"in {time.perf_counter() - t0:.1f} s")
        for mode in args.text_modes:
            cfg = DialogueDataConfig(dataset="iemocap6", path=str(path), modalities=["text", "audio", "visual"],
                                     text_mode=mode)
            times, peaks = [], []
            for _ in range(args.repeats):
                gc.collect()
                tracemalloc.start()
                t = time.perf_counter()
                splits = load_splits(cfg)
                times.append(time.perf_counter() - t)
                peaks.append(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
                summary = splits.summary()
                del splits
            n_d = sum(v["dialogues"] for v in summary.values())
            n_u = sum(v["utterances"] for v in summary.values())
            print(f"text_mode={mode:6s} dialogues={n_d} utterances={n_u} "
                  f"(train/valid/test {summary['train']['dialogues']}/{summary['valid']['dialogues']}/"
                  f"{summary['test']['dialogues']}): load {min(times):.2f} s best, "
                  f"{sum(times) / len(times):.2f} s mean of {len(times)}; "
                  f"peak traced memory {max(peaks):.0f} MiB")
        splits = load_splits(DialogueDataConfig(dataset="iemocap6", path=str(path),
                                                modalities=["text", "audio", "visual"], text_mode="mean"))
        t = time.perf_counter()
        n = sum(b.num_nodes for b in make_loader(splits.train, batch_size=16, shuffle=True, seed=0))
        print(f"one epoch of training batches (batch 16 dialogues, {n} utterances): "
              f"{time.perf_counter() - t:.3f} s")
    print(f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
