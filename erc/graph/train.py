"""``train-graph``: the Accelerate training loop of the GraphSmile model.

Order (one seed): Accelerator -> logging -> seed (once) -> data -> model,
loss, AdamW(amsgrad) -> ``accelerator.prepare`` -> resume -> for each epoch:
``set_epoch`` on the prepared train loader, train, evaluate validation
(``torch.no_grad``), select by validation ``selection_metric``, evaluate test
only at a new best validation epoch, checkpoint (atomic) -> results.

The loop is split into small functions other modules can reuse or extend:

* :func:`compute_losses`: forward + task losses + extra ``loss_hooks``
  (each ``hook(out, batch, epoch) -> Tensor | (Tensor, dict)`` is added to
  the loss; the CMERC losses plug in here).
* :func:`evaluate`: per-utterance probabilities, labels and
  ``dialogue_index`` of a split, gathered from every process with each
  dialogue counted exactly once (:class:`EvalResult`).
* :func:`select_best_epoch`: the pure selection rule (first epoch with the
  highest validation score).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from erc.core.accel import end_stage, use_cpu_processes
from erc.core.config import save_config
from erc.core.io import atomic_replace_dir, read_json, write_csv, write_json
from erc.core.logs import setup_logging
from erc.core.metrics import classification_metrics
from erc.data.dialogues import load_splits, make_loader, merge_dialogue_records, split_by_dialogue
from erc.graph.calibration import CALIBRATION_KEYS, best_epoch_calibration, calibration_metrics
from erc.graph.cmerc_losses import make_cmerc_loss_hook
from erc.graph.config import GraphTrainConfig
from erc.graph.curriculum import curriculum_for_training, make_curriculum_loader
from erc.graph.losses import LossCombiner, masked_cross_entropy, task_losses
from erc.graph.model import GraphModelConfig, GraphSmile, save_graph_model

logger = logging.getLogger(__name__)

LossHook = Callable[[Any, Any, int], Any]
SUMMARY_METRICS = ("accuracy", "weighted_f1", "macro_f1")
# calibration (erc.graph.calibration), averaged over seeds too; ts_ = after temperature scaling fitted on validation
CALIBRATION_SUMMARY = ("ece", "mce", "nll", "brier", "ts_ece", "ts_mce", "ts_nll", "ts_brier", "temperature")


# ----------------------------------------------------------------------------- selection
def select_best_epoch(scores: Sequence[float]) -> int:
    """Index of the first epoch with the highest validation score (NaN never wins).

    Pure function of the validation scores: test scores cannot enter it.
    """
    best, best_i = -math.inf, -1
    for i, s in enumerate(scores):
        if s is not None and not math.isnan(s) and s > best:
            best, best_i = s, i
    if best_i < 0:
        raise ValueError("no finite validation score to select an epoch from")
    return best_i


# ----------------------------------------------------------------------------- evaluation
@dataclass
class EvalResult:
    """Per-utterance outputs of one split, ordered by dialogue then position."""

    emotion_probs: np.ndarray        # (n, C)
    sentiment_probs: np.ndarray      # (n, S)
    emotion_logits: np.ndarray       # (n, C)
    labels: np.ndarray               # (n,) -1 = unlabelled
    sentiments: np.ndarray           # (n,)
    dialogue_index: np.ndarray       # (n,) index of the utterance's dialogue in the split
    position: np.ndarray             # (n,)
    dialogue_ids: list[str] = field(default_factory=list)   # one per dialogue, by dialogue_index
    loss: float = float("nan")

    @property
    def num_dialogues(self) -> int:
        return len(self.dialogue_ids)

    def metrics(self, label_names: Sequence[str]) -> dict:
        keep = self.labels >= 0
        return classification_metrics(self.labels[keep], self.emotion_probs[keep].argmax(-1), label_names)


def evaluate(model, loader, accelerator, expected_dialogues: int | None = None) -> EvalResult:
    """Run ``model`` on every batch of a (prepared) loader; gather; de-duplicate by dialogue_index."""

    model.eval()
    records: list[dict] = []
    with torch.no_grad():
        for batch in loader:
            out = model(batch)
            records += split_by_dialogue(
                batch, emo=torch.softmax(out.emotion_logits.float(), -1),
                sen=torch.softmax(out.sentiment_logits.float(), -1), logits=out.emotion_logits.float(),
                label=batch.labels, sentiment=batch.sentiments, position=batch.position)
    if accelerator is not None and accelerator.num_processes > 1:
        records = gather_object(records)
    records = merge_dialogue_records(records, expected_dialogues)
    if not records:
        raise ValueError("evaluation loader yielded no dialogues")
    cat = lambda k: np.concatenate([r[k] for r in records])  # noqa: E731
    res = EvalResult(
        emotion_probs=cat("emo"), sentiment_probs=cat("sen"), emotion_logits=cat("logits"),
        labels=cat("label").astype(np.int64), sentiments=cat("sentiment").astype(np.int64),
        dialogue_index=np.concatenate([np.full(len(r["label"]), r["dialogue_index"]) for r in records]),
        position=cat("position").astype(np.int64), dialogue_ids=[r["dialogue_id"] for r in records])
    keep = res.labels >= 0
    if keep.any():
        res.loss = float(masked_cross_entropy(torch.from_numpy(res.emotion_logits),
                                              torch.from_numpy(res.labels)))
    return res


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
        propagation=cfg.propagation)
    return GraphSmile(mcfg)


def _flat(prefix: str, metrics: dict) -> dict[str, float]:
    out = {f"{prefix}_{k}": metrics[k] for k in SUMMARY_METRICS}
    out.update({f"{prefix}_f1_{name}": v for name, v in metrics["per_class_f1"].items()})
    return out


def _save_predictions(path: Path, res: EvalResult, label_names: Sequence[str]) -> None:
    rows = []
    for u in range(len(res.labels)):
        row = {"dialogue_id": res.dialogue_ids[int(res.dialogue_index[u])], "position": int(res.position[u]),
               "label": int(res.labels[u]), "pred": int(res.emotion_probs[u].argmax())}
        row.update({f"p_{name}": float(res.emotion_probs[u, k]) for k, name in enumerate(label_names)})
        rows.append(row)
    write_csv(path, rows)


def train_seed(cfg: GraphTrainConfig, splits, seed: int, run_dir: Path, accelerator,
               loss_hooks: Sequence[LossHook] = (), on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Train one seed in ``run_dir``; returns the seed's result (best epoch, test metrics there)."""

    set_seed(seed)                       # once per run
    run_dir = Path(run_dir)
    model = build_model(cfg, splits)
    combiner = LossCombiner(cfg.loss, (cfg.lambda_emo, cfg.lambda_sen, cfg.lambda_shift), cfg.epochs)
    params = list(model.parameters()) + list(combiner.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=True)
    train_loader = make_loader(splits.train, cfg.batch_size, shuffle=True, seed=seed)
    curriculum = None
    if cfg.cmerc.curriculum:                   # CMERC: easy -> hard pool growing to the full set (graph.curriculum)
        curriculum = curriculum_for_training(splits.train, cfg.epochs, cfg.cmerc, seed, splits.num_classes)
        train_loader = make_curriculum_loader(splits.train, curriculum, cfg.batch_size)
    cmerc_hook = make_cmerc_loss_hook(cfg.cmerc)   # CMERC rank/mscl/cscl losses; None when all coefs are 0
    if cmerc_hook is not None:
        loss_hooks = [*loss_hooks, cmerc_hook]
    valid_loader = make_loader(splits.valid, cfg.eval_batch_size)
    test_loader = make_loader(splits.test, cfg.eval_batch_size)
    has_combiner_params = any(True for _ in combiner.parameters())
    if has_combiner_params:
        model, combiner, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
            model, combiner, optimizer, train_loader, valid_loader, test_loader)
    else:
        model, optimizer, train_loader, valid_loader, test_loader = accelerator.prepare(
            model, optimizer, train_loader, valid_loader, test_loader)

    ckpt_dir, best_dir = run_dir / "checkpoint", run_dir / "best_model"
    state: dict[str, Any] = {"epoch": -1, "history": [], "best_epoch": None, "best_valid": None, "test": None}
    if cfg.resume != "never" and (ckpt_dir / "trainer_state.json").is_file():
        accelerator.load_state(str(ckpt_dir))
        state = read_json(ckpt_dir / "trainer_state.json")
        if curriculum is not None and state.get("curriculum"):
            curriculum.load_state_dict(state["curriculum"])   # refuses a different easy->hard order
        logger.info("seed %d: resumed from %s after epoch %d", seed, ckpt_dir, state["epoch"])
    label_names = list(splits.label_names)
    n_valid, n_test = len(splits.valid), len(splits.test)
    if n_valid == 0:
        raise ValueError("validation split is empty: selection needs validation dialogues (valid_fraction > 0)")

    epochs = range(state["epoch"] + 1, cfg.epochs)
    bar = tqdm(epochs, desc=f"seed {seed}", disable=not (cfg.progress and accelerator.is_main_process))
    for epoch in bar:
        train_loader.set_epoch(epoch)    # the sampler the prepared loader actually uses
        train_stats = train_one_epoch(model, combiner, train_loader, optimizer, accelerator, epoch, cfg, loss_hooks)
        valid = evaluate(model, valid_loader, accelerator, n_valid)
        vm = valid.metrics(label_names)
        vm.update(calibration_metrics(valid.emotion_probs, valid.labels))
        row = {"seed": seed, "epoch": epoch, **train_stats, "valid_loss": valid.loss, **_flat("valid", vm),
               **{f"valid_{k}": vm[k] for k in CALIBRATION_KEYS}}
        if curriculum is not None:
            row["curriculum_pool"] = curriculum.pool_size(epoch)
        state["history"].append(row)
        best = select_best_epoch([r[f"valid_{cfg.selection_metric}"] for r in state["history"]])
        improved = state["history"][best]["epoch"] == epoch
        test = None
        if improved:
            test = evaluate(model, test_loader, accelerator, n_test)
            tm = test.metrics(label_names)
            cal = best_epoch_calibration(valid.emotion_logits, valid.labels, test.emotion_logits, test.labels)
            tm.update({k[len("test_"):]: v for k, v in cal.items() if k.startswith("test_")},
                      temperature=cal["temperature"])
            state.update(best_epoch=epoch, best_valid=vm, test=tm)
            if accelerator.is_main_process:
                tmp = run_dir / ".best_model.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                save_graph_model(accelerator.unwrap_model(model), tmp, extra={
                    "epoch": epoch, "seed": seed, "label_names": label_names,
                    "sentiment_names": list(getattr(splits, "sentiment_names", ())),
                    "normalization": {m: {k: np.asarray(v).tolist() for k, v in st.items()}
                                      for m, st in (getattr(splits, "normalization", {}) or {}).items()},
                    "valid": vm, "test": state["test"]})
                save_config(cfg, tmp / "config.yaml")
                _save_predictions(tmp / "test_predictions.csv", test, label_names)
                _save_predictions(tmp / "valid_predictions.csv", valid, label_names)
                # reliability diagrams of the test split (raw, temperature-scaled) + calibration.json
                best_epoch_calibration(valid.emotion_logits, valid.labels, test.emotion_logits, test.labels, tmp)
                atomic_replace_dir(tmp, best_dir)
        state["epoch"] = epoch
        if curriculum is not None:
            state["curriculum"] = curriculum.state_dict()   # pool schedule state, checked on resume
        if accelerator.is_main_process:
            write_csv(run_dir / "epochs.csv", state["history"])
        if cfg.checkpoint:
            _checkpoint(accelerator, run_dir, ckpt_dir, state)
        bar.set_postfix(loss=f"{train_stats.get('loss', float('nan')):.3f}",
                        valid_wf1=f"{vm['weighted_f1']:.3f}", best=state["best_epoch"])
        logger.info("seed %d epoch %d: loss %.4f valid acc %.4f wF1 %.4f%s", seed, epoch,
                    train_stats.get("loss", float("nan")), vm["accuracy"], vm["weighted_f1"],
                    " (best)" if improved else "")
        if on_epoch_end is not None:
            on_epoch_end({"epoch": epoch, "valid": valid, "test": test, "model": model, "improved": improved,
                          "accelerator": accelerator, "run_dir": run_dir})
    accelerator.wait_for_everyone()
    result = {"seed": seed, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"] + 1,
              "valid": state["best_valid"], "test": state["test"], "best_model": str(best_dir)}
    if accelerator.is_main_process:
        write_json(run_dir / "result.json", result)
    accelerator.free_memory()
    return {**result, "history": state["history"]}


