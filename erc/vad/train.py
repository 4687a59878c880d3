"""Fine-tune a :class:`~erc.vad.model.VADRegressor` with Accelerate (``cli.py finetune``), on the harness.

The order follows the Accelerate examples: :func:`erc.core.harness.start_run`
(config -> Accelerator -> logging -> threads -> seed -> run identity -> trackers)
-> data (tokenised under ``main_process_first``) -> ``prepare`` -> resume -> loop
-> named checkpoint per epoch (``checkpoints/epoch_N/``, also ``step_N/``) ->
unwrap and ``save_pretrained`` the best model.

Batches are dynamically padded and grouped by length (:class:`LengthGroupedSampler`,
seeded by ``(seed, epoch)`` so an epoch's order never depends on global RNG
state); evaluation gathers with ``gather_for_metrics`` so every example counts
once whatever the number of processes. ``--resume`` restores model, optimizer,
scheduler and RNG (``load_state``) and the loop counters (:class:`TrainerState`,
``trainer_state.json`` in the checkpoint) and skips the batches already seen
(``skip_first_batches``), so an interrupted run ends with the same numbers as an
uninterrupted one. The learning-rate schedule counts optimizer steps (the
scheduler steps once per optimizer step, whatever the number of processes), so a
checkpoint written by N processes resumes in M with no adjustment.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup

from erc.core.config import ConfigError
from erc.core.harness import Checkpoints, Run, fused_adamw, start_run
from erc.core.io import write_csv, write_json
from erc.core.metrics import classification_metrics, regression_metrics
from erc.core.runs import select_best
from erc.data.context import frame_context
from erc.data.registry import POLARITY, VAD_NAMES, ClassSet
from erc.vad.card import finetune_card_info, write_model_card
from erc.vad.data import build_splits, check_targets, emotion_class_set
from erc.vad.model import VADRegressor
from erc.vad.plots import write_plots
from erc.vad.stage import FINETUNE_IDENTITY, finetune_outputs

logger = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "val_mse", "val_rmse", "val_mae"] + \
    [f"val_{d}_pearson" for d in VAD_NAMES] + [f"val_{d}_ccc" for d in VAD_NAMES] + \
    ["val_pearson", "val_ccc", "n_val", "lr", "epoch_seconds"]
# the classification heads' scores (utterances with a label of the head's classes), when the model has them
EMOTION_METRICS = ("emotion_accuracy", "emotion_weighted_f1", "emotion_macro_f1")
SENTIMENT_METRICS = ("sentiment_accuracy", "sentiment_weighted_f1", "sentiment_macro_f1")
HIGHER_IS_BETTER = {"val_ccc": True, "val_pearson": True, "val_loss": False, "val_mse": False,
                    "val_rmse": False, "val_mae": False, **{f"val_{m}": True for m in EMOTION_METRICS},
                    **{f"val_{m}": True for m in SENTIMENT_METRICS},
                    **{f"val_{d}_{m}": True for d in VAD_NAMES for m in ("ccc", "pearson")}}
# selection names that are another name of a logged column
SELECTION_ALIASES = {"mean_ccc": "ccc", "mean_pearson": "pearson"}
# train_log.csv columns of a model without V/A/D head (classification heads follow)
CLASS_LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "n_val", "lr", "epoch_seconds"]


def log_columns(heads) -> list[str]:
    """train_log.csv columns of a model with these heads (the V/A/D ones first when it has V/A/D)."""
    cols = list(LOG_COLUMNS) if "vad" in heads else list(CLASS_LOG_COLUMNS)
    for head, metrics in (("emotion", EMOTION_METRICS), ("sentiment", SENTIMENT_METRICS)):
        if head in heads:
            cols += [f"val_{m}" for m in metrics] + [f"n_val_{head}"]
    return cols


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Indices whose consecutive chunks of ``batch_size`` have similar lengths.

    Epoch ``e`` draws from ``numpy.random.default_rng([seed, e])``: a random
    permutation cut into mega-batches of ``mega_batches * global_batch`` sorted
    by length, then cut into global batches (``batch_size * num_processes``) whose
    order is shuffled (an incomplete last one stays last). With
    ``group_by_length=False`` it is a plain seeded permutation. Because the order
    depends only on ``(seed, epoch, global batch)``, 1 process with batch 16 and
    2 processes with batch 8 see the same global batches.
    """

    def __init__(self, lengths, global_batch_size: int, seed: int, group_by_length: bool = True,
                 mega_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.global_batch_size = int(global_batch_size)
        self.seed = int(seed)
        self.group_by_length = group_by_length
        self.mega = mega_batches * self.global_batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.lengths))
        if not self.group_by_length:
            return perm
        parts = [perm[i:i + self.mega] for i in range(0, len(perm), self.mega)]
        parts = [p[np.argsort(-self.lengths[p], kind="stable")] for p in parts]
        flat = np.concatenate(parts) if parts else perm
        g = self.global_batch_size
        n_full = len(flat) // g
        batches = [flat[i * g:(i + 1) * g] for i in range(n_full)]
        batches = [batches[i] for i in rng.permutation(n_full)]
        if len(flat) % g:
            batches.append(flat[n_full * g:])
        return np.concatenate(batches) if batches else flat

    def __iter__(self):
        return iter(self.order().tolist())


