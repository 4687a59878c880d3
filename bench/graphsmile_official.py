"""Run the official GraphSmile code (github.com/lijfrank-open/GraphSmile) on CPU, one process, for the bench.

The official ``run.py`` is written for CUDA + DistributedDataParallel (NCCL, ``mp.spawn``
over the GPUs). :class:`OfficialGraphSmile` copies a checkout to a temp folder and patches
that copy's ``run.py`` at run time, never the checkout and never this repository:

* DDP on one CPU process (``gloo`` instead of ``nccl``, no ``cuda.set_device``, the model on
  CPU, ``main(0)`` instead of ``mp.spawn`` over zero GPUs; ``--no_cuda`` keeps the model on CPU);
* ``IEMOCAP_path`` points at the bench pickle (IEMOCAP-6 layout);
* the CUDA memory print after epoch 2 is skipped;
* ``torch.set_num_threads`` and a timer around ``train_or_eval_model`` (calls in the order
  train, valid, test per epoch) plus the process's peak RSS are added, printed as
  ``ERC_BENCH ...`` lines.

Every patch must match its text exactly once, else a clear error names it: a changed
upstream file fails loudly instead of being timed half-patched. The model, the trainer and
the data loader run unchanged, at the README's IEMOCAP-6 settings (hidden 512, layers
7/7/7, window 17, batch 16, dropout 0.2, shift_win 19, lambda 1/1/0.7, lr 1e-4).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

#: (what, old text, new text) applied to the copy of run.py; each old text must occur exactly once.
RUN_PATCHES = (
    ("NCCL process group", 'dist.init_process_group(backend="nccl", init_method="env://")',
     'dist.init_process_group(backend="gloo", init_method="env://", rank=0, world_size=1)'),
    ("cuda.set_device", "torch.cuda.set_device(local_rank)", "pass"),
    ("model to GPU", "model = model.to(local_rank)", 'model = model.to("cpu")'),
    ("DDP device ids", "device_ids=[local_rank],\n        output_device=local_rank,",
     "device_ids=None,\n        output_device=None,"),
    ("world size", 'os.environ["WORLD_SIZE"] = str(world_size)', 'os.environ["WORLD_SIZE"] = "1"'),
    ("mp.spawn over GPUs", "mp.spawn(fn=main, args=(), nprocs=n_gpus)", "main(0)"),
    ("IEMOCAP path", 'IEMOCAP_path = ""', "IEMOCAP_path = os.environ['ERC_BENCH_PICKLE']"),
    ("CUDA memory print", "if epoch == 1:\n            allocated_memory", "if False:\n            allocated_memory"),
    ("timer", "from trainer import train_or_eval_model, seed_everything", """\
from trainer import train_or_eval_model as _erc_official_step, seed_everything
import atexit as _erc_atexit, resource as _erc_resource, time as _erc_time
torch.set_num_threads(int(os.environ.get("ERC_BENCH_THREADS", "2")))
def train_or_eval_model(*a, **k):   # added by the erc bench: time each call (train, valid, test per epoch)
    _t0, _c0 = _erc_time.perf_counter(), _erc_time.process_time()
    _out = _erc_official_step(*a, **k)
    print("ERC_BENCH call", _erc_time.perf_counter() - _t0, _erc_time.process_time() - _c0, flush=True)
    return _out
