"""Seconds per training epoch, distance to the dense floor and peak memory of the graph model (IEMOCAP-6).

The pickle is in GraphSmile's IEMOCAP-6 layout at real size: with the real data folder
present, the real COSMIC IEMOCAP dialogue ids, lengths, speakers, labels and split (151
dialogues, 7,433 utterances, test = the 31 session-5 dialogues); without it, synthetic
lengths of the same totals. Features are random of the real dims (text 4 x 1024, audio
1582, visual 342). The model of ``configs/graph_iemocap6.yaml`` (hidden 512, layers 7/7/7,
batch 16, AdamW) is trained with the real step (:func:`erc.graph.train.train_one_epoch`
under Accelerate) for each window (default 3, 17 = published, -1 = whole dialogue), each
window in a fresh child process so its peak memory is its own. Per window:

* ``train_epoch_s``: median of the epochs after the first (``epoch_s`` lists them all);
* ``eval_test_s``: median test pass (31 dialogues, :func:`erc.graph.infer.run_inference`) under
  ``torch.inference_mode``; ``eval_floor_s``: the same pass with the floor model (below), and
  ``eval_floor_ratio = eval_test_s / eval_floor_s``: the test pass's distance to its own dense limit;
  with ``--int8`` also ``eval_int8_s``: the same pass with the trained model's int8 copy
  (:mod:`erc.graph.quantize`) and ``int8_argmax_agreement``: the share of test utterances whose
  predicted class is the float model's;
* ``floor_s``: the same model with message passing replaced by the identity
  (``propagation="identity"``: projections, every layer's X.W and branch Linear, fusion,
  heads, losses, forward + backward + AdamW) on the same batches (same ``set_epoch``
  permutations), median of the epochs after the first; ``floor_ratio = train_epoch_s / floor_s``;
* ``peak_rss_mib``: the child's ``ru_maxrss``; ``rss_after_load_mib``: after reading the data;
* ``edges_per_batch``: edges of one pair graph per training batch (mean; 3 pair graphs per batch).

* ``train_epoch_cpu_s``: the same epochs' CPU time (all threads), steadier than wall time on a shared machine.

    python bench/bench_graph_epoch.py [--json] [--propagation csr|edgewise] [--num-threads 2] [--epochs 3]
                                      [--windows 3 17 -1] [--release-memory] [--recompute-graphs] [--profile]
                                      [--device cuda --bf16] [--int8] [--repeats 5] [--baseline GIT_REF]
                                      [--compare-official PATH_TO_GRAPHSMILE_CHECKOUT]

``--repeats N`` runs each window N times, each in a fresh child, and prints min / median / max and
the spread (max - min) / min of train epoch time, its CPU time, test pass time and peak RSS.
``--baseline REF`` also runs the child of commit REF of this repository (``git archive`` into a temp
folder) and ``--compare-official PATH`` the official GraphSmile ``run.py`` of a checkout
(:mod:`graphsmile_official`: patched at run time in a temp copy for one CPU process), interleaved with
ours repeat by repeat so that every program sees the same machine load; the ratios of the medians follow.
``--json`` prints one JSON object per run and one per summary on stdout (the tables go to stderr).
``--profile`` adds the top operators of ``torch.profiler`` over a few training batches.
Nothing is asserted about speed.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    """Current resident set size (Linux /proc; NaN elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_after_first(times: list[float]) -> float:
    return statistics.median(times[1:] if len(times) > 1 else times)


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.num_threads)
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed

    from erc.core.config import config_from_dict, load_yaml
    from erc.core.harness import fused_adamw, release_free_heap, training_heap
    from erc.data.dialogues import load_splits, make_loader
    from erc.graph.config import GraphTrainConfig
    from erc.graph.edges import cross_modal_graph
    from erc.graph.losses import LossCombiner
    from erc.graph.infer import run_inference
    from erc.graph.train import build_model, train_one_epoch

    values = load_yaml(ROOT / "configs" / "graph_iemocap6.yaml")
    values["data"].update(path=args.pickle)
    values.update(win_p=args.window, win_f=args.window, epochs=args.epochs, progress=False,
                  propagation=args.propagation, release_memory=args.release_memory,
                  recompute_graphs=args.recompute_graphs)
    if args.hidden_dim:
        values["hidden_dim"] = args.hidden_dim
    cfg = config_from_dict(GraphTrainConfig, values, "bench")
    training_heap(cfg.release_memory)   # as train-graph does
    rss_start = _rss_mib()
    t = time.perf_counter()
    splits = load_splits(cfg.data)
    release_free_heap()       # as train-graph does: the pickle's transient objects go back to the OS
    load_s = time.perf_counter() - t
    rss_after_load, peak_after_load = _rss_mib(), _peak_rss_mib()
    accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision="bf16" if args.bf16 else "no",
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    cuda = accelerator.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def run_epochs(model, n_epochs: int):
        combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
        opt = fused_adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
        loader = make_loader(splits.train, cfg.batch_size, shuffle=True, seed=0)
        model, opt, loader = accelerator.prepare(model, opt, loader)
        times, cpu_times = [], []
        for epoch in range(n_epochs):
            loader.set_epoch(epoch)          # same permutation per epoch index: the floor sees the same batches
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            train_one_epoch(model, combiner, loader, opt, accelerator, epoch, cfg)
            sync()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        return times, cpu_times, model

    set_seed(0)
    model = build_model(cfg, splits)
    epoch_s, epoch_cpu_s, model = run_epochs(model, cfg.epochs)
    peak_after_train = _peak_rss_mib()

    test_loader = accelerator.prepare(make_loader(splits.test, cfg.eval_batch_size))

    def time_test_passes(m) -> list[float]:
        times = []
        for _ in range(args.eval_reps + 1):      # the first pass warms up, not counted
            sync()
            t0 = time.perf_counter()
            with torch.inference_mode():
                run_inference(m, test_loader, accelerator, len(splits.test))
            sync()
            times.append(time.perf_counter() - t0)
        return times[1:]

    eval_s = time_test_passes(model)

    profile = None
    if args.profile:
        profile = _profile(model, splits, cfg, accelerator)

    eval_int8_s = None
    if args.int8:   # the trained model's int8 inference copy (erc.graph.quantize): float32 activations, no autocast
        from erc.graph.quantize import quantize_int8

        # without Accelerate's autocast wrapper on forward (a deep copy would keep it); last use of the model
        trained = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        q = quantize_int8(trained)       # float32 weights (bf16 here is autocast only)
        eval_int8_s = time_test_passes(q)
        reference = run_inference(trained, test_loader, accelerator, len(splits.test))   # float32, as trained
        got = run_inference(q, test_loader, accelerator, len(splits.test))
        int8_agreement = float((got.emotion_probs.argmax(-1) == reference.emotion_probs.argmax(-1)).mean())
        del q

    # Accelerate keeps every prepared model and optimizer alive; free the trained pair so the floor
    # model's memory does not stack on top of it (the peak is the trained model's own).
    del model
    accelerator.free_memory()
    gc.collect()
    set_seed(0)
    floor_model = build_model(cfg, splits)
    floor_model.set_propagation("identity")
    floor_epoch_s, _, floor_model = run_epochs(floor_model, args.floor_epochs or cfg.epochs)
    eval_floor_s = time_test_passes(floor_model)

    edges = [cross_modal_graph(b.ptr, cfg.win_p, cfg.win_f, cfg.max_distance).edge_index.shape[1]
             for b in make_loader(splits.train, cfg.batch_size)]
    train_epoch_s, floor_s = _median_after_first(epoch_s), _median_after_first(floor_epoch_s)
    out = {"window": args.window, "propagation": cfg.propagation, "device": str(accelerator.device),
           "bf16": bool(args.bf16), "threads": torch.get_num_threads(), "hidden_dim": cfg.hidden_dim,
           "release_memory": cfg.release_memory, "recompute_graphs": cfg.recompute_graphs,
           "train_dialogues": len(splits.train), "test_dialogues": len(splits.test),
           "train_utterances": sum(len(d) for d in splits.train),
           "edges_per_batch": sum(edges) / len(edges), "pair_graphs_per_batch": math.comb(len(cfg.data.modalities), 2), "edges_per_epoch": sum(edges),
           "train_epoch_s": train_epoch_s, "train_epoch_cpu_s": _median_after_first(epoch_cpu_s),
           "epoch_cpu_s": epoch_cpu_s, "eval_test_s": statistics.median(eval_s),
           "eval_floor_s": statistics.median(eval_floor_s),
           "eval_floor_ratio": statistics.median(eval_s) / statistics.median(eval_floor_s),
           "floor_s": floor_s, "floor_ratio": train_epoch_s / floor_s,
           **({"eval_int8_s": statistics.median(eval_int8_s), "eval_int8_s_all": eval_int8_s,
               "int8_argmax_agreement": int8_agreement} if eval_int8_s else {}),
           "peak_rss_mib": _peak_rss_mib(), "peak_rss_after_train_mib": peak_after_train,
           "rss_start_mib": rss_start, "rss_after_load_mib": rss_after_load,
           "peak_rss_after_load_mib": peak_after_load, "load_s": load_s,
           "epoch_s": epoch_s, "floor_epoch_s": floor_epoch_s, "eval_s": eval_s, "eval_floor_s_all": eval_floor_s,
           "allocator_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"}}
    if cuda:
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if profile is not None:
        out["profile"] = profile
    print("RESULT " + json.dumps(out), flush=True)