class TrainerState:
    """Loop counters and history, saved as ``trainer_state.json`` in every checkpoint."""

    def __init__(self):
        self.epoch = 0                 # epochs fully completed
        self.batches_in_epoch = 0      # micro-batches (per process) done in the current epoch
        self.completed_steps = 0       # optimizer steps
        self.loss_sum = 0.0            # sum of (process-averaged) micro-batch losses this epoch
        self.loss_count = 0
        self.epoch_seconds = 0.0
        self.best_value = None
        self.best_epoch = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.log_rows: list[dict] = []
        self.num_processes = 1

    def state_dict(self) -> dict:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


def tokenize_splits(dsets, tokenizer, max_length: int, context: dict | None = None,
                    emotion_classes: ClassSet | None = None, with_vad: bool = True,
                    sentiment_labels=None):
    """Add input_ids/attention_mask, a float ``labels`` (n, 3) column (``with_vad``), ``idx`` and ``length``.

    ``context``: ``utterance_id -> (target, context segment)`` (:func:`erc.data.context.frame_context`);
    each utterance is then read as that sentence pair. ``emotion_classes``: add an ``emotion_id``
    column for the emotion head (-100 outside the set); ``sentiment_labels``: a ``sentiment_id`` column
    for the sentiment head (-100 where the utterance has none).
    """
    index = {c: i for i, c in enumerate(emotion_classes.labels)} if emotion_classes is not None else {}
    sentiment_index = {c: i for i, c in enumerate(sentiment_labels)} if sentiment_labels else None

    def enc(batch, indices):
        if context is None:
            out = tokenizer(batch["text"], truncation=True, max_length=max_length)
        else:
            pairs = [context[str(u)] for u in batch["utterance_id"]]
            out = tokenizer([t for t, _ in pairs], [c for _, c in pairs], truncation=True, max_length=max_length)
        if with_vad:
            out["labels"] = [list(v) for v in zip(*(batch[d] for d in VAD_NAMES))]
        if emotion_classes is not None:
            out["emotion_id"] = [index.get(emotion_classes.mapping.get(e, ""), -100) for e in batch["emotion"]]
        if sentiment_index is not None:
            out["sentiment_id"] = [sentiment_index.get(v, -100) for v in batch["sentiment"]]
        out["idx"] = indices
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return {name: ds.map(enc, batched=True, with_indices=True, remove_columns=ds.column_names,
                         desc=f"tokenise {name}") for name, ds in dsets.items()}


def make_collator(tokenizer, pad_to: int | None = None):
    """Dynamic padding (``pad_to=None``) or fixed padding to ``pad_to`` tokens."""
    if pad_to:
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=pad_to)
    return DataCollatorWithPadding(tokenizer, padding="longest")


def make_train_loader(ds, tokenizer, batch_size: int, seed: int, group_by_length: bool = True,
                      num_processes: int = 1, pad_to: int | None = None, drop_last: bool = False):
    """Training DataLoader + its sampler (call ``sampler.set_epoch`` each epoch)."""
    sampler = LengthGroupedSampler(ds["length"], batch_size * num_processes, seed, group_by_length)
    cols = [c for c in ds.column_names if c != "length"]
    loader = torch.utils.data.DataLoader(
        ds.with_format(columns=cols), batch_size=batch_size, sampler=sampler,
        collate_fn=make_collator(tokenizer, pad_to), drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed))  # keeps loader seeding off the global RNG
    return loader, sampler


