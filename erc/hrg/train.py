"""``train-hrg``: the Accelerate training loop of HRG-SSA (two phases, validation-only selection), on the harness.

Order: :func:`erc.core.harness.start_run` (Accelerator, logging, threads, seed, run identity,
config, trackers) -> data -> for each seed: seed -> model (tokenised data) -> AdamW ->
``accelerator.prepare`` -> resume from the newest complete checkpoint
(``seed_K/checkpoints/epoch_N/``) -> for each epoch: phase (1: pretrained backbone
frozen, its encodings cached; 2: everything trainable), train, evaluate validation with the
configured history (the model's own predictions by default), select by the validation
metric, evaluate test only at a new best validation epoch, checkpoint -> results.

Learning rate: per phase, linear warm-up over ``warmup_ratio`` of the phase's steps to
``lr_frozen`` / ``lr_full``, then linear decay to 0 (:func:`learning_rate`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed

from erc.core.calibration import CALIBRATION_KEYS, calibration_metrics
from erc.core.config import save_config
from erc.core.harness import Checkpoints, Run, finish_seed, normalization_record, publish_best, start_run
from erc.core.io import atomic_write_text, write_csv, write_json
from erc.core.metrics import classification_metrics
from erc.core.runs import peak_rss_mb, select_best, summarize_split_seeds
from erc.data.dialogues import load_splits, merge_dialogue_records, split_by_dialogue
from erc.hrg.config import LEAK_NOTE, TRAIN_HRG_IDENTITY, HRGTrainConfig
from erc.hrg.data import HRGDataset, make_hrg_loader
from erc.hrg.model import HRGModel, build_model, save_hrg_model

logger = logging.getLogger(__name__)

SUMMARY_METRICS = ("accuracy", "weighted_f1", "macro_f1")
LEAK_FILE = "LABEL_LEAK_WARNING.txt"


# ----------------------------------------------------------------------------- schedule and selection
def learning_rate(step: int, steps_per_epoch: int, cfg: HRGTrainConfig) -> tuple[int, float]:
    """``(phase, lr)`` of global optimiser step ``step`` (0-based).

    Phase 1 has ``epochs_frozen * steps_per_epoch`` steps, phase 2 the rest; within a phase
    of ``T`` steps and ``W = ceil(warmup_ratio * T)`` warm-up steps: ``lr = peak * (s + 1) / W``
    for ``s < W``, then ``peak * (T - s) / (T - W)``.
    """
    t1 = cfg.epochs_frozen * steps_per_epoch
    if step < t1:
        phase, s, total, peak = 1, step, t1, cfg.lr_frozen
    else:
        phase, s, total, peak = 2, step - t1, cfg.epochs_full * steps_per_epoch, cfg.lr_full
    warm = math.ceil(cfg.warmup_ratio * total)
    if s < warm:
        return phase, peak * (s + 1) / warm
    return phase, peak * max(total - s, 0) / max(total - warm, 1)


def select_best_epoch(scores: Sequence[float]) -> int:
    """Index of the first epoch with the highest validation score (:func:`erc.core.runs.select_best`)."""
    return select_best(scores, higher_is_better=True)


# ----------------------------------------------------------------------------- evaluation
@dataclass
class EvalResult:
    """Per-utterance outputs of one split, ordered by dialogue then position."""

    emotion_scores: np.ndarray      # (n, C)
    sentiment_scores: np.ndarray    # (n, S)
    labels: np.ndarray              # (n,) -1 = unlabelled
    sentiments: np.ndarray          # (n,)
    dialogue_index: np.ndarray      # (n,)
    position: np.ndarray            # (n,)
    dialogue_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @staticmethod
    def softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def emotion_probs(self) -> np.ndarray:
        return self.softmax(self.emotion_scores.astype(np.float64))

    @property
    def sentiment_probs(self) -> np.ndarray:
        return self.softmax(self.sentiment_scores.astype(np.float64))

    def metrics(self, label_names: Sequence[str], sentiment_names: Sequence[str]) -> dict:
        keep = self.labels >= 0
        out = classification_metrics(self.labels[keep], self.emotion_scores[keep].argmax(-1), label_names)
        cal = calibration_metrics(self.emotion_probs, self.labels)      # the graph stage's definitions
        out.update({k: cal[k] for k in CALIBRATION_KEYS})
        ks = self.sentiments >= 0
        sm = classification_metrics(self.sentiments[ks], self.sentiment_scores[ks].argmax(-1), sentiment_names)
        out.update(sentiment_accuracy=sm["accuracy"], sentiment_weighted_f1=sm["weighted_f1"])
        out["loss"] = out["nll"]
        return out


def evaluate(model, loader, accelerator, expected_dialogues: int | None, history: str) -> EvalResult:
    """Predict every dialogue of a (prepared) loader with ``history`` labels; gather; each dialogue once."""
    inner: HRGModel = accelerator.unwrap_model(model) if accelerator is not None else model
    inner.eval()
    t0 = time.perf_counter()
    records: list[dict] = []
    for batch in loader:
        out = inner.predict(batch, history=history)
        db = batch.dialogues
        rec = split_by_dialogue(db, emo=out.emotion_scores.float(), sen=out.sentiment_scores.float(),
                                label=db.labels, sentiment=db.sentiments, position=db.position)
        if accelerator is not None and accelerator.num_processes > 1:
            rec = accelerator.gather_for_metrics(rec, use_gather_object=True)
        records += rec
    records = merge_dialogue_records(records, expected_dialogues)   # de-duplicates, refuses a missing one
    if not records:
        raise ValueError("evaluation loader yielded no dialogues")
    cat = lambda k: np.concatenate([r[k] for r in records])  # noqa: E731
    return EvalResult(
        emotion_scores=cat("emo"), sentiment_scores=cat("sen"), labels=cat("label").astype(np.int64),
        sentiments=cat("sentiment").astype(np.int64),
        dialogue_index=np.concatenate([np.full(len(r["label"]), r["dialogue_index"]) for r in records]),
        position=cat("position").astype(np.int64), dialogue_ids=[r["dialogue_id"] for r in records],
        seconds=time.perf_counter() - t0)


def prediction_rows(res: EvalResult, label_names: Sequence[str], sentiment_names: Sequence[str], history: str,
                    utterance_ids: dict[str, list[str]] | None = None) -> list[dict]:
    """One row per utterance: ids, gold, predicted emotion/sentiment, class probabilities, history mode."""
    pe, ps = res.emotion_probs, res.sentiment_probs
    note = "predicted" if history == "predicted" else "gold (LEAKS the gold labels of earlier turns)"
    rows = []
    for u in range(len(res.labels)):
        did = res.dialogue_ids[int(res.dialogue_index[u])]
        pos = int(res.position[u])
        ids = (utterance_ids or {}).get(did) or []
        row = {"dialogue_id": did, "position": pos, "utterance_id": ids[pos] if pos < len(ids) else "",
               "label": int(res.labels[u]), "pred": int(pe[u].argmax()),
               "emotion": label_names[int(pe[u].argmax())], "sentiment": sentiment_names[int(ps[u].argmax())],
               "history_labels": note}
        row.update({f"p_{n}": float(pe[u, k]) for k, n in enumerate(label_names)})
        row.update({f"p_sentiment_{n}": float(ps[u, k]) for k, n in enumerate(sentiment_names)})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- one epoch


def train_one_epoch(model, loader, optimizer, accelerator, cfg: HRGTrainConfig, state: dict,
                    steps_per_epoch: int) -> dict[str, float]:
    inner: HRGModel = accelerator.unwrap_model(model)
    model.train()
    sums: dict[str, float] = {}
    n_batches, n_utts = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for batch in loader:
        _, lr = learning_rate(state["step"], steps_per_epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = model(batch)
        accelerator.backward(out.loss)
        if inner.backbone_frozen:      # frozen weights: no update, no AdamW decay, whatever DDP filled in
            for p in inner.backbone.parameters():
                if not p.requires_grad:
                    p.grad = None
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        for k, v in out.parts.items():
            sums[k] = sums.get(k, 0.0) + v
        n_batches += 1
        n_utts += batch.num_nodes
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    utts = n_utts * accelerator.num_processes
    # wall-clock rate, and the rate per CPU-second of this process (robust to a shared, busy CPU)
    return {**{k: v / max(n_batches, 1) for k, v in sums.items()}, "lr_end": lr if n_batches else float("nan"),
            "train_utterances": utts, "train_seconds": seconds, "train_utts_per_s": utts / max(seconds, 1e-9),
            "train_cpu_seconds": cpu, "train_utts_per_cpu_s": n_utts / max(cpu, 1e-9), "peak_rss_mb": peak_rss_mb()}


# ----------------------------------------------------------------------------- one seed
def _flat(prefix: str, m: dict) -> dict[str, float]:
    out = {f"{prefix}_{k}": m[k] for k in SUMMARY_METRICS + CALIBRATION_KEYS}
    out[f"{prefix}_sentiment_accuracy"] = m["sentiment_accuracy"]
    out.update({f"{prefix}_f1_{name}": v for name, v in m["per_class_f1"].items()})
    return out


def _start_state(cfg: HRGTrainConfig, ckpts: Checkpoints, seed: int) -> dict[str, Any]:
    """The trainer state to continue from (``resume``: auto / latest / a folder), or a fresh one (never)."""
    state: dict[str, Any] = {"epoch": -1, "step": 0, "history": [], "best_epoch": None, "best_valid": None,
                             "test": None}
    got = ckpts.start(cfg.resume, allow_config_change=cfg.allow_config_change)
    if got is None:
        return state
    state, path = got
    logger.info("seed %d: resumed from %s after epoch %d", seed, path, state["epoch"])
    return state


def train_seed(cfg: HRGTrainConfig, splits, seed: int, run_dir: Path, run: Run) -> dict:
    """Train one seed in ``run_dir``; returns its result (best validation epoch, test metrics there)."""
    from tqdm.auto import tqdm

    accelerator = run.accelerator
    set_seed(seed)                                        # once per seed: each seed is its own run
    run_dir = Path(run_dir)
    model = build_model(cfg.model_fields(), cfg.modalities, splits.dims, splits.label_names,
                        splits.sentiment_names, cfg.align_weight, cfg.temperature)
    tok, pad = model.info.tokenizer, model.info.pad_id
    src = splits.source
    train_loader = make_hrg_loader(HRGDataset(splits.train, tok, cfg.max_length, src), pad, cfg.batch_size,
                                   shuffle=True, seed=seed)
    valid_loader = make_hrg_loader(HRGDataset(splits.valid, tok, cfg.max_length, src), pad, cfg.eval_batch_size)
    test_loader = make_hrg_loader(HRGDataset(splits.test, tok, cfg.max_length, src), pad, cfg.eval_batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr_frozen, weight_decay=cfg.weight_decay)
    # prepared while every parameter requires grad; freezing toggles requires_grad afterwards
    model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, test_loader)
    inner: HRGModel = accelerator.unwrap_model(model)
    steps_per_epoch = len(train_loader)

    best_dir = run_dir / "best_model"
    ckpts = run.checkpoints(run_dir / "checkpoints", keep=cfg.keep_checkpoints)
    state = _start_state(cfg, ckpts, seed)
    label_names, sent_names = list(splits.label_names), list(splits.sentiment_names)
    n_valid, n_test = len(splits.valid), len(splits.test)
    if n_valid == 0:
        raise ValueError("validation split is empty: selection needs validation dialogues (valid_fraction > 0)")
    history = cfg.history_labels
    uids = {d.dialogue_id: list(d.utterance_ids or []) for d in splits.valid + splits.test}

    first = state["epoch"] + 1
    last = cfg.epochs if cfg.stop_after_epochs <= 0 else min(cfg.epochs, first + cfg.stop_after_epochs)
    bar = tqdm(range(first, last), desc=f"seed {seed}", disable=not (cfg.progress and accelerator.is_main_process))
    for epoch in bar:
        phase = 1 if epoch < cfg.epochs_frozen else 2
        if inner.backbone_frozen != (phase == 1) or epoch == first:
            inner.set_backbone_frozen(phase == 1, cache=cfg.cache_frozen_encoder)
        train_loader.set_epoch(epoch)
        stats = train_one_epoch(model, train_loader, optimizer, accelerator, cfg, state, steps_per_epoch)
        valid = evaluate(model, valid_loader, accelerator, n_valid, history)
        vm = valid.metrics(label_names, sent_names)
        row = {"seed": seed, "epoch": epoch, "phase": phase, **stats, "valid_seconds": valid.seconds,
               "valid_loss": vm["loss"], **_flat("valid", vm), "history_labels": history}
        state["history"].append(row)
        best = select_best_epoch([r[f"valid_{cfg.selection_metric}"] for r in state["history"]])
        improved = state["history"][best]["epoch"] == epoch
        if improved:
            test = evaluate(model, test_loader, accelerator, n_test, history)
            def write(tmp: Path, tm: dict) -> None:
                save_hrg_model(inner, tmp, extra={
                    "epoch": epoch, "seed": seed, "history_labels": history, "label_leak": history == "gold",
                    "normalization": normalization_record(splits), "valid": vm, "test": tm})
                save_config(cfg, tmp / "config.yaml")
                write_csv(tmp / "test_predictions.csv", prediction_rows(test, label_names, sent_names, history, uids))
                write_csv(tmp / "valid_predictions.csv", prediction_rows(valid, label_names, sent_names, history, uids))
                if history == "gold":
                    atomic_write_text(tmp / LEAK_FILE, LEAK_NOTE + "\n")

            tm = publish_best(run_dir, best_dir, accelerator, test.metrics(label_names, sent_names), write)
            state.update(best_epoch=epoch, best_valid=vm, test=tm)
        state["epoch"] = epoch
        if accelerator.is_main_process:
            write_csv(run_dir / "epochs.csv", state["history"])
        run.log({k: v for k, v in row.items() if k not in ("seed", "epoch", "history_labels")}, step=epoch,
                prefix=f"seed_{seed}/")
        if cfg.checkpoint:
            ckpts.save(f"epoch_{epoch + 1}", state, progress=epoch + 1)
        bar.set_postfix(loss=f"{stats.get('loss', float('nan')):.3f}", valid_wf1=f"{vm['weighted_f1']:.3f}",
                        best=state["best_epoch"])
        logger.info("seed %d epoch %d (phase %d): loss %.4f, %.1f utt/s, valid acc %.4f wF1 %.4f%s", seed, epoch,
                    phase, stats.get("loss", float("nan")), stats["train_utts_per_s"], vm["accuracy"],
                    vm["weighted_f1"], " (best)" if improved else "")
    result = {"seed": seed, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"] + 1,
              "finished": state["epoch"] + 1 >= cfg.epochs, "valid": state["best_valid"], "test": state["test"],
              "best_model": str(best_dir), "history_labels": history}
    return finish_seed(accelerator, run_dir, result, state["history"])


# ----------------------------------------------------------------------------- seeds
def summarize_seed_results(results: Sequence[dict]) -> dict:
    """``{split}_{metric}_mean`` / ``_std`` (sample std) over seeds of the metrics at each seed's best epoch."""
    return summarize_split_seeds(results, SUMMARY_METRICS + CALIBRATION_KEYS + ("sentiment_accuracy",))