def _profile(model, splits, cfg, accelerator, n_batches: int = 4) -> list[dict]:
    """Top operators (self CPU time) of ``n_batches`` training steps under torch.profiler."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from erc.data.dialogues import make_loader
    from erc.graph.losses import LossCombiner
    from erc.graph.train import compute_losses

    combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
    model.train()
    batches = [b.to(accelerator.device) for _, b in zip(range(n_batches), make_loader(splits.train, cfg.batch_size))]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if accelerator.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for batch in batches:
            loss, _, _ = compute_losses(model, combiner, batch, 0)
            loss.backward()
            model.zero_grad(set_to_none=True)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    return [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3 / n_batches,
             "share": e.self_cpu_time_total / total, "calls": e.count // n_batches} for e in rows]


def write_bench_pickle(path: Path) -> tuple[Path, str]:
    """IEMOCAP-6 layout pickle with random features; real COSMIC structure when the data folder has it."""
    from erc.core.paths import data_path
    from erc.data.registry import get_spec
    from erc.data.synthetic_pickles import write_layout_pickle

    cosmic = data_path("cosmic", "iemocap.pkl")
    if cosmic is None:
        path = write_layout_pickle(path, "iemocap6", n_dialogues=151, total_utterances=7433, min_len=20,
                                   max_len=80, seed=0, test_fraction=31 / 151)
        return path, "synthetic dialogue lengths (real data folder absent)"
    import pandas as pd

    from erc.data.readers import read_corpus

    corpus = read_corpus(get_spec("cosmic_iemocap"), cosmic)
    names = get_spec("iemocap6").label_names
    rows = [{"dialogue_id": vid, "session": int(vid[3:5]), "speaker": spk, "utterance_id": f"{vid}_{spk}{i:03d}",
             "emotion": names[int(lab)] if lab >= 0 else "xxx", "text": ""}
            for vid, d in corpus.dialogues.items()
            for i, (spk, lab) in enumerate(zip(d.speakers, d.labels))]

    class _Structure:   # what build_layout reads from a corpus: one row per utterance
        utterances = pd.DataFrame(rows)

    path = write_layout_pickle(path, "iemocap6", corpus=_Structure(), seed=0)
    return path, f"real COSMIC IEMOCAP ids, lengths, speakers, labels and split from {cosmic}"


def _summary(values: list[float]) -> dict:
    """min / median / max and the spread (max - min) / min of one figure over repeats."""
    lo, hi = min(values), max(values)
    return {"min": lo, "median": statistics.median(values), "max": hi,
            "spread": (hi - lo) / lo if lo > 0 else float("nan"), "n": len(values)}


SUMMARY_FIGURES = ("train_epoch_s", "train_epoch_cpu_s", "eval_test_s", "eval_int8_s", "peak_rss_mib")


def summarize_repeats(results: list[dict]) -> dict:
    """Per figure of :data:`SUMMARY_FIGURES` present in every result: :func:`_summary` over the repeats."""
    return {k: _summary([r[k] for r in results]) for k in SUMMARY_FIGURES if results and all(k in r for r in results)}


def _child_cmd(script: Path, args: argparse.Namespace, pickle_path: Path, window: int,
               ours: bool = True) -> list[str]:
    """The child command line (flags every child since issue 11 has, so a ``--baseline`` commit's child takes it;
    ``--release-memory``, ``--recompute-graphs`` and ``--int8`` only for ours: a baseline runs its own default heap
    setting, and a commit before int8 inference has no ``--int8``)."""
    cmd = [sys.executable, str(script), "--child", "--pickle", str(pickle_path), "--window", str(window),
           "--num-threads", str(args.num_threads), "--epochs", str(args.epochs), "--device", args.device,
           "--propagation", args.propagation, "--eval-reps", str(args.eval_reps),
           "--floor-epochs", str(args.floor_epochs)]
    cmd += ["--release-memory"] if args.release_memory and ours else []
    cmd += ["--recompute-graphs"] if args.recompute_graphs and ours else []
    cmd += ["--hidden-dim", str(args.hidden_dim)] if args.hidden_dim else []
    cmd += ["--bf16"] if args.bf16 else []
    cmd += ["--int8"] if args.int8 and ours else []
    cmd += ["--profile"] if args.profile else []
    return cmd


def _run_child(cmd: list[str], env: dict, cwd: Path | None = None) -> tuple[dict | None, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return None, (proc.stderr or proc.stdout)[-3000:]
    return json.loads(lines[-1][len("RESULT "):]), ""


def export_commit(ref: str, dest: Path) -> Path:
    """The tree of git ``ref`` of this repository, written to ``dest`` (``git archive``): the baseline's code."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True)
    if archive.returncode != 0:
        sys.exit(f"--baseline {ref}: git archive failed: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per window (median of all but the first)")
    ap.add_argument("--floor-epochs", type=int, default=0, help="epochs of the floor model (0 = --epochs)")
    ap.add_argument("--eval-reps", type=int, default=5, help="timed test passes (after one warm-up)")
    ap.add_argument("--windows", type=int, nargs="*", default=[3, 17, -1])
    ap.add_argument("--repeats", type=int, default=1,
                    help="fresh child processes per window (and per compared program, interleaved); "
                         "prints min / median / max and the spread (max - min) / min")
    ap.add_argument("--baseline", metavar="GIT_REF", default=None,
                    help="also run the bench child of this commit of the repository (git archive into a temp "
                         "folder), interleaved with ours, and print our / baseline ratios")
    ap.add_argument("--compare-official", metavar="PATH", default=None,
                    help="also run the official GraphSmile run.py of this checkout (patched at run time in a temp "
                         "copy: CPU, one process; bench/graphsmile_official.py) on the same pickle, interleaved "
                         "with ours, and print our / official ratios")
    ap.add_argument("--propagation", default="csr", choices=("csr", "edgewise"))
    ap.add_argument("--release-memory", action="store_true",
                    help="train with release_memory on (lean heap: 1 MiB mmap threshold, malloc_trim after each step) "
                         "instead of the default fast_steady_heap: the time/memory trade")
    ap.add_argument("--recompute-graphs", action="store_true",
                    help="train with recompute_graphs on (each graph stack's activations recomputed in the backward "
                         "instead of kept): the other time/memory trade; ours only, like --release-memory")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--bf16", action="store_true", help="Accelerate bf16 mixed precision (autocast)")
    ap.add_argument("--int8", action="store_true",
                    help="also time the test pass of the trained model's int8 copy (erc.graph.quantize; CPU)")
    ap.add_argument("--hidden-dim", type=int, default=None, help="override the config (smoke tests)")
    ap.add_argument("--profile", action="store_true", help="torch.profiler top operators per window")
    ap.add_argument("--json", action="store_true", help="one JSON object per run and per summary on stdout")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--pickle", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, default=17, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.repeats < 1:
        ap.error(f"--repeats: expected >= 1, got {args.repeats}")
    official = None
    if args.compare_official:
        from graphsmile_official import OfficialGraphSmile   # bench/ is on sys.path as this script's folder

        official = OfficialGraphSmile(args.compare_official)   # checks the checkout before anything runs

    log = sys.stderr if args.json else sys.stdout
    with tempfile.TemporaryDirectory() as tmp:
        path, source = write_bench_pickle(Path(tmp) / "iemocap6_bench.pkl")
        print(f"IEMOCAP-6 layout pickle, {path.stat().st_size / 2**20:.0f} MiB, random features; {source}\n"
              f"config configs/graph_iemocap6.yaml (hidden {args.hidden_dim or 512}, layers 7/7/7, batch 16); "
              f"propagation {args.propagation}; release_memory {args.release_memory}; "
              f"recompute_graphs {args.recompute_graphs}; "
              f"{args.num_threads} CPU thread(s); device {args.device}"
              f"{' bf16' if args.bf16 else ''}; {args.epochs} epochs; {args.repeats} repeat(s)", file=log)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.num_threads), "MKL_NUM_THREADS": str(args.num_threads)}
        # program label -> how to run it for one window: () -> (result or None, error text)
        programs = {"ours": lambda w: _run_child(_child_cmd(Path(__file__), args, path, w), env)}
        if args.baseline:
            base = export_commit(args.baseline, Path(tmp) / "baseline")
            base_env = {**env, "PYTHONPATH": str(base)}
            programs[f"baseline {args.baseline}"] = lambda w: _run_child(
                _child_cmd(base / "bench" / "bench_graph_epoch.py", args, path, w, ours=False), base_env, base)
        if official is not None:
            programs["official"] = lambda w: official.run(path, Path(tmp) / "official", window=w,
                                                          epochs=args.epochs, num_threads=args.num_threads,
                                                          hidden_dim=args.hidden_dim or 512, env=env)
        head = (f"{'program':>14} {'rep':>3} {'window':>7} {'edges/batch':>11} {'epoch (s)':>9} {'floor (s)':>9} "
                f"{'ratio':>6} {'test (s)':>8} {'test floor':>10} {'peak RSS MiB':>12} {'RSS after load':>14}")
        print(head + ("  cuda peak MiB" if args.device == "cuda" else ""), file=log)
        by_window: dict[int, dict[str, list[dict]]] = {}
        failed = []
        for w in args.windows:
            runs = by_window.setdefault(w, {label: [] for label in programs})
            for rep in range(args.repeats):          # interleaved: each program sees the same machine load
                for label, run in programs.items():
                    r, err = run(w)
                    if r is None:
                        print(f"{label} window {w} repeat {rep}: failed\n{err}", file=log)
                        failed.append((label, w))
                        continue
                    r.update(program=label, repeat=rep)
                    runs[label].append(r)
                    _print_row(r, log)
                    if args.json:
                        print(json.dumps(r), flush=True)
        _print_summaries(by_window, args, log)
        print(f"load average at the end: {os.getloadavg()}", file=log)
    if failed:
        sys.exit(f"bench_graph_epoch: failed runs (program, window): {failed}")