def make_eval_loader(ds, tokenizer, batch_size: int):
    """Sequential loader over ``ds`` sorted by length (``idx`` maps rows back)."""
    order = np.argsort(-np.asarray(ds["length"]), kind="stable")
    ds = ds.select(order.tolist())
    cols = [c for c in ds.column_names if c != "length"]
    return torch.utils.data.DataLoader(ds.with_format(columns=cols), batch_size=batch_size,
                                       shuffle=False, collate_fn=make_collator(tokenizer))


def _model_inputs(batch) -> dict:
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in batch}
    if "emotion_id" in batch:
        inputs["emotion"] = batch["emotion_id"]
    if "sentiment_id" in batch:
        inputs["sentiment"] = batch["sentiment_id"]
    return inputs


def evaluate(model, loader, accelerator) -> dict:
    """Metrics over the whole split, each example once (``gather_for_metrics``).

    V/A/D (when the model has that head): Pearson r, CCC, errors and ``loss``, the standardised MSE.
    Each classification head adds ``<head>_accuracy`` / ``_weighted_f1`` / ``_macro_f1`` over the
    utterances with a label of its classes (``n_<head>`` of them); a model without V/A/D reports as
    ``loss`` the weighted sum of its heads' cross-entropies. ``pred`` / ``true``: V/A/D rows (or None),
    ``classes``: head -> (true ids, predicted ids), all in split order.
    """
    model.eval()
    raw = accelerator.unwrap_model(model)
    heads = raw.heads
    class_heads = [h for h in ("emotion", "sentiment") if h in heads]
    keys = (["vad", "labels"] if "vad" in heads else []) + ["idx"] + \
        [k for h in class_heads for k in (f"{h}_pred", f"{h}_id", f"{h}_loss")]
    stores = {k: [] for k in keys}
    with torch.no_grad():
        for batch in loader:
            out = model(**_model_inputs(batch))
            parts = {"idx": batch["idx"]}
            if "vad" in heads:
                parts.update(vad=out["vad"].float(), labels=batch["labels"].float())
            for h in class_heads:
                logits, ids = out[f"{h}_logits"], batch[f"{h}_id"].long()
                parts.update({f"{h}_pred": logits.argmax(-1), f"{h}_id": ids,
                              f"{h}_loss": torch.nn.functional.cross_entropy(logits, ids, ignore_index=-100,
                                                                            reduction="none")})
            got = accelerator.gather_for_metrics(tuple(parts[k] for k in keys))
            for k, g in zip(keys, got):
                stores[k].append(g.cpu())
    cat = {k: torch.cat(v).numpy() for k, v in stores.items()}
    idx = cat["idx"]
    order = np.argsort(idx, kind="stable")
    metrics: dict = {}
    pred = true = None
    if "vad" in heads:
        pred, true = cat["vad"].astype(np.float64), cat["labels"].astype(np.float64)
        std = raw.scaler_std.cpu().double().numpy()
        metrics = regression_metrics(pred, true, VAD_NAMES)
        metrics["loss"] = float((((pred - true) / std) ** 2).mean())  # the V/A/D training loss, on this split
        pred, true = pred[order], true[order]
    metrics["n"] = int(len(idx))
    classes = {}
    class_loss = 0.0
    for h in class_heads:
        labels = raw.config.emotion_labels if h == "emotion" else raw.config.sentiment_labels
        metrics.update(_class_scores(h, cat[f"{h}_id"], cat[f"{h}_pred"], labels))
        keep = cat[f"{h}_id"] != -100
        weight = raw.config.emotion_loss_weight if h == "emotion" else raw.config.sentiment_loss_weight
        class_loss += weight * (float(cat[f"{h}_loss"][keep].mean()) if keep.any() else 0.0)
        classes[h] = (cat[f"{h}_id"][order], cat[f"{h}_pred"][order])
    if "vad" not in heads:
        metrics["loss"] = class_loss     # the training loss of a model without V/A/D, on this split
    return {"metrics": metrics, "pred": pred, "true": true, "idx": idx[order], "classes": classes}


