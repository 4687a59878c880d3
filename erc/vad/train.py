"""Fine-tune a :class:`~erc.vad.model.VADRegressor` with Accelerate (``cli.py finetune``).

The order follows the Accelerate examples: config -> Accelerator -> logging ->
seed -> data (tokenised under ``main_process_first``) -> ``prepare`` -> loop ->
``save_state`` per epoch -> unwrap and ``save_pretrained`` the best model.

Batches are dynamically padded and grouped by length (:class:`LengthGroupedSampler`,
seeded by ``(seed, epoch)`` so an epoch's order never depends on global RNG
state); evaluation gathers with ``gather_for_metrics`` so every example counts
once whatever the number of processes. ``--resume`` restores model, optimizer,
scheduler, RNG and the loop counters (:class:`TrainerState`, registered for
checkpointing) and skips the batches already seen, so an interrupted run ends
with the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from erc.core.accel import end_stage, use_cpu_processes
from erc.core.config import ConfigError, save_config
from erc.core.io import atomic_replace_dir, write_csv, write_json
from erc.core.metrics import VAD_NAMES, regression_metrics
from erc.vad.card import finetune_card_info, write_model_card

logger = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "val_mse", "val_rmse", "val_mae"] + \
    [f"val_{d}_pearson" for d in VAD_NAMES] + [f"val_{d}_ccc" for d in VAD_NAMES] + \
    ["val_pearson", "val_ccc", "n_val", "lr", "epoch_seconds"]
HIGHER_IS_BETTER = {"val_ccc": True, "val_pearson": True, "val_loss": False, "val_mse": False,
                    "val_rmse": False, "val_mae": False}


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
    """Loop counters and history, saved in every checkpoint via ``register_for_checkpointing``."""

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


def tokenize_splits(dsets, tokenizer, max_length: int):
    """Add input_ids/attention_mask, a float ``labels`` (n, 3) column, ``idx`` and ``length``."""
    def enc(batch, indices):
        out = tokenizer(batch["text"], truncation=True, max_length=max_length)
        out["labels"] = [list(v) for v in zip(*(batch[d] for d in VAD_NAMES))]
        out["idx"] = indices
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    return {name: ds.map(enc, batched=True, with_indices=True, remove_columns=ds.column_names,
                         desc=f"tokenise {name}") for name, ds in dsets.items()}


def make_collator(tokenizer, pad_to: int | None = None):
    """Dynamic padding (``pad_to=None``) or fixed padding to ``pad_to`` tokens."""
    from transformers import DataCollatorWithPadding

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
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in batch}


def evaluate(model, loader, accelerator) -> dict:
    """Metrics over the whole split, each example once (``gather_for_metrics``)."""
    model.eval()
    preds, trues, idxs = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = model(**_model_inputs(batch))
            p, t, i = accelerator.gather_for_metrics((out["vad"].float(), batch["labels"].float(), batch["idx"]))
            preds.append(p.cpu())
            trues.append(t.cpu())
            idxs.append(i.cpu())
    pred = torch.cat(preds).numpy().astype(np.float64)
    true = torch.cat(trues).numpy().astype(np.float64)
    idx = torch.cat(idxs).numpy()
    raw = accelerator.unwrap_model(model)
    std = raw.scaler_std.cpu().double().numpy()
    metrics = regression_metrics(pred, true)
    metrics["loss"] = float((((pred - true) / std) ** 2).mean())  # the training loss, on this split
    metrics["n"] = int(len(pred))
    order = np.argsort(idx, kind="stable")
    return {"metrics": metrics, "pred": pred[order], "true": true[order], "idx": idx[order]}


def _checkpoint_key(path: Path, steps_per_epoch: int) -> int:
    m = re.fullmatch(r"(epoch|step)_(\d+)", path.name)
    if not m:
        return -1
    n = int(m.group(2))
    return n * steps_per_epoch if m.group(1) == "epoch" else n


def _list_checkpoints(ckpt_dir: Path, steps_per_epoch: int) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and _checkpoint_key(p, steps_per_epoch) >= 0]
    return sorted(found, key=lambda p: (_checkpoint_key(p, steps_per_epoch), p.name.startswith("epoch")))


def _save_checkpoint(accelerator, ckpt_dir: Path, name: str, keep: int, steps_per_epoch: int) -> Path:
    """``save_state`` into a temporary folder, then move it into place atomically."""
    final = ckpt_dir / name
    tmp = ckpt_dir / f".{name}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_replace_dir(tmp, final)
        if keep > 0:
            for old in _list_checkpoints(ckpt_dir, steps_per_epoch)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or name.startswith("scaler")


def run_finetune(cfg) -> dict:
    """Train, select the best epoch on validation, test it; returns paths and metrics."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from erc.core.logs import setup_logging
    from erc.vad.data import build_splits
    from erc.vad.model import VADRegressor

    if cfg.metric_for_best not in HIGHER_IS_BETTER:
        raise ConfigError(f"field 'metric_for_best': expected one of {sorted(HIGHER_IS_BETTER)}")
    out_dir = Path(cfg.output_dir)
    ckpt_dir = out_dir / "checkpoints"
    # Several CPU processes come through torchrun; see erc.core.accel.use_cpu_processes.
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              mixed_precision=cfg.mixed_precision, cpu=use_cpu_processes())
    setup_logging(accelerator.is_main_process)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    set_seed(cfg.seed)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")

    # ---- data and model ------------------------------------------------------------------
    with accelerator.main_process_first():
        splits = build_splits(cfg, seed=cfg.seed)
        # builtin:tiny is built on first use: one process builds it, the others then load it
        model = VADRegressor.from_encoder_name(cfg.model, pooling=cfg.pooling, dropout=cfg.dropout,
                                               max_length=cfg.max_length)
    train_targets = np.stack([np.asarray(splits.datasets["train"][d], dtype=np.float64) for d in VAD_NAMES], 1)
    model.fit_scaler(train_targets)
    tokenizer = model.tokenizer
    with accelerator.main_process_first():
        tok = tokenize_splits(splits.datasets, tokenizer, cfg.max_length)
    train_loader, sampler = make_train_loader(
        tok["train"], tokenizer, cfg.batch_size, cfg.seed, cfg.group_by_length,
        num_processes=accelerator.num_processes, drop_last=cfg.drop_last)
    val_loader = make_eval_loader(tok["validation"], tokenizer, cfg.eval_batch_size)
    test_loader = make_eval_loader(tok["test"], tokenizer, cfg.eval_batch_size)

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": [p for n, p in params if not _no_decay(n)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if _no_decay(n)], "weight_decay": 0.0},
    ], lr=cfg.learning_rate)
    model, optimizer, train_loader, val_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, test_loader)
    steps_per_epoch = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(cfg.warmup_ratio * total_steps)
    # the prepared scheduler ticks once per process per optimizer step
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps * accelerator.num_processes,
                                                total_steps * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)
    state = TrainerState()
    state.num_processes = accelerator.num_processes
    accelerator.register_for_checkpointing(state)

    # ---- resume ----------------------------------------------------------------------------
    if cfg.resume:
        if cfg.resume == "latest":
            found = _list_checkpoints(ckpt_dir, steps_per_epoch)
            if not found:
                raise ConfigError(f"--resume latest: no checkpoints under {ckpt_dir}")
            resume_path = found[-1]
        else:
            resume_path = Path(cfg.resume)
            if not resume_path.is_dir():
                raise ConfigError(f"--resume {cfg.resume}: no such checkpoint folder")
        accelerator.load_state(str(resume_path))
        old_np, state.num_processes = state.num_processes, accelerator.num_processes
        if old_np != accelerator.num_processes:
            # the scheduler counted old_np ticks per step; re-express it for this run's world size
            sch = scheduler.scheduler
            sch.last_epoch = state.completed_steps * accelerator.num_processes
            lrs = [base * lam(sch.last_epoch) for base, lam in zip(sch.base_lrs, sch.lr_lambdas)]
            for group, lr in zip(optimizer.param_groups, lrs):
                group["lr"] = lr
            sch._last_lr = lrs
            if state.batches_in_epoch:
                seen = state.batches_in_epoch * old_np
                if seen % accelerator.num_processes:
                    logger.warning("resuming mid-epoch with a different number of processes: "
                                   "%d batches cannot be split evenly; rounding down", seen)
                state.batches_in_epoch = seen // accelerator.num_processes
        logger.info("resumed from %s (epoch %d done, %d steps, %d batches into the epoch)",
                    resume_path, state.epoch, state.completed_steps, state.batches_in_epoch)

    # ---- train -----------------------------------------------------------------------------
    logger.info("training: %d examples, %d epochs, %d steps/epoch, %d processes, batch %d/process",
                len(tok["train"]), cfg.epochs, steps_per_epoch, accelerator.num_processes, cfg.batch_size)
    progress = tqdm(total=total_steps, initial=state.completed_steps, desc="finetune",
                    disable=not accelerator.is_local_main_process)
    higher = HIGHER_IS_BETTER[cfg.metric_for_best]
    best_dir = out_dir / "best_model"
    interrupted = False
    while state.epoch < cfg.epochs and not state.stopped_early and not interrupted:
        epoch = state.epoch
        model.train()
        sampler.set_epoch(epoch)
        train_loader.set_epoch(epoch)
        skip = state.batches_in_epoch
        active = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        t0 = time.perf_counter()
        for batch in active:
            with accelerator.accumulate(model):
                out = model(**_model_inputs(batch))
                loss = out["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
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
                    _save_checkpoint(accelerator, ckpt_dir, f"step_{state.completed_steps}",
                                     cfg.keep_checkpoints, steps_per_epoch)
                if cfg.stop_after_steps and state.completed_steps >= cfg.stop_after_steps:
                    interrupted = True
                    break
        if interrupted:
            break
        state.epoch_seconds += time.perf_counter() - t0
        ev = evaluate(model, val_loader, accelerator)["metrics"]
        row = {"epoch": epoch + 1, "train_loss": state.loss_sum / max(state.loss_count, 1),
               "val_loss": ev["loss"], "val_mse": ev["mse"], "val_rmse": ev["rmse"], "val_mae": ev["mae"]}
        for d in VAD_NAMES:
            row[f"val_{d}_pearson"] = ev[f"{d}_pearson"]
        for d in VAD_NAMES:
            row[f"val_{d}_ccc"] = ev[f"{d}_ccc"]
        row.update(val_pearson=ev["pearson"], val_ccc=ev["ccc"], n_val=ev["n"],
                   lr=scheduler.get_last_lr()[0], epoch_seconds=round(state.epoch_seconds, 3))
        state.log_rows.append(row)
        value = row[cfg.metric_for_best]
        improved = state.best_value is None or (np.isfinite(value) and (
            value > state.best_value if higher else value < state.best_value))
        if improved:
            state.best_value, state.best_epoch, state.bad_epochs = float(value), epoch + 1, 0
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                accelerator.unwrap_model(model).save_pretrained(best_dir)
        else:
            state.bad_epochs += 1
            if cfg.early_stopping_patience and state.bad_epochs >= cfg.early_stopping_patience:
                state.stopped_early = True
                logger.info("early stopping: no %s improvement for %d epochs", cfg.metric_for_best,
                            state.bad_epochs)
        accelerator.print(f"epoch {epoch + 1}: train_loss {row['train_loss']:.4f} val_loss {row['val_loss']:.4f} "
                          f"val_ccc {row['val_ccc']:.4f} val_pearson {row['val_pearson']:.4f} "
                          f"({row['epoch_seconds']:.1f}s train)")
        if accelerator.is_main_process:
            write_csv(out_dir / "train_log.csv", state.log_rows, LOG_COLUMNS)
        state.epoch, state.batches_in_epoch = epoch + 1, 0
        state.loss_sum, state.loss_count, state.epoch_seconds = 0.0, 0, 0.0
        _save_checkpoint(accelerator, ckpt_dir, f"epoch_{epoch + 1}", cfg.keep_checkpoints, steps_per_epoch)
    progress.close()
    if interrupted:
        logger.info("stopped after %d steps (--stop-after-steps); resume with --resume latest",
                    state.completed_steps)
        return {"interrupted": True, "completed_steps": state.completed_steps, "output_dir": str(out_dir)}

    # ---- test with the best-validation model ---------------------------------------------------
    accelerator.wait_for_everyone()
    best = VADRegressor.from_pretrained(best_dir)
    accelerator.unwrap_model(model).load_state_dict(best.state_dict())
    test = evaluate(model, test_loader, accelerator)
    val = evaluate(model, val_loader, accelerator)["metrics"]
    result = {
        "output_dir": str(out_dir), "best_model": str(best_dir), "best_epoch": state.best_epoch,
        "metric_for_best": cfg.metric_for_best, "best_value": state.best_value,
        "epochs_run": state.epoch, "stopped_early": state.stopped_early,
        "test_is_validation": splits.test_is_validation, "split": splits.mode,
        "n_train": len(tok["train"]), "n_validation": val["n"], "n_test": test["metrics"]["n"],
        "num_processes": accelerator.num_processes,
        "seconds_per_epoch": float(np.mean([r["epoch_seconds"] for r in state.log_rows])) if state.log_rows else None,
        "test": test["metrics"], "validation": val,
    }
    if accelerator.is_main_process:
        write_json(out_dir / "metrics.json", result)
        write_model_card(best_dir, finetune_card_info(cfg, result))   # best_model/README.md
        test_ids = splits.datasets["test"]["utterance_id"]
        rows = [{"utterance_id": test_ids[int(i)],
                 **{f"true_{d}": float(t[j]) for j, d in enumerate(VAD_NAMES)},
                 **{f"pred_{d}": float(p[j]) for j, d in enumerate(VAD_NAMES)}}
                for i, t, p in zip(test["idx"], test["true"], test["pred"])]
        write_csv(out_dir / "test_predictions.csv", rows)
        if cfg.plots:
            from erc.vad.plots import write_plots
            result["plots"] = write_plots(out_dir, state.log_rows, test["pred"], test["true"])
        logger.info("test (%s model, epoch %s): ccc %.4f pearson %.4f rmse %.4f%s", cfg.metric_for_best,
                    state.best_epoch, test["metrics"]["ccc"], test["metrics"]["pearson"],
                    test["metrics"]["rmse"], " [test = validation split]" if splits.test_is_validation else "")
    accelerator.wait_for_everyone()
    end_stage(accelerator)  # keeps the process group when a pipeline runs more stages
    result["paths"] = {k: str(out_dir / v) for k, v in dict(
        config="config.yaml", train_log="train_log.csv", metrics="metrics.json",
        predictions="test_predictions.csv", best_model="best_model", checkpoints="checkpoints").items()}
    return result
