"""``train-graph``: the Accelerate training loop of the GraphSmile model, on the training harness.

Order: :func:`erc.core.harness.start_run` (Accelerator, logging, threads, seed, run
identity, config, trackers) -> data -> for each seed: seed -> model, loss,
AdamW(amsgrad) -> ``accelerator.prepare`` -> resume from the newest complete
checkpoint -> for each epoch: ``set_epoch`` on the prepared train loader, train,
evaluate validation (:func:`erc.graph.infer.run_inference`), select by validation
``selection_metric`` (:func:`erc.core.runs.select_best`), evaluate test only at a
new best validation epoch, checkpoint ``seed_K/checkpoints/epoch_N/`` -> results
(mean ± std over seeds, :func:`erc.core.runs.summarize_seeds`).

The loop is split into small functions other modules can reuse or extend:

* :func:`compute_losses`: forward + task losses + extra ``loss_hooks``
  (each ``hook(out, batch, epoch) -> Tensor | (Tensor, dict)`` is added to
  the loss; the CMERC losses plug in here).
* :func:`select_best_epoch`: the selection rule (first epoch with the highest
  validation score).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate.utils import DataLoaderConfiguration, set_seed
from tqdm.auto import tqdm

from erc.core.config import save_config
from erc.core.harness import (Checkpoints, Run, finish_seed, fused_adamw, normalization_record, publish_best,
                              release_free_heap, start_run, training_heap)
from erc.core.io import write_csv, write_json
from erc.core.runs import seed_run_outputs, select_best, summarize_split_seeds
from erc.data.dialogues import load_splits, make_loader
from erc.core.calibration import CALIBRATION_KEYS, calibration_metrics
from erc.graph.cmerc_losses import make_cmerc_loss_hook
from erc.graph.config import GraphTrainConfig
from erc.graph.curriculum import curriculum_for_training, make_curriculum_loader
from erc.graph.infer import EvalResult, InferenceResult, run_inference
from erc.graph.losses import LossCombiner, task_losses
from erc.graph.model import GraphModelConfig, GraphSmile, save_graph_model
from erc.graph.stage import TRAIN_GRAPH_IDENTITY

logger = logging.getLogger(__name__)

LossHook = Callable[[Any, Any, int], Any]
SUMMARY_METRICS = ("accuracy", "weighted_f1", "macro_f1")
# calibration (erc.core.calibration), averaged over seeds too; ts_ = after temperature scaling fitted on validation
CALIBRATION_SUMMARY = ("ece", "mce", "nll", "brier", "ts_ece", "ts_mce", "ts_nll", "ts_brier", "temperature")
__all__ = ["EvalResult", "InferenceResult", "run_train_graph", "train_seed", "select_best_epoch"]


def select_best_epoch(scores: Sequence[float]) -> int:
    """Index of the first epoch with the highest validation score (NaN never wins); see :func:`select_best`."""
    return select_best(scores, higher_is_better=True)


# ----------------------------------------------------------------------------- training step
def compute_losses(model, combiner, batch, epoch: int, loss_hooks: Sequence[LossHook] = ()):
    """Forward one batch; returns ``(total_loss, parts: dict[str, float], output)``."""
    out = model(batch)
    parts_t = task_losses(out, batch)
    total = combiner(parts_t, epoch)
    parts = {f"loss_{k}": float(v.detach()) for k, v in parts_t.items()}
    for hook in loss_hooks:
        extra = hook(out, batch, epoch)
        if isinstance(extra, tuple):
            extra, info = extra
            parts.update(info or {})
        total = total + extra
    parts["loss"] = float(total.detach())
    return total, parts, out


def train_one_epoch(model, combiner, loader, optimizer, accelerator, epoch: int, cfg: GraphTrainConfig,
                    loss_hooks: Sequence[LossHook] = ()) -> dict[str, float]:
    model.train()
    combiner.train()
    sums: dict[str, float] = {}
    n = 0
    for batch in loader:
        with accelerator.accumulate(model):
            loss, parts, _ = compute_losses(model, combiner, batch, epoch, loss_hooks)
            accelerator.backward(loss)
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        if cfg.release_memory:
            release_free_heap()
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


# ----------------------------------------------------------------------------- one seed
def build_model(cfg: GraphTrainConfig, splits):
    mcfg = GraphModelConfig(
        input_dims={m: int(splits.dims[m]) for m in cfg.data.modalities}, num_classes=splits.num_classes,
        num_sentiments=getattr(splits, "num_sentiments", 3), hidden_dim=cfg.hidden_dim, layers=list(cfg.layers),
        win_p=cfg.win_p, win_f=cfg.win_f, max_distance=cfg.max_distance, dropout=cfg.dropout,
        shift_win=cfg.shift_win, batchnorm_modalities=[m for m in cfg.batchnorm_modalities if m in cfg.data.modalities],
        label_names=list(splits.label_names), sentiment_names=list(getattr(splits, "sentiment_names", ())),
        propagation=cfg.propagation, norm=cfg.norm)
    model = GraphSmile(mcfg)
    model.recompute_graphs = cfg.recompute_graphs
    return model


def _flat(prefix: str, metrics: dict) -> dict[str, float]:
    out = {f"{prefix}_{k}": metrics[k] for k in SUMMARY_METRICS}
    out.update({f"{prefix}_f1_{name}": v for name, v in metrics["per_class_f1"].items()})
    return out


def _save_predictions(path: Path, res: InferenceResult, label_names: Sequence[str]) -> None:
    rows = []
    for u in range(len(res.labels)):
        row = {"dialogue_id": res.dialogue_ids[int(res.dialogue_index[u])], "position": int(res.position[u]),
               "label": int(res.labels[u]), "pred": int(res.emotion_probs[u].argmax())}
        row.update({f"p_{name}": float(res.emotion_probs[u, k]) for k, name in enumerate(label_names)})
        rows.append(row)
    write_csv(path, rows)




@dataclass
class SeedParts:
    """What one seed trains: prepared model, loss combiner, optimizer and loaders."""

    model: Any
    combiner: Any
    optimizer: Any
    train_loader: Any
    valid_loader: Any
    test_loader: Any
    curriculum: Any = None
    loss_hooks: list = field(default_factory=list)


def build_seed(cfg: GraphTrainConfig, splits, seed: int, accelerator, loss_hooks: Sequence[LossHook] = ()) -> SeedParts:
    """Model, combiner, AdamW(amsgrad), loaders (curriculum when asked), CMERC hooks; all prepared."""
    model = build_model(cfg, splits)
    combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
    params = list(model.parameters()) + list(combiner.parameters())
    optimizer = fused_adamw(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    train_loader = make_loader(splits.train, cfg.batch_size, shuffle=True, seed=seed)
    curriculum = None
    if cfg.cmerc.curriculum:             # CMERC: easy -> hard pool growing to the full set
        curriculum = curriculum_for_training(splits.train, cfg.epochs, cfg.cmerc, seed, splits.num_classes)
        train_loader = make_curriculum_loader(splits.train, curriculum, cfg.batch_size)
    hooks = list(loss_hooks)
    cmerc_hook = make_cmerc_loss_hook(cfg.cmerc)   # rank/mscl/cscl losses; None when all coefs are 0
    if cmerc_hook is not None:
        hooks.append(cmerc_hook)
    valid_loader = make_loader(splits.valid, cfg.eval_batch_size)
    test_loader = make_loader(splits.test, cfg.eval_batch_size)
    if any(True for _ in combiner.parameters()):
        model, combiner, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
            model, combiner, optimizer, train_loader, valid_loader, test_loader)
    else:
        model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
            model, optimizer, train_loader, valid_loader, test_loader)
    return SeedParts(model, combiner, optimizer, train_loader, valid_loader, test_loader, curriculum, hooks)


def _save_best_model(run_dir: Path, best_dir: Path, cfg: GraphTrainConfig, splits, parts: SeedParts, accelerator,
                     epoch: int, seed: int, valid: InferenceResult, test: InferenceResult, vm: dict) -> dict:
    """Test metrics + calibration at a new best validation epoch (temperature fitted ONCE, on validation);
    the main process writes ``best_model/`` (model, config, predictions, calibration) atomically."""
    label_names = list(splits.label_names)

    def write(tmp: Path, tm: dict) -> None:
        save_graph_model(accelerator.unwrap_model(parts.model), tmp, extra={
            "epoch": epoch, "seed": seed, "label_names": label_names,
            "sentiment_names": list(getattr(splits, "sentiment_names", ())),
            "normalization": normalization_record(splits), "valid": vm, "test": tm})
        save_config(cfg, tmp / "config.yaml")
        _save_predictions(tmp / "test_predictions.csv", test, label_names)
        _save_predictions(tmp / "valid_predictions.csv", valid, label_names)

    return publish_best(run_dir, best_dir, accelerator, test.metrics(label_names), write,
                        calibration=(valid.emotion_logits, valid.labels, test.emotion_logits, test.labels))


def _start_state(cfg: GraphTrainConfig, ckpts: Checkpoints, parts: SeedParts, seed: int) -> dict[str, Any]:
    """The trainer state to continue from (``resume``: auto / latest / a folder), or a fresh one (never)."""
    state: dict[str, Any] = {"epoch": -1, "history": [], "best_epoch": None, "best_valid": None, "test": None}
    got = ckpts.start(cfg.resume, allow_config_change=bool(getattr(cfg, "allow_config_change", False)))
    if got is None:
        return state
    state, path = got
    if parts.curriculum is not None and state.get("curriculum"):
        parts.curriculum.load_state_dict(state["curriculum"])   # refuses a different easy->hard order
    logger.info("seed %d: resumed from %s after epoch %d", seed, path, state["epoch"])
    return state


def train_seed(cfg: GraphTrainConfig, splits, seed: int, run_dir: Path, run: Run,
               loss_hooks: Sequence[LossHook] = (), on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one seed in ``run_dir``; returns the seed's result (best epoch, test metrics there)."""
    accelerator = run.accelerator
    set_seed(seed)                       # once per seed: each seed is its own run
    run_dir = Path(run_dir)
    parts = build_seed(cfg, splits, seed, accelerator, loss_hooks)
    best_dir = run_dir / "best_model"
    ckpts = run.checkpoints(run_dir / "checkpoints", keep=getattr(cfg, "keep_checkpoints", 2))
    state = _start_state(cfg, ckpts, parts, seed)
    label_names = list(splits.label_names)
    n_valid, n_test = len(splits.valid), len(splits.test)
    if n_valid == 0:
        raise ValueError("validation split is empty: selection needs validation dialogues (valid_fraction > 0)")

    bar = tqdm(range(state["epoch"] + 1, cfg.epochs), desc=f"seed {seed}",
               disable=not (cfg.progress and accelerator.is_main_process))
    for epoch in bar:
        parts.train_loader.set_epoch(epoch)    # the sampler the prepared loader actually uses
        train_stats = train_one_epoch(parts.model, parts.combiner, parts.train_loader, parts.optimizer,
                                      accelerator, epoch, cfg, parts.loss_hooks)
        valid = run_inference(parts.model, parts.valid_loader, accelerator, n_valid)
        vm = valid.metrics(label_names)
        vm.update(calibration_metrics(valid.emotion_probs, valid.labels))
        row = {"seed": seed, "epoch": epoch, **train_stats, "valid_loss": valid.loss, **_flat("valid", vm),
               **{f"valid_{k}": vm[k] for k in CALIBRATION_KEYS}}
        if parts.curriculum is not None:
            row["curriculum_pool"] = parts.curriculum.pool_size(epoch)
        state["history"].append(row)
        best = select_best_epoch([r[f"valid_{cfg.selection_metric}"] for r in state["history"]])
        improved = state["history"][best]["epoch"] == epoch
        test = None
        if improved:
            test = run_inference(parts.model, parts.test_loader, accelerator, n_test)
            tm = _save_best_model(run_dir, best_dir, cfg, splits, parts, accelerator, epoch, seed, valid, test, vm)
            state.update(best_epoch=epoch, best_valid=vm, test=tm)
        state["epoch"] = epoch
        if parts.curriculum is not None:
            state["curriculum"] = parts.curriculum.state_dict()   # pool schedule state, checked on resume
        if accelerator.is_main_process:
            write_csv(run_dir / "epochs.csv", state["history"])
        run.log({k: v for k, v in row.items() if k not in ("seed", "epoch")}, step=epoch, prefix=f"seed_{seed}/")
        if cfg.checkpoint:
            ckpts.save(f"epoch_{epoch + 1}", state, progress=epoch + 1)
        bar.set_postfix(loss=f"{train_stats.get('loss', float('nan')):.3f}",
                        valid_wf1=f"{vm['weighted_f1']:.3f}", best=state["best_epoch"])
        logger.info("seed %d epoch %d: loss %.4f valid acc %.4f wF1 %.4f%s", seed, epoch,
                    train_stats.get("loss", float("nan")), vm["accuracy"], vm["weighted_f1"],
                    " (best)" if improved else "")
        if on_epoch_end is not None:
            on_epoch_end({"epoch": epoch, "valid": valid, "test": test, "model": parts.model, "improved": improved,
                          "accelerator": accelerator, "run_dir": run_dir})
    result = {"seed": seed, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"] + 1,
              "valid": state["best_valid"], "test": state["test"], "best_model": str(best_dir)}
    return finish_seed(accelerator, run_dir, result, state["history"])


