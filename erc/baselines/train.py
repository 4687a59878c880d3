"""``train-baseline``: DialogueRNN, DialogueGCN or the MLP, trained on the training harness like ``train-graph``.

Order: :func:`erc.core.harness.start_run` (Accelerator, logging, threads, seed, run identity,
config, trackers) -> data (:func:`erc.data.dialogues.load_splits`) -> for each seed: seed ->
model, masked NLL (class weights from the config), Adam with L2 (the originals' optimiser) ->
``accelerator.prepare`` -> resume from the newest complete checkpoint -> for each epoch: train,
evaluate validation, select by the validation ``selection_metric`` (:func:`select_best_epoch`),
evaluate test only at a new best validation epoch, checkpoint ``seed_K/checkpoints/epoch_N/`` ->
results (mean ± std over seeds).

The output layout is ``train-graph``'s (:func:`erc.core.runs.seed_run_outputs`), so ``erc results``
reads a baseline run like a graph run: ``results.json``, ``epochs.csv``, ``config.yaml``,
``run.json``; per seed ``seed_K/result.json``, ``seed_K/epochs.csv`` and ``seed_K/best_model/``
(``model.safetensors``, ``model_config.json``, ``config.yaml``, ``metrics.json``,
``calibration.json``, ``test_predictions.csv`` and ``valid_predictions.csv`` with columns
``dialogue_id, position, label, pred, p_<class>...``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from accelerate.utils import DataLoaderConfiguration, set_seed
from tqdm.auto import tqdm

from erc.baselines.config import TRAIN_BASELINE_IDENTITY, BaselineTrainConfig
from erc.baselines.losses import inverse_frequency_weights, masked_nll
from erc.baselines.model import BaselineModelConfig, build_model, save_baseline_model
from erc.core.calibration import CALIBRATION_KEYS, calibration_metrics
from erc.core.config import save_config
from erc.core.harness import Checkpoints, Run, finish_seed, normalization_record, publish_best, start_run
from erc.core.io import write_csv, write_json
from erc.core.metrics import classification_metrics
from erc.core.runs import peak_rss_mb, select_best, seed_run_outputs, summarize_split_seeds
from erc.data.dialogues import load_splits, make_loader, merge_dialogue_records, split_by_dialogue

logger = logging.getLogger(__name__)

STAGE = "train-baseline"
SUMMARY_METRICS = ("accuracy", "weighted_f1", "macro_f1")
CALIBRATION_SUMMARY = ("ece", "mce", "nll", "brier", "ts_ece", "ts_mce", "ts_nll", "ts_brier", "temperature")
__all__ = ["BaselineEval", "run_train_baseline", "train_seed", "select_best_epoch", "evaluate"]


def select_best_epoch(scores: Sequence[float]) -> int:
    """Index of the first epoch with the highest validation score (NaN never wins); see :func:`select_best`."""
    return select_best(scores, higher_is_better=True)




# ----------------------------------------------------------------------------- evaluation
@dataclass
class BaselineEval:
    """Per-utterance outputs of one split, ordered by dialogue index then position."""

    log_probs: np.ndarray            # (n, C)
    labels: np.ndarray               # (n,) -1 = unlabelled
    dialogue_index: np.ndarray       # (n,)
    position: np.ndarray             # (n,)
    dialogue_ids: list[str] = field(default_factory=list)
    loss: float = float("nan")

    @property
    def probs(self) -> np.ndarray:
        p = np.exp(self.log_probs.astype(np.float64))
        return p / p.sum(axis=1, keepdims=True)

    @property
    def pred(self) -> np.ndarray:
        return self.log_probs.argmax(axis=1)

    def metrics(self, label_names: Sequence[str]) -> dict:
        keep = self.labels >= 0
        out = classification_metrics(self.labels[keep], self.pred[keep], label_names)
        cal = calibration_metrics(self.probs, self.labels)
        out.update({k: cal[k] for k in CALIBRATION_KEYS})
        return out

    def rows(self, label_names: Sequence[str]) -> list[dict]:
        """``dialogue_id, position, label, pred, p_<class>...`` per utterance (train-graph's columns)."""
        probs, pred = self.probs, self.pred
        out = []
        for u in range(len(self.labels)):
            row = {"dialogue_id": self.dialogue_ids[int(self.dialogue_index[u])], "position": int(self.position[u]),
                   "label": int(self.labels[u]), "pred": int(pred[u])}
            row.update({f"p_{name}": float(probs[u, k]) for k, name in enumerate(label_names)})
            out.append(row)
        return out


def evaluate(model, loader, accelerator=None, expected_dialogues: int | None = None,
             weight: torch.Tensor | None = None) -> BaselineEval:
    """Run ``model`` over a (prepared or plain) loader; gather from every process, each dialogue (so each
    utterance) counted once: a prepared loader may repeat dialogues to even out the last round."""
    model.eval()
    records: list[dict] = []
    with torch.inference_mode():
        for batch in loader:
            lp = model(batch).float()
            rec = split_by_dialogue(batch, lp=lp, label=batch.labels, position=batch.position)
            if accelerator is not None and accelerator.num_processes > 1:
                rec = accelerator.gather_for_metrics(rec, use_gather_object=True)
            records += rec
    records = merge_dialogue_records(records, expected_dialogues)
    if not records:
        raise ValueError("evaluation: the loader yielded no dialogues")

    def cat(k: str) -> np.ndarray:
        return np.concatenate([r[k] for r in records])

    res = BaselineEval(log_probs=cat("lp"), labels=cat("label").astype(np.int64),
                       dialogue_index=np.concatenate([np.full(len(r["label"]), r["dialogue_index"]) for r in records]),
                       position=cat("position").astype(np.int64), dialogue_ids=[r["dialogue_id"] for r in records])
    if (res.labels >= 0).any():
        w = weight.detach().cpu() if weight is not None else None
        res.loss = float(masked_nll(torch.from_numpy(res.log_probs), torch.from_numpy(res.labels), weight=w))
    return res


# ----------------------------------------------------------------------------- model and loss
def num_speakers(cfg: BaselineTrainConfig, splits) -> int:
    """``cfg.num_speakers``, or the most speakers any dialogue of the data has."""
    if cfg.num_speakers > 0:
        return cfg.num_speakers
    most = [int(d.speakers.max()) + 1 for name in ("train", "valid", "test") for d in splits.split(name) if len(d)]
    return max(most or [1])


def model_config(cfg: BaselineTrainConfig, splits) -> BaselineModelConfig:
    names = {f for f in BaselineModelConfig.__dataclass_fields__} - {
        "method", "input_dim", "num_classes", "modalities", "label_names", "num_speakers"}
    return BaselineModelConfig(
        method=cfg.method, input_dim=int(sum(splits.dims[m] for m in cfg.data.modalities)),
        num_classes=splits.num_classes, modalities=list(cfg.data.modalities), label_names=list(splits.label_names),
        num_speakers=num_speakers(cfg, splits), **{n: getattr(cfg, n) for n in names})


def class_weights(cfg: BaselineTrainConfig, splits) -> list[float] | None:
    """The NLL's class weights (``class_weighting``), or None for an unweighted mean."""
    if cfg.class_weighting == "none":
        return None
    if cfg.class_weighting == "inverse_frequency":
        return inverse_frequency_weights([d.labels for d in splits.train], splits.num_classes)
    if len(cfg.class_weights) != splits.num_classes:
        from erc.core.config import ConfigError

        raise ConfigError(f"class_weights: expected {splits.num_classes} weights (one per class of "
                          f"{', '.join(splits.label_names)}), got {len(cfg.class_weights)}")
    return list(cfg.class_weights)


def train_one_epoch(model, loader, optimizer, accelerator, cfg: BaselineTrainConfig,
                    weight: torch.Tensor | None) -> dict[str, float]:
    model.train()
    total, n_batches, n_utts = 0.0, 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in loader:
        lp = model(batch)
        loss = masked_nll(lp, batch.labels, weight=weight)
        accelerator.backward(loss)
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total += float(loss.detach())
        n_batches += 1
        n_utts += batch.num_nodes
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    # wall-clock time, and this process's CPU time (all its threads; robust to a shared, busy machine)
    return {"loss": total / max(n_batches, 1), "train_seconds": seconds, "train_cpu_seconds": cpu,
            "train_utts_per_s": n_utts * accelerator.num_processes / max(seconds, 1e-9), "peak_rss_mb": peak_rss_mb()}


# ----------------------------------------------------------------------------- one seed
def _flat(prefix: str, m: dict) -> dict[str, float]:
    out = {f"{prefix}_{k}": m[k] for k in SUMMARY_METRICS + CALIBRATION_KEYS}
    out.update({f"{prefix}_f1_{name}": v for name, v in m["per_class_f1"].items()})
    return out


def _start_state(cfg: BaselineTrainConfig, ckpts: Checkpoints, seed: int) -> dict[str, Any]:
    state: dict[str, Any] = {"epoch": -1, "history": [], "best_epoch": None, "best_valid": None, "test": None}
    got = ckpts.start(cfg.resume, allow_config_change=cfg.allow_config_change)
    if got is None:
        return state
    state, path = got
    logger.info("seed %d: resumed from %s after epoch %d", seed, path, state["epoch"])
    return state


def _save_best(run_dir: Path, cfg: BaselineTrainConfig, splits, model, accelerator, epoch: int, seed: int,
               valid: BaselineEval, test: BaselineEval, vm: dict, weights: list[float] | None) -> dict:
    """Test metrics + calibration at a new best validation epoch (temperature fitted on validation only);
    the main process writes ``best_model/`` atomically."""
    label_names = list(splits.label_names)

    def write(tmp: Path, tm: dict) -> None:
        extra = {"epoch": epoch, "seed": seed, "label_names": label_names, "class_weights": weights,
                 "normalization": normalization_record(splits)}
        save_baseline_model(accelerator.unwrap_model(model), tmp, extra={**extra, "valid": vm, "test": tm})
        save_config(cfg, tmp / "config.yaml")
        write_json(tmp / "metrics.json", {"method": cfg.method, "epoch": epoch, "seed": seed,
                                          "selection": f"valid_{cfg.selection_metric}", "valid": vm, "test": tm})
        write_csv(tmp / "test_predictions.csv", test.rows(label_names))
        write_csv(tmp / "valid_predictions.csv", valid.rows(label_names))

    return publish_best(run_dir, run_dir / "best_model", accelerator, test.metrics(label_names), write,
                        calibration=(valid.log_probs, valid.labels, test.log_probs, test.labels))


def train_seed(cfg: BaselineTrainConfig, splits, seed: int, run_dir: Path, run: Run) -> dict:
    """Train one seed in ``run_dir``; returns the seed's result (best validation epoch, test metrics there)."""
    accelerator = run.accelerator
    set_seed(seed)                                   # once per seed: each seed is its own run
    run_dir = Path(run_dir)
    model = build_model(model_config(cfg, splits))
    weights = class_weights(cfg, splits)
    weight = torch.tensor(weights, dtype=torch.float32, device=accelerator.device) if weights else None
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_loader = make_loader(splits.train, cfg.batch_size, shuffle=True, seed=seed)
    valid_loader = make_loader(splits.valid, cfg.eval_batch_size)
    test_loader = make_loader(splits.test, cfg.eval_batch_size)
    model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, test_loader)
    ckpts = run.checkpoints(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
    state = _start_state(cfg, ckpts, seed)
    label_names = list(splits.label_names)
    n_valid, n_test = len(splits.valid), len(splits.test)
    if n_valid == 0:
        raise ValueError("validation split is empty: selection needs validation dialogues (valid_fraction > 0)")

    bar = tqdm(range(state["epoch"] + 1, cfg.epochs), desc=f"{cfg.method} seed {seed}",
               disable=not (cfg.progress and accelerator.is_main_process))
    for epoch in bar:
        train_loader.set_epoch(epoch)                # the sampler the prepared loader actually uses
        stats = train_one_epoch(model, train_loader, optimizer, accelerator, cfg, weight)
        valid = evaluate(model, valid_loader, accelerator, n_valid, weight)
        vm = valid.metrics(label_names)
        row = {"seed": seed, "epoch": epoch, **stats, "valid_loss": valid.loss, **_flat("valid", vm)}
        state["history"].append(row)
        best = select_best_epoch([r[f"valid_{cfg.selection_metric}"] for r in state["history"]])
        improved = state["history"][best]["epoch"] == epoch
        if improved:
            test = evaluate(model, test_loader, accelerator, n_test, weight)
            tm = _save_best(run_dir, cfg, splits, model, accelerator, epoch, seed, valid, test, vm, weights)
            state.update(best_epoch=epoch, best_valid=vm, test=tm)
        state["epoch"] = epoch
        if accelerator.is_main_process:
            write_csv(run_dir / "epochs.csv", state["history"])
        run.log({k: v for k, v in row.items() if k not in ("seed", "epoch")}, step=epoch, prefix=f"seed_{seed}/")
        if cfg.checkpoint:
            ckpts.save(f"epoch_{epoch + 1}", state, progress=epoch + 1)
        bar.set_postfix(loss=f"{stats['loss']:.3f}", valid_wf1=f"{vm['weighted_f1']:.3f}", best=state["best_epoch"])
        logger.info("%s seed %d epoch %d: loss %.4f (%.1f s) valid acc %.4f wF1 %.4f%s", cfg.method, seed, epoch,
                    stats["loss"], stats["train_seconds"], vm["accuracy"], vm["weighted_f1"],
                    " (best)" if improved else "")
    result = {"seed": seed, "method": cfg.method, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"] + 1,
              "valid": state["best_valid"], "test": state["test"], "best_model": str(run_dir / "best_model")}
    return finish_seed(accelerator, run_dir, result, state["history"])


# ----------------------------------------------------------------------------- seeds
def summarize_seed_results(results: Sequence[dict]) -> dict:
    """``{split}_{metric}_mean`` / ``_std`` (sample std) over seeds of the metrics at each seed's best epoch."""
    return summarize_split_seeds(results, SUMMARY_METRICS + CALIBRATION_SUMMARY)


def throughput(history: Sequence[dict]) -> dict:
    """Mean training epoch time (s), training utterances per second and peak resident memory (MiB)."""
    if not history:
        return {}
    return {"epoch_seconds": float(np.mean([h["train_seconds"] for h in history])),
            "epoch_cpu_seconds": float(np.mean([h.get("train_cpu_seconds", np.nan) for h in history])),
            "train_utts_per_s": float(np.mean([h["train_utts_per_s"] for h in history])),
            "peak_rss_mb": float(max(h["peak_rss_mb"] for h in history))}


def format_summary(summary: dict) -> str:
    parts = [f"{k} {summary[f'test_{k}_mean']:.4f} ± {summary[f'test_{k}_std']:.4f}"
             for k in SUMMARY_METRICS + ("ece",) if f"test_{k}_mean" in summary]
    epochs = [r["best_epoch"] for r in summary["per_seed"]]
    return (f"{summary['method']}: test at best validation epoch ({summary['selection']}; epochs {epochs}) over "
            f"{len(summary['per_seed'])} seed(s): " + ", ".join(parts))


def run_train_baseline(cfg: BaselineTrainConfig, splits=None) -> dict:
    """Entry point of ``cli.py train-baseline``: every seed, then ``results.json`` and ``epochs.csv``;
    returns the run summary (``erc.graph.train.run_train_graph``'s keys, plus ``method``, ``causal`` and
    ``throughput``)."""
    run = start_run(cfg, STAGE, TRAIN_BASELINE_IDENTITY,
                    dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    accelerator, out_dir = run.accelerator, run.output_dir
    with accelerator.main_process_first():
        splits = splits if splits is not None else load_splits(cfg.data)
    accelerator.print(f"{STAGE} ({cfg.method}): {splits.summary()} modalities {cfg.data.modalities} dims {splits.dims}")
    results, history = [], []
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        res = train_seed(cfg, splits, seed, out_dir / f"seed_{seed}", run)
        results.append(res)
        history += res.pop("history")
    summary = {"dataset": cfg.data.dataset, "modalities": cfg.data.modalities, "method": cfg.method,
               "causal": cfg.causal, "selection": f"valid_{cfg.selection_metric}",
               "num_processes": accelerator.num_processes, "seeds": [r["seed"] for r in results],
               **summarize_seed_results(results), "throughput": throughput(history), "per_seed": results}
    if accelerator.is_main_process:
        files = seed_run_outputs(out_dir)
        write_json(files["results"], summary)
        write_csv(files["epochs"], history)
        accelerator.print(format_summary(summary))
    run.finish()
    return summary