def _class_scores(head: str, true: np.ndarray, pred: np.ndarray, labels) -> dict:
    """A classification head's accuracy and F1 over the labelled utterances (id -100 = none)."""
    keep = true != -100
    names = (f"{head}_accuracy", f"{head}_weighted_f1", f"{head}_macro_f1")
    if not keep.any():
        return {**{m: float("nan") for m in names}, f"n_{head}": 0}
    scores = classification_metrics(true[keep], pred[keep], labels)
    return {names[0]: scores["accuracy"], names[1]: scores["weighted_f1"], names[2]: scores["macro_f1"],
            f"n_{head}": int(keep.sum())}


def _emotion_scores(true: np.ndarray, pred: np.ndarray, labels) -> dict:
    """The emotion head's accuracy and F1 over the labelled utterances (id -100 = outside the class set)."""
    return _class_scores("emotion", true, pred, labels)


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or name.startswith("scaler")


@dataclass
class FinetuneParts:
    """Data, model and loop objects of one fine-tuning run (prepared by Accelerate)."""

    splits: Any
    tokenized: dict
    model: Any
    optimizer: Any
    scheduler: Any
    sampler: LengthGroupedSampler
    train_loader: Any
    val_loader: Any
    test_loader: Any
    steps_per_epoch: int
    total_steps: int


def _selection_column(cfg) -> str:
    """The train_log.csv column that picks the best epoch (``val_`` + ``selection_metric``)."""
    column = f"val_{SELECTION_ALIASES.get(cfg.selection_metric, cfg.selection_metric)}"
    if column not in HIGHER_IS_BETTER:
        raise ConfigError(f"field 'selection_metric': expected one of {sorted(c[4:] for c in HIGHER_IS_BETTER)}")
    return column


def build_parts(cfg, accelerator) -> FinetuneParts:
    """Splits, encoder + head (scaler fitted on train), tokenised loaders, AdamW, linear schedule; prepared."""
    targets, weights = cfg.resolved_targets(), cfg.resolved_weights()
    emotion_set = emotion_class_set(cfg.emotion_classes, cfg.data.dataset) if "emotion" in targets else None
    sentiment_labels = POLARITY if "sentiment" in targets else ()
    with accelerator.main_process_first():
        splits = build_splits(cfg.data, seed=cfg.seed, targets=targets, emotion_set=emotion_set)
        if emotion_set is not None:
            train_emotions = set(splits.datasets["train"]["emotion"])
            if not train_emotions & set(emotion_set.mapping):
                raise ConfigError(f"field 'emotion_loss_weight': the training split of {cfg.data.path} has no "
                                  f"emotion label of the class set {emotion_set.name} {list(emotion_set.labels)}")
        # builtin:tiny is built on first use: one process builds it, the others then load it
        model = VADRegressor.from_encoder_name(cfg.model, pooling=cfg.pooling, dropout=cfg.dropout,
                                               max_length=cfg.max_length, context_past=cfg.context_past,
                                               context_future=cfg.context_future,
                                               target_names=VAD_NAMES if "vad" in targets else (),
                                               emotion_labels=emotion_set.labels if emotion_set else (),
                                               emotion_loss_weight=weights.get("emotion", 0.0),
                                               sentiment_labels=sentiment_labels,
                                               sentiment_loss_weight=weights.get("sentiment", 0.0),
                                               vad_loss_weight=weights.get("vad", 1.0))
    if "vad" in targets:
        train_targets = np.stack([np.asarray(splits.datasets["train"][d], dtype=np.float64) for d in VAD_NAMES], 1)
        model.fit_scaler(train_targets)
    tokenizer = model.tokenizer
    with accelerator.main_process_first():
        context = (frame_context(splits.frame, cfg.context_past, cfg.context_future, tokenizer, cfg.max_length)
                   if cfg.context_past or cfg.context_future else None)
        tok = tokenize_splits(splits.datasets, tokenizer, cfg.max_length, context, emotion_set,
                              with_vad="vad" in targets, sentiment_labels=sentiment_labels or None)
    train_loader, sampler = make_train_loader(
        tok["train"], tokenizer, cfg.batch_size, cfg.seed, cfg.group_by_length,
        num_processes=accelerator.num_processes, drop_last=cfg.drop_last)
    val_loader = make_eval_loader(tok["validation"], tokenizer, cfg.eval_batch_size)
    test_loader = make_eval_loader(tok["test"], tokenizer, cfg.eval_batch_size)

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = fused_adamw([
        {"params": [p for n, p in params if not _no_decay(n)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if _no_decay(n)], "weight_decay": 0.0},
    ], lr=cfg.lr)
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    # counted in optimizer steps: the harness's Accelerator does not tick it once per process
    scheduler = accelerator.prepare(get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps))
    return FinetuneParts(splits, tok, model, optimizer, scheduler, sampler, train_loader, val_loader,
                         test_loader, steps_per_epoch, total_steps)


