"""Test metrics and test-pass time of saved graph models, as trained (float32) and as their int8 copy.

For each ``best_model/`` folder given (e.g. the five seeds of one ``train-graph`` run), the split's
dialogues are read the way ``predict-graph`` reads them (the run's data settings, features normalised
with the training statistics), then predicted by the float32 model and by
:func:`erc.graph.quantize.quantize_int8` of it, one after the other in this process. Printed per model:
weighted F1, accuracy and macro F1 of both, their difference, the share of utterances whose predicted
class is the same, and the median time of a pass over the split (``--reps`` timed passes after one
warm-up, all dialogues in one batch as the graph bench's test pass); then mean ± std over the models.

    python bench/graph_int8_accuracy.py RUN/seed_*/best_model [--split test] [--num-threads 2] [--reps 5] [--json]

Nothing is asserted; the figures are for docs/graph_speed.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METRICS = ("weighted_f1", "accuracy", "macro_f1")


def evaluate(model_dir: Path, split: str, reps: int) -> dict:
    import torch

    from erc.core.config import load_yaml
    from erc.data.dialogues import make_loader
    from erc.graph.config import PredictGraphConfig
    from erc.graph.infer import run_inference
    from erc.graph.model import load_graph_model
    from erc.graph.predict import load_prediction_dialogues
    from erc.graph.quantize import quantize_int8

    model, meta = load_graph_model(model_dir)
    cfg = PredictGraphConfig(model_dir=str(model_dir), splits=[split])
    (_, dialogues), = load_prediction_dialogues(cfg, meta, load_yaml(model_dir / "config.yaml"))
    loader = list(make_loader(dialogues, len(dialogues)))       # one batch, as the bench's test pass
    names = model.cfg.label_names or [str(k) for k in range(model.cfg.num_classes)]
    out = {"model_dir": str(model_dir), "split": split, "dialogues": len(dialogues),
           "utterances": sum(len(d) for d in dialogues), "threads": torch.get_num_threads()}
    results = {}
    for name, m in (("float32", model), ("int8", quantize_int8(model))):
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            res = run_inference(m, loader)
            times.append(time.perf_counter() - t0)
        results[name] = res
        metrics = res.metrics(names)
        out[name] = {**{k: float(metrics[k]) for k in METRICS}, "pass_s": statistics.median(times[1:])}
    keep = results["float32"].labels >= 0
    same = results["float32"].emotion_probs.argmax(-1) == results["int8"].emotion_probs.argmax(-1)
    out["argmax_agreement"] = float(same[keep].mean())
    out["delta"] = {k: out["int8"][k] - out["float32"][k] for k in METRICS}
    return out


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", nargs="+", type=Path, help="best_model/ folders of train-graph runs")
    ap.add_argument("--split", default="test")
    ap.add_argument("--num-threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed passes per model and precision (after one warm-up)")
    ap.add_argument("--json", action="store_true", help="one JSON object per model on stdout")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.num_threads)
    rows = []
    print(f"{'model':<60} {'wF1 fp32':>9} {'wF1 int8':>9} {'delta':>8} {'agree':>7} {'pass fp32':>10} {'pass int8':>10}",
          file=sys.stderr)
    for d in args.model_dirs:
        r = evaluate(d, args.split, args.reps)
        rows.append(r)
        print(f"{str(d)[-60:]:<60} {r['float32']['weighted_f1']:9.4f} {r['int8']['weighted_f1']:9.4f} "
              f"{r['delta']['weighted_f1']:+8.4f} {r['argmax_agreement']:7.4f} {r['float32']['pass_s']:10.3f} "
              f"{r['int8']['pass_s']:10.3f}", file=sys.stderr)
        if args.json:
            print(json.dumps(r), flush=True)
    print(f"\n{len(rows)} model(s), {args.split} split ({rows[0]['dialogues']} dialogues, {rows[0]['utterances']} "
          f"utterances), {args.num_threads} thread(s):", file=sys.stderr)
    for k in METRICS:
        print(f"  {k:<12} float32 {_mean_std([r['float32'][k] for r in rows])}   int8 "
              f"{_mean_std([r['int8'][k] for r in rows])}   delta {_mean_std([r['delta'][k] for r in rows])}",
              file=sys.stderr)
    print(f"  argmax agreement {_mean_std([r['argmax_agreement'] for r in rows])}; pass float32 "
          f"{_mean_std([r['float32']['pass_s'] for r in rows])} s, int8 {_mean_std([r['int8']['pass_s'] for r in rows])} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