def _checkpoint(accelerator, run_dir: Path, ckpt_dir: Path, state: dict) -> None:
    """``save_state`` into a temporary folder, then swap it in atomically (main process)."""
    tmp = run_dir / ".checkpoint.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", state)
        atomic_replace_dir(tmp, ckpt_dir)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------- seeds
def summarize_seeds(results: Sequence[dict]) -> dict:
    """Mean and (sample, ddof=1) std over seeds of the test metrics at each seed's best epoch."""
    out: dict[str, Any] = {}
    for split in ("test", "valid"):
        for k in SUMMARY_METRICS + CALIBRATION_SUMMARY:
            vals = np.array([r[split][k] for r in results if r.get(split) and r[split].get(k) is not None],
                            dtype=np.float64)
            if len(vals):
                out[f"{split}_{k}_mean"] = float(vals.mean())
                out[f"{split}_{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def run_train_graph(cfg: GraphTrainConfig, loss_hooks: Sequence[LossHook] = (), splits=None,
                    on_epoch_end: Callable[[dict], None] | None = None) -> dict:
    """Entry point of ``cli.py train-graph``: every seed, then ``results.json`` and ``epochs.csv``.

    ``loss_hooks`` are added to every training step's loss (see :func:`compute_losses`);
    ``on_epoch_end(info)`` gets ``epoch, valid (EvalResult), test (EvalResult at a new best
    validation epoch, else None), model, improved, accelerator, run_dir`` after each epoch.
    """

    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=use_cpu_processes(),
                              dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True))
    setup_logging(accelerator.is_main_process)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != accelerator.num_processes:
        raise RuntimeError(f"WORLD_SIZE={world} but Accelerate runs {accelerator.num_processes} process(es): "
                           "independent runs would overwrite each other's files. On CPU launch with "
                           "`accelerate launch --multi_gpu --num_processes N cli.py train-graph ...` or "
                           "`torchrun --nproc_per_node N cli.py train-graph ...`")
    out_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    with accelerator.main_process_first():
        splits = splits if splits is not None else load_splits(cfg.data)
    accelerator.print(f"train-graph: {splits.summary()} modalities {cfg.data.modalities} dims {splits.dims}")
    results, history = [], []
    for k in range(cfg.seeds):
        seed = cfg.seed + k
        res = train_seed(cfg, splits, seed, out_dir / f"seed_{seed}", accelerator, loss_hooks, on_epoch_end)
        results.append(res)
        history += res.pop("history")
    summary = {"dataset": cfg.data.dataset, "modalities": cfg.data.modalities, "selection": f"valid_{cfg.selection_metric}",
               "num_processes": accelerator.num_processes, "seeds": [r["seed"] for r in results],
               **summarize_seeds(results), "per_seed": results}
    if accelerator.is_main_process:
        write_json(out_dir / "results.json", summary)
        write_csv(out_dir / "epochs.csv", history)
        accelerator.print(format_summary(summary))
    accelerator.wait_for_everyone()
    end_stage(accelerator)  # keeps the process group when a pipeline runs more stages
    return summary


def format_summary(summary: dict) -> str:
    parts = []
    for k in SUMMARY_METRICS + ("ece", "ts_ece"):
        if f"test_{k}_mean" in summary:
            parts.append(f"{k} {summary[f'test_{k}_mean']:.4f} ± {summary[f'test_{k}_std']:.4f}")
    epochs = [r["best_epoch"] for r in summary["per_seed"]]
    return (f"test at best validation epoch ({summary['selection']}; epochs {epochs}) over "
            f"{len(summary['per_seed'])} seed(s): " + ", ".join(parts))