def _fmt(v, spec: str) -> str:
    """``v`` formatted, or a dash as wide (a figure the program does not report, e.g. the official's floor)."""
    return format(v, spec) if isinstance(v, (int, float)) else "-".rjust(int(spec.split(".")[0]))


def _print_row(r: dict, log) -> None:
    name = "whole" if r["window"] < 0 else str(r["window"])
    print(f"{r['program'][:14]:>14} {r['repeat']:3d} {name:>7} {_fmt(r.get('edges_per_batch'), '11.0f')} "
          f"{_fmt(r.get('train_epoch_s'), '9.2f')} {_fmt(r.get('floor_s'), '9.2f')} {_fmt(r.get('floor_ratio'), '6.2f')} "
          f"{_fmt(r.get('eval_test_s'), '8.3f')} {_fmt(r.get('eval_floor_s'), '10.3f')} "
          f"{_fmt(r.get('peak_rss_mib'), '12.0f')} {_fmt(r.get('rss_after_load_mib'), '14.0f')}"
          + (f"  {r['cuda_peak_mib']:13.0f}" if "cuda_peak_mib" in r else "")
          + (f"  int8 test pass {r['eval_int8_s']:.3f} s (argmax agreement with float {r['int8_argmax_agreement']:.4f})"
             if "eval_int8_s" in r else ""), file=log)
    for p in r.get("profile", []):
        print(f"          {p['op'][:48]:<48} {p['self_cpu_ms']:9.1f} ms/batch {100 * p['share']:5.1f}%"
              f"  x{p['calls']}", file=log)