# ----------------------------------------------------------------------------- seeds
def summarize_seed_results(results: Sequence[dict]) -> dict:
    """``{split}_{metric}_mean`` / ``_std`` (sample std) over seeds of the metrics at each seed's best epoch."""
    return summarize_split_seeds(results, SUMMARY_METRICS + CALIBRATION_SUMMARY)


def run_train_graph(cfg: GraphTrainConfig, loss_hooks: Sequence[LossHook] = (), splits=None,
                    on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Entry point of ``cli.py train-graph``: every seed, then ``results.json`` and ``epochs.csv``.

    ``loss_hooks`` are added to every training step's loss (see :func:`compute_losses`);
    ``on_epoch_end(info)`` gets ``epoch, valid (InferenceResult), test (InferenceResult at a new best
    validation epoch, else None), model, improved, accelerator, run_dir`` after each epoch.
    """
    run = start_run(cfg, "train-graph", TRAIN_GRAPH_IDENTITY,
                    dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    accelerator, out_dir = run.accelerator, run.output_dir
    training_heap(cfg.release_memory)   # one malloc arena, fixed thresholds: a peak RSS that is the same every run
    with accelerator.main_process_first():
        splits = splits if splits is not None else load_splits(cfg.data)
    release_free_heap()   # reading a pickle frees about twice the features it keeps: give that heap back now
    accelerator.print(f"train-graph: {splits.summary()} modalities {cfg.data.modalities} dims {splits.dims}")
    results, history = [], []
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        res = train_seed(cfg, splits, seed, out_dir / f"seed_{seed}", run, loss_hooks, on_epoch_end)
        results.append(res)
        history += res.pop("history")
    summary = {"dataset": cfg.data.dataset, "modalities": cfg.data.modalities, "selection": f"valid_{cfg.selection_metric}",
               "num_processes": accelerator.num_processes, "seeds": [r["seed"] for r in results],
               **summarize_seed_results(results), "per_seed": results}
    if accelerator.is_main_process:
        files = seed_run_outputs(out_dir)
        write_json(files["results"], summary)
        write_csv(files["epochs"], history)
        accelerator.print(format_summary(summary))
    run.finish()  # keeps the process group when a pipeline runs more stages
    return summary


def format_summary(summary: dict) -> str:
    parts = []
    for k in SUMMARY_METRICS + ("ece", "ts_ece"):
        if f"test_{k}_mean" in summary:
            parts.append(f"{k} {summary[f'test_{k}_mean']:.4f} ± {summary[f'test_{k}_std']:.4f}")
    epochs = [r["best_epoch"] for r in summary["per_seed"]]
    return (f"test at best validation epoch ({summary['selection']}; epochs {epochs}) over "
            f"{len(summary['per_seed'])} seed(s): " + ", ".join(parts))