def _resume(cfg, ckpts: Checkpoints, accelerator) -> TrainerState:
    """A fresh :class:`TrainerState`, or the one of the checkpoint ``cfg.resume`` asks for.

    ``never``: start fresh (earlier checkpoints of this run are removed); ``auto``: the newest
    complete checkpoint if any; ``latest``: the same, an error if there is none; else a folder.
    """
    state = TrainerState()
    state.num_processes = accelerator.num_processes
    got = ckpts.start(cfg.resume, allow_config_change=bool(getattr(cfg, "allow_config_change", False)))
    if got is None:
        return state
    saved, path = got
    state.load_state_dict(saved)
    old_np, state.num_processes = state.num_processes, accelerator.num_processes
    if state.batches_in_epoch and old_np != accelerator.num_processes:
        seen = state.batches_in_epoch * old_np
        if seen % accelerator.num_processes:
            logger.warning("resuming mid-epoch with a different number of processes: "
                           "%d batches cannot be split evenly; rounding down", seen)
        state.batches_in_epoch = seen // accelerator.num_processes
    logger.info("resumed from %s (epoch %d done, %d steps, %d batches into the epoch)",
                path, state.epoch, state.completed_steps, state.batches_in_epoch)
    return state


def train_epoch(cfg, parts: FinetuneParts, state: TrainerState, ckpts: Checkpoints, accelerator, progress) -> bool:
    """One (possibly resumed) epoch of optimizer steps; step checkpoints on the way. True if told to stop."""
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    epoch = state.epoch
    model.train()
    parts.sampler.set_epoch(epoch)
    parts.train_loader.set_epoch(epoch)
    skip = state.batches_in_epoch
    active = accelerator.skip_first_batches(parts.train_loader, skip) if skip else parts.train_loader
    t0 = time.perf_counter()
    for batch in active:
        with accelerator.accumulate(model):
            loss = model(**_model_inputs(batch))["loss"]
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad()
        state.loss_sum += float(accelerator.reduce(loss.detach().float(), "mean"))
        state.loss_count += 1
        state.batches_in_epoch += 1
        if accelerator.sync_gradients:
            state.completed_steps += 1
            progress.update(1)
            progress.set_postfix(loss=f"{state.loss_sum / state.loss_count:.4f}", epoch=epoch + 1)
            if cfg.checkpointing_steps and state.completed_steps % cfg.checkpointing_steps == 0:
                state.epoch_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                ckpts.save(f"step_{state.completed_steps}", state.state_dict(), state.completed_steps)
            if cfg.stop_after_steps and state.completed_steps >= cfg.stop_after_steps:
                return True
    state.epoch_seconds += time.perf_counter() - t0
    return False


def _log_row(epoch: int, state: TrainerState, ev: dict, lr: float) -> dict:
    row = {"epoch": epoch, "train_loss": state.loss_sum / max(state.loss_count, 1), "val_loss": ev["loss"]}
    if "ccc" in ev:          # the V/A/D head
        row.update(val_mse=ev["mse"], val_rmse=ev["rmse"], val_mae=ev["mae"])
        for d in VAD_NAMES:
            row[f"val_{d}_pearson"] = ev[f"{d}_pearson"]
        for d in VAD_NAMES:
            row[f"val_{d}_ccc"] = ev[f"{d}_ccc"]
        row.update(val_pearson=ev["pearson"], val_ccc=ev["ccc"])
    row.update(n_val=ev["n"], lr=lr, epoch_seconds=round(state.epoch_seconds, 3))
    for head, metrics in (("emotion", EMOTION_METRICS), ("sentiment", SENTIMENT_METRICS)):
        if f"n_{head}" in ev:
            row.update({f"val_{m}": ev[m] for m in metrics})
            row[f"n_val_{head}"] = ev[f"n_{head}"]
    return row