_erc_atexit.register(lambda: print("ERC_BENCH peak_rss_kib",
                                   _erc_resource.getrusage(_erc_resource.RUSAGE_SELF).ru_maxrss, flush=True))"""),
)
FILES = ("run.py", "model.py", "module.py", "trainer.py", "dataloader.py", "utils.py")


class OfficialGraphSmile:
    """A checkout of the official code; :meth:`run` trains it on a pickle and returns the bench's figures."""

    def __init__(self, checkout: str | Path):
        self.checkout = Path(checkout)
        missing = [f for f in FILES if not (self.checkout / f).is_file()]
        if missing:
            raise SystemExit(f"--compare-official {self.checkout}: not a GraphSmile checkout (missing {missing}; "
                             "expected the files of github.com/lijfrank-open/GraphSmile)")
        patch_run_py((self.checkout / "run.py").read_text(), self.checkout / "run.py")   # fail early

    def run(self, pickle_path: Path, workdir: Path, window: int, epochs: int, num_threads: int,
            hidden_dim: int = 512, env: dict | None = None) -> tuple[dict | None, str]:
        """Train ``epochs`` epochs at window ``window`` in a fresh process; ``(figures, "")`` or ``(None, error)``."""
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        for f in FILES:
            shutil.copy2(self.checkout / f, workdir / f)
        (workdir / "run.py").write_text(patch_run_py((self.checkout / "run.py").read_text(), self.checkout / "run.py"))
        (workdir / "results").mkdir()          # run.py appends its record there at the end
        win = ["-1", "-1"] if window < 0 else [str(window), str(window)]
        cmd = [sys.executable, "-u", "run.py", "--no_cuda", "--classify", "emotion", "--dataset", "IEMOCAP",
               "--epochs", str(epochs), "--textf_mode", "textf0", "--loss_type", "emo_sen_sft", "--lr", "1e-04",
               "--batch_size", "16", "--hidden_dim", str(hidden_dim), "--win", *win,
               "--heter_n_layers", "7", "7", "7", "--drop", "0.2", "--shift_win", "19",
               "--lambd", "1.0", "1.0", "0.7", "--port", "29533"]
        run_env = {**(env or {}), "ERC_BENCH_PICKLE": str(pickle_path), "ERC_BENCH_THREADS": str(num_threads),
                   "CUDA_VISIBLE_DEVICES": ""}
        run_env.pop("PYTHONPATH", None)        # the official code imports its own modules from its folder
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=run_env)
        calls = [(float(ln.split()[2]), float(ln.split()[3])) for ln in proc.stdout.splitlines()
                 if ln.startswith("ERC_BENCH call")]
        peak = [int(ln.split()[2]) for ln in proc.stdout.splitlines() if ln.startswith("ERC_BENCH peak_rss_kib")]
        if proc.returncode != 0 or len(calls) != 3 * epochs or not peak:
            return None, f"official run.py exit {proc.returncode}, {len(calls)} timed calls\n" + proc.stderr[-3000:]
        return figures(calls, peak[-1], window), ""


def patch_run_py(text: str, name: Path) -> str:
    """``run.py`` with :data:`RUN_PATCHES` applied; SystemExit naming the patch whose text is not found once."""
    for what, old, new in RUN_PATCHES:
        n = text.count(old)
        if n != 1:
            raise SystemExit(f"{name}: cannot patch '{what}' for CPU: expected its text once, found it {n} times "
                             f"(the official code changed?): {old.splitlines()[0]!r}")
        text = text.replace(old, new)
    return text


def figures(calls: list[tuple[float, float]], peak_rss_kib: int, window: int) -> dict:
    """The bench's figures from the timed calls ((wall, CPU) s; train, valid, test per epoch) and the peak RSS."""
    train, test = calls[0::3], calls[2::3]

    def after_first(xs):
        return statistics.median(xs[1:] if len(xs) > 1 else xs)

    return {"window": window, "program": "official", "epoch_s": [w for w, _ in train],
            "epoch_cpu_s": [c for _, c in train], "eval_s": [w for w, _ in test],
            "train_epoch_s": after_first([w for w, _ in train]), "train_epoch_cpu_s": after_first([c for _, c in train]),
            "eval_test_s": statistics.median(w for w, _ in test), "peak_rss_mib": peak_rss_kib / 1024}


if __name__ == "__main__":   # python bench/graphsmile_official.py CHECKOUT PICKLE [EPOCHS]: one run, JSON out
    fig, err = OfficialGraphSmile(sys.argv[1]).run(Path(sys.argv[2]).resolve(), Path("/tmp/erc_official_run"), 17,
                                                   int(sys.argv[3]) if len(sys.argv) > 3 else 2, 2)
    print(json.dumps(fig) if fig else err)