def throughput(history: Sequence[dict]) -> dict:
    """Training utterances per second (wall clock, and per CPU-second of one process) per phase; peak memory."""
    out: dict[str, Any] = {}
    for phase in (1, 2):
        rows = [h for h in history if h.get("phase") == phase]
        if rows:
            out[f"phase{phase}"] = {k: float(np.mean([h[k] for h in rows if k in h]))
                                    for k in ("train_utts_per_s", "train_utts_per_cpu_s") if any(k in h for h in rows)}
    if history:
        out["peak_rss_mb"] = float(max(h["peak_rss_mb"] for h in history))
    return out


def format_summary(summary: dict) -> str:
    parts = [f"{k} {summary[f'test_{k}_mean']:.4f} ± {summary[f'test_{k}_std']:.4f}"
             for k in SUMMARY_METRICS + ("ece",) if f"test_{k}_mean" in summary]
    epochs = [r["best_epoch"] for r in summary["per_seed"]]
    leak = f" [{LEAK_NOTE}]" if summary.get("label_leak") else ""
    return (f"test at best validation epoch ({summary['selection']}; epochs {epochs}; history labels "
            f"{summary['history_labels']}) over {len(summary['per_seed'])} seed(s): " + ", ".join(parts) + leak)


def run_train_hrg(cfg: HRGTrainConfig, splits=None) -> dict:
    """Entry point of ``cli.py train-hrg``: every seed, then ``results.json`` and ``epochs.csv``."""
    run = start_run(cfg, "train-hrg", TRAIN_HRG_IDENTITY,
                    dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
                    # phase 1 freezes the backbone by requires_grad after DDP is built: those weights get no grad
                    kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    accelerator, out_dir = run.accelerator, run.output_dir
    if accelerator.is_main_process and cfg.history_labels == "gold":
        atomic_write_text(out_dir / LEAK_FILE, LEAK_NOTE + "\n")
    with accelerator.main_process_first():
        splits = splits if splits is not None else load_splits(cfg.data_config())
    accelerator.print(f"train-hrg: {splits.summary()} modalities {cfg.modalities} head {cfg.head} "
                      f"history labels {cfg.history_labels}")
    results, history = [], []
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        res = train_seed(cfg, splits, seed, out_dir / f"seed_{seed}", run)
        results.append(res)
        history += res.pop("history")
    summary = {"dataset": cfg.data.dataset, "modalities": cfg.modalities, "head": cfg.head, "backbone": cfg.backbone,
               "history_labels": cfg.history_labels, "label_leak": cfg.history_labels == "gold",
               **({"warning": LEAK_NOTE} if cfg.history_labels == "gold" else {}),
               "selection": f"valid_{cfg.selection_metric}", "num_processes": accelerator.num_processes,
               "seeds": [r["seed"] for r in results], **summarize_seed_results(results),
               "throughput": throughput(history),
               "per_seed": results}
    if accelerator.is_main_process:
        write_json(out_dir / "results.json", summary)
        write_csv(out_dir / "epochs.csv", history)
        accelerator.print(format_summary(summary))
    run.finish()  # keeps the process group when a pipeline runs more stages
    return summary