def _epoch_line(row: dict) -> str:
    """The console line of an epoch: the losses, V/A/D CCC and r, each head's weighted F1."""
    parts = [f"train_loss {row['train_loss']:.4f}", f"val_loss {row['val_loss']:.4f}"]
    if "val_ccc" in row:
        parts += [f"val_ccc {row['val_ccc']:.4f}", f"val_pearson {row['val_pearson']:.4f}"]
    parts += [f"{k} {row[k]:.4f}" for k in ("val_emotion_weighted_f1", "val_sentiment_weighted_f1") if k in row]
    return " ".join(parts) + f" ({row['epoch_seconds']:.1f}s train)"


def end_epoch(cfg, run: Run, parts: FinetuneParts, state: TrainerState, ckpts: Checkpoints) -> None:
    """Validate, select (best model saved at a new best), early stopping, log, epoch checkpoint."""
    accelerator, epoch = run.accelerator, state.epoch
    column = _selection_column(cfg)
    ev = evaluate(parts.model, parts.val_loader, accelerator)["metrics"]
    row = _log_row(epoch + 1, state, ev, parts.scheduler.get_last_lr()[0])
    state.log_rows.append(row)
    try:
        best = select_best([r[column] for r in state.log_rows], HIGHER_IS_BETTER[column])
    except ValueError:
        logger.warning("epoch %d: no finite %s so far; no best model yet", epoch + 1, column)
        best = None
    if best == len(state.log_rows) - 1:
        state.best_value, state.best_epoch, state.bad_epochs = float(row[column]), epoch + 1, 0
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            accelerator.unwrap_model(parts.model).save_pretrained(finetune_outputs(run.output_dir)["model"])
    else:
        state.bad_epochs = len(state.log_rows) - 1 - (best if best is not None else -1)
        if cfg.early_stopping_patience and state.bad_epochs >= cfg.early_stopping_patience:
            state.stopped_early = True
            logger.info("early stopping: no %s improvement for %d epochs", column, state.bad_epochs)
    accelerator.print(f"epoch {epoch + 1}: {_epoch_line(row)}")
    if accelerator.is_main_process:
        heads = accelerator.unwrap_model(parts.model).heads
        write_csv(finetune_outputs(run.output_dir)["log"], state.log_rows,
                  LOG_COLUMNS if heads == ("vad", "emotion") or heads == ("vad",) else log_columns(heads))
    run.log({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
    state.epoch, state.batches_in_epoch = epoch + 1, 0
    state.loss_sum, state.loss_count, state.epoch_seconds = 0.0, 0, 0.0
    ckpts.save(f"epoch_{epoch + 1}", state.state_dict(), state.completed_steps)


def evaluate_best_model(cfg, run: Run, parts: FinetuneParts, state: TrainerState) -> dict:
    """Load the best-validation model, evaluate test (and validation again); write metrics, predictions, plots."""
    accelerator, out_dir = run.accelerator, run.output_dir
    files = finetune_outputs(out_dir)
    best_dir = files["model"]
    accelerator.wait_for_everyone()
    if not best_dir.is_dir():
        raise ValueError(f"no epoch had a finite {_selection_column(cfg)}: no best model to test "
                         f"(see {files['log']})")
    best = VADRegressor.from_pretrained(best_dir)
    accelerator.unwrap_model(parts.model).load_state_dict(best.state_dict())
    test = evaluate(parts.model, parts.test_loader, accelerator)
    val = evaluate(parts.model, parts.val_loader, accelerator)["metrics"]
    splits = parts.splits
    result = {
        "output_dir": str(out_dir), "best_model": str(best_dir), "best_epoch": state.best_epoch,
        "metric_for_best": _selection_column(cfg), "best_value": state.best_value,
        "epochs_run": state.epoch, "stopped_early": state.stopped_early,
        "test_is_validation": splits.test_is_validation, "split": splits.mode, "sessions": splits.sessions,
        "heads": list(best.heads), "loss_weights": cfg.resolved_weights(),
        "n_train": len(parts.tokenized["train"]), "n_validation": val["n"], "n_test": test["metrics"]["n"],
        "num_processes": accelerator.num_processes,
        "seconds_per_epoch": float(np.mean([r["epoch_seconds"] for r in state.log_rows])) if state.log_rows else None,
        "test": test["metrics"], "validation": val,
    }
    if accelerator.is_main_process:
        write_json(files["metrics"], result)
        write_model_card(files["model"], finetune_card_info(cfg, result))   # best_model/README.md
        write_csv(files["predictions"], _prediction_rows(best, splits.datasets["test"]["utterance_id"], test))
        m = test["metrics"]
        if cfg.plots and test["pred"] is not None:
            result["plots"] = write_plots(out_dir, state.log_rows, test["pred"], test["true"])
        scores = ([f"ccc {m['ccc']:.4f} pearson {m['pearson']:.4f} rmse {m['rmse']:.4f}"] if "ccc" in m else []) + \
            [f"{h} weighted F1 {m[f'{h}_weighted_f1']:.4f}" for h in ("emotion", "sentiment") if f"n_{h}" in m]
        logger.info("test (%s model, epoch %s): %s%s", _selection_column(cfg), state.best_epoch, ", ".join(scores),
                    " [test = validation split]" if splits.test_is_validation else "")
    return result


def _prediction_rows(model, test_ids, test: dict) -> list[dict]:
    """test_predictions.csv: per utterance, true and predicted V/A/D and classes of each head the model has."""
    rows = [{"utterance_id": test_ids[int(i)]} for i in test["idx"]]
    if test["pred"] is not None:
        for r, t, p in zip(rows, test["true"], test["pred"]):
            r.update({f"true_{d}": float(t[j]) for j, d in enumerate(VAD_NAMES)})
            r.update({f"pred_{d}": float(p[j]) for j, d in enumerate(VAD_NAMES)})
    for head, (true, pred) in test["classes"].items():
        labels = model.config.emotion_labels if head == "emotion" else model.config.sentiment_labels
        for r, t, p in zip(rows, true, pred):
            r[f"true_{head}"] = labels[int(t)] if t != -100 else ""
            r[f"pred_{head}"] = labels[int(p)]
    return rows


def run_finetune(cfg) -> dict:
    """Train, select the best epoch on validation, test it; returns paths and metrics.

    With ``cfg.folds``: one run per leave-one-session-out fold and their summary (:mod:`erc.vad.folds`).
    """
    if cfg.folds:
        from erc.vad.folds import run_folds   # the fold runner calls back here, one fold at a time

        return run_folds(cfg)
    _selection_column(cfg)              # a bad selection metric fails before anything starts
    targets = cfg.resolved_targets()
    if targets != ("vad",) or cfg.data.dataset:   # a target the data does not have, too (V/A/D alone: as before)
        check_targets(cfg.data, targets, emotion_class_set(cfg.emotion_classes, cfg.data.dataset)
                      if "emotion" in targets else None, seed=cfg.seed)
    run = start_run(cfg, "finetune", FINETUNE_IDENTITY, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                    step_scheduler_with_optimizer=False)
    accelerator = run.accelerator
    parts = build_parts(cfg, accelerator)
    ckpts = run.checkpoints(finetune_outputs(run.output_dir)["checkpoints"], keep=cfg.keep_checkpoints)
    state = _resume(cfg, ckpts, accelerator)
    logger.info("training: %d examples, %d epochs, %d steps/epoch, %d processes, batch %d/process",
                len(parts.tokenized["train"]), cfg.epochs, parts.steps_per_epoch, accelerator.num_processes,
                cfg.batch_size)
    progress = tqdm(total=parts.total_steps, initial=state.completed_steps, desc="finetune",
                    disable=not accelerator.is_local_main_process)
    interrupted = False
    while state.epoch < cfg.epochs and not state.stopped_early:
        if train_epoch(cfg, parts, state, ckpts, accelerator, progress):
            interrupted = True
            break
        end_epoch(cfg, run, parts, state, ckpts)
    progress.close()
    if interrupted:
        logger.info("stopped after %d steps (--stop-after-steps); resume with --resume auto",
                    state.completed_steps)
        del parts                       # the DDP model goes before the process group (Run.finish)
        run.finish()
        return {"interrupted": True, "completed_steps": state.completed_steps, "output_dir": str(run.output_dir)}
    result = evaluate_best_model(cfg, run, parts, state)
    del parts                           # the DDP model goes before the process group (Run.finish)
    run.finish()  # keeps the process group when a pipeline runs more stages
    out = finetune_outputs(run.output_dir)
    result["paths"] = {k: str(out[v]) for k, v in dict(
        config="config", train_log="log", metrics="metrics", predictions="predictions",
        best_model="model", checkpoints="checkpoints").items()}
    return result