def _print_summaries(by_window: dict, args: argparse.Namespace, log) -> None:
    """min / median / max / spread per program and window, our / other ratios of medians, growth with edges."""
    medians: dict[int, dict[str, dict]] = {}
    print(f"\n{'program':>14} {'window':>7} {'figure':>17} {'min':>9} {'median':>9} {'max':>9} {'spread':>7}", file=log)
    for w, runs in by_window.items():
        for label, results in runs.items():
            if not results:
                continue
            summary = summarize_repeats(results)
            medians.setdefault(w, {})[label] = {k: s["median"] for k, s in summary.items()}
            for k, s in summary.items():
                print(f"{label[:14]:>14} {'whole' if w < 0 else w:>7} {k:>17} {s['min']:9.3f} {s['median']:9.3f} "
                      f"{s['max']:9.3f} {100 * s['spread']:6.1f}%", file=log)
            if args.json:
                print(json.dumps({"summary": True, "program": label, "window": w, "repeats": len(results), **summary}),
                      flush=True)
    for w, meds in medians.items():
        ours = meds.get("ours")
        for label, other in meds.items():
            if label == "ours" or ours is None:
                continue
            ratios = ", ".join(f"{k} {ours[k] / other[k]:.2f}x" for k in SUMMARY_FIGURES if k in ours and k in other)
            print(f"window {w}: ours / {label} (medians): {ratios}", file=log)
    ours_w = [(w, m["ours"]) for w, m in medians.items() if "ours" in m]
    for (wa, a), (wb, b) in zip(ours_w, ours_w[1:]):   # epoch time against edges, window to window
        ra = by_window[wa]["ours"][0]["edges_per_batch"]
        rb = by_window[wb]["ours"][0]["edges_per_batch"]
        growth = math.log(b["train_epoch_s"] / a["train_epoch_s"]) / math.log(rb / ra)
        print(f"window {wa} -> {wb}: edges x{rb / ra:.2f}, epoch time x{b['train_epoch_s'] / a['train_epoch_s']:.2f} "
              f"(exponent {growth:.2f}; <= 1 = no faster than linear)", file=log)


if __name__ == "__main__":
    main()
