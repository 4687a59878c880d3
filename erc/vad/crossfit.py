"""Out-of-fold embeddings: ``erc embed --cross-fit K``.

A model stacked on a fine-tuned encoder's embeddings (the graph stage) learns from training
dialogues the encoder was fitted on; their embeddings are more separable than those of dialogues
the encoder never saw (the test split), so the stacked model learns from optimistic features.
Cross-fitting embeds each of the fine-tuning's training sessions with an encoder fine-tuned
without it:

* the fine-tuning run behind ``--model`` (its ``config.yaml``, beside ``best_model/``, or
  ``--finetune-config``) names the training sessions; they are cut into K folds of consecutive
  sessions, as even as possible;
* fold k re-runs that fine-tuning, same settings, validation and test sessions, on the training
  sessions of the other folds, into ``<cross_fit_dir>/fold_<sessions>`` (default
  ``cross_fit_dir``: ``cross_fit/`` beside the output file). A complete fold of the same config
  is reused, an unfinished one resumes, a folder that holds another run stops with the usual
  message;
* an utterance whose dialogue belongs to fold k's sessions is embedded by fold k's encoder;
  every other utterance (validation and test dialogues, sessions the fine-tuning did not train
  on) by ``--model`` itself, so the test features are those of plain ``embed``.

Data without sessions (MELD, EmoBank, tables: every ``session`` is -1) holds out dialogues instead:
the fine-tuning's training dialogues are cut into K folds by a permutation seeded by the fine-tuning's
seed (:func:`erc.vad.data.dialogue_folds`), fold k re-runs the fine-tuning with
``data.train_dialogue_folds = K``, ``data.held_out_fold = k`` (the same validation and test split,
training on the other folds) into ``<cross_fit_dir>/fold_k``, and embeds fold k's dialogues.
Either way no training or validation dialogue of the graph stage is embedded by an encoder that
trained on it (validation dialogues are embedded by the full model, which only selected on them).

Dialogues are matched by dialogue id (IEMOCAP's ``Ses01F_impro01`` in the release and in the
COSMIC pickle alike; MELD's ``0`` ... in the COSMIC pickle, so a MELD fine-tuning that feeds
COSMIC MELD reads that pickle, ``data.dataset: cosmic_meld``). ``<output>.cross_fit.json``
records, for each encoder, the sessions (or the fold) it trained on and held out, how many
dialogues and utterances it embedded, and its fine-tuning metrics. Data with sessions must be
split by session.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from erc.core.config import ConfigError, config_from_dict, load_yaml
from erc.core.io import read_json
from erc.core.runs import check_run_dir
from erc.vad.config import FinetuneConfig

logger = logging.getLogger(__name__)


@dataclass
class FoldPlan:
    """One encoder of a cross-fitted embedding: the model folder and the dialogues it embeds."""

    name: str
    model: str
    held_out: list[int]             # the sessions whose dialogues this encoder embeds ([] = the full model)
    train_sessions: list[int]
    dialogues: set[str]
    metrics: dict | None = None
    fold: int = 0                   # dialogue folds: the fold of training dialogues held out (0 = session folds)


def fold_groups(sessions: Sequence[int], k: int) -> list[list[int]]:
    """Consecutive, near-even groups of the sorted ``sessions``: ``([1, 2, 3], 2) -> [[1, 2], [3]]``."""
    s = sorted({int(x) for x in sessions})
    if len(s) < 2:
        raise ConfigError(f"field 'cross_fit': cross-fitting needs at least 2 training sessions; the "
                          f"fine-tuning trains on {s}")
    if not 2 <= k <= len(s):
        raise ConfigError(f"field 'cross_fit': expected 2 to {len(s)} folds (one per training session at most; "
                          f"the fine-tuning trains on sessions {s}), got {k}")
    return [[int(x) for x in g] for g in np.array_split(np.asarray(s), k)]


def finetune_run_config(model: str, config_path: str = "") -> tuple[FinetuneConfig, Path]:
    """The finetune config that produced ``model`` (a ``best_model/`` folder) and the file it came from."""
    from erc.vad.model import is_vad_model_dir

    if not (Path(model).is_dir() and is_vad_model_dir(model)):
        raise ConfigError(f"field 'cross_fit': --model {model} is not a fine-tuned V/A/D folder; cross-fitting "
                          "re-runs the fine-tuning that made it (give best_model/ of a finetune run)")
    path = Path(config_path) if config_path else Path(model).resolve().parent / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"field 'finetune_config': {path}: no such file; cross-fitting needs the config.yaml "
                          "of the finetune run that made --model (give it with --finetune-config)")
    cfg = config_from_dict(FinetuneConfig, load_yaml(path), source=str(path))
    if cfg.folds:
        raise ConfigError(f"field 'finetune_config': {path} is a leave-one-session-out run (folds {cfg.folds}); "
                          "give the config of a single fine-tuning run")
    return cfg, path


def training_sessions(ft: FinetuneConfig) -> tuple[dict[str, list[int]], dict[int, set[str]]]:
    """``({train, valid, test}: sessions, {training session: its dialogue ids})`` of a finetune config."""
    from erc.vad.data import (assign_splits, default_split, emotion_class_set, labeled_mask, load_vad_frame,
                              session_sets, training_mask)

    df, fmt = load_vad_frame(ft.data, seed=ft.seed, require_labels="vad" in ft.resolved_targets())
    masks, mode = assign_splits(df, ft.data, seed=ft.seed, default_mode=default_split(fmt))
    if mode != "session":
        raise ConfigError(f"field 'cross_fit': the fine-tuning of {ft.data.path} splits by {mode}; cross-fitting "
                          "holds out training sessions and needs a session split (IEMOCAP; data without "
                          "sessions, such as MELD, cross-fits by folds of training dialogues)")
    if ft.data.leave_one_session_out and ft.data.loso_validation == "slice":
        raise ConfigError("field 'cross_fit': the fine-tuning validates on a slice of its training sessions' "
                          "dialogues; cross-fitting keeps a fine-tuning's validation sessions and needs whole ones "
                          "(loso_validation: session, or train/valid/test sessions)")
    available = sorted(int(s) for s in df.loc[labeled_mask(df), "session"].unique())
    train, valid, test = session_sets(ft.data, available)
    targets = ft.resolved_targets()
    emotion_set = emotion_class_set(ft.emotion_classes, ft.data.dataset) if "emotion" in targets else None
    rows = df.loc[masks["train"] & training_mask(df, targets, emotion_set), ["session", "dialogue_id"]]
    by_session = {int(s): set(g["dialogue_id"].astype(str)) for s, g in rows.groupby("session")}
    return {"train": sorted(by_session), "valid": list(valid), "test": list(test)}, by_session


def fold_config(ft: FinetuneConfig, sessions: dict[str, list[int]], held_out: Sequence[int], out_dir: Path,
                num_threads: int) -> FinetuneConfig:
    """``ft`` trained without ``held_out``: same settings, validation and test sessions, its own folder."""
    data = dataclasses.replace(ft.data, split="session", leave_one_session_out=0,
                               train_sessions=[s for s in sessions["train"] if s not in held_out],
                               valid_sessions=list(sessions["valid"]), test_sessions=list(sessions["test"]))
    return dataclasses.replace(ft, data=data, output_dir=str(out_dir), resume="auto", overwrite=False,
                               allow_config_change=False, stop_after_steps=0,
                               num_threads=num_threads or ft.num_threads)


def _complete(fcfg: FinetuneConfig) -> dict | None:
    """The metrics of a finished fold run of exactly ``fcfg`` in its folder, else None."""
    from erc.vad.stage import FINETUNE

    if not FINETUNE.is_complete(fcfg):
        return None
    if check_run_dir(fcfg.output_dir, FINETUNE.identity(fcfg), False) != "same":   # raises when it holds another run
        return None
    return read_json(FINETUNE.outputs(fcfg)["metrics"])


def has_sessions(ft: FinetuneConfig) -> bool:
    """Whether the fine-tuning's data has session numbers (then cross-fitting holds out sessions)."""
    from erc.vad.data import load_vad_frame

    df, _ = load_vad_frame(ft.data, seed=ft.seed, require_labels="vad" in ft.resolved_targets())
    return bool((df["session"] > 0).any())


def training_dialogue_folds(ft: FinetuneConfig, k: int) -> list[list[str]]:
    """The K seeded folds of the fine-tuning's training dialogues (as ``data.held_out_fold`` cuts them)."""
    from erc.vad.data import assign_splits, default_split, dialogue_folds, load_vad_frame

    df, fmt = load_vad_frame(ft.data, seed=ft.seed, require_labels="vad" in ft.resolved_targets())
    masks, _ = assign_splits(df, ft.data, seed=ft.seed, default_mode=default_split(fmt))
    n = df.loc[masks["train"], "dialogue_id"].nunique()
    if not 2 <= k <= n:
        raise ConfigError(f"field 'cross_fit': expected 2 to {n} folds (the fine-tuning trains on {n} dialogues), "
                          f"got {k}")
    return dialogue_folds(df.loc[masks["train"], "dialogue_id"].astype(str), k, ft.seed)


def dialogue_fold_config(ft: FinetuneConfig, k: int, fold: int, out_dir: Path, num_threads: int) -> FinetuneConfig:
    """``ft`` trained without fold ``fold`` of its K training-dialogue folds: same split otherwise."""
    data = dataclasses.replace(ft.data, train_dialogue_folds=int(k), held_out_fold=int(fold))
    return dataclasses.replace(ft, data=data, output_dir=str(out_dir), resume="auto", overwrite=False,
                               allow_config_change=False, stop_after_steps=0,
                               num_threads=num_threads or ft.num_threads)


def _run_fold(name: str, fcfg: FinetuneConfig, what: str) -> dict:
    """The metrics of fold ``name``: a finished run of ``fcfg`` reused, else fine-tuned (or resumed) now."""
    from erc.vad.stage import FINETUNE
    from erc.vad.train import run_finetune

    metrics = _complete(fcfg)
    if metrics is not None:
        logger.info("cross-fit %s: reusing the finished fine-tuning in %s", name, fcfg.output_dir)
        return metrics
    logger.info("cross-fit %s: fine-tuning %s", name, what)
    result = run_finetune(fcfg)
    if result.get("interrupted"):
        raise ConfigError(f"cross-fit {name}: the fine-tuning stopped early; rerun to resume")
    return read_json(FINETUNE.outputs(fcfg)["metrics"])


def plan_dialogue_folds(cfg, ft: FinetuneConfig, ft_path: Path, root: Path) -> list[FoldPlan]:
    """Cross-fit data without sessions: K seeded folds of the training dialogues (see the module docstring)."""
    from erc.vad.stage import FINETUNE

    if ft.data.train_dialogue_folds or ft.data.held_out_fold:
        raise ConfigError(f"field 'finetune_config': {ft_path} already holds out a fold of its training dialogues; "
                          "give the config of the full fine-tuning")
    folds = training_dialogue_folds(ft, cfg.cross_fit)
    logger.info("cross-fit: %s has no sessions; %d folds of its %d training dialogues (seed %d) in %s",
                ft_path, len(folds), sum(map(len, folds)), ft.seed, root)
    plans = []
    for k, dialogues in enumerate(folds, start=1):
        name = f"fold_{k}"
        fcfg = dialogue_fold_config(ft, len(folds), k, root / name, cfg.num_threads)
        metrics = _run_fold(name, fcfg, f"without fold {k} ({len(dialogues)} training dialogues)")
        plans.append(FoldPlan(name, str(FINETUNE.outputs(fcfg)["model"]), [], [], set(dialogues), _brief(metrics),
                              fold=k))
    full_metrics = Path(cfg.model).resolve().parent / "metrics.json"
    plans.append(FoldPlan("full", str(cfg.model), [], [], set(),
                          _brief(read_json(full_metrics)) if full_metrics.is_file() else None))
    return plans


def plan_cross_fit(cfg) -> list[FoldPlan]:
    """Fine-tune (or reuse) every fold of ``cfg`` (an EmbedConfig with ``cross_fit`` >= 2); the last
    entry is the full model, which embeds everything no fold holds out."""
    from erc.vad.stage import FINETUNE
    from erc.vad.train import run_finetune

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("field 'cross_fit': run embed --cross-fit in one process (its fold fine-tunings "
                          "are single runs; launch `erc finetune` under accelerate for multi-GPU folds)")
    ft, ft_path = finetune_run_config(cfg.model, cfg.finetune_config)
    root = Path(cfg.cross_fit_dir) if cfg.cross_fit_dir else Path(cfg.output).parent / "cross_fit"
    if not has_sessions(ft):
        return plan_dialogue_folds(cfg, ft, ft_path, root)
    sessions, dialogues = training_sessions(ft)
    groups = fold_groups(sessions["train"], cfg.cross_fit)
    logger.info("cross-fit: %s trains on sessions %s (validation %s, test %s); %d folds %s in %s",
                ft_path, sessions["train"], sessions["valid"], sessions["test"], len(groups), groups, root)
    plans = []
    for group in groups:
        name = "fold_" + "-".join(map(str, group))
        fcfg = fold_config(ft, sessions, group, root / name, cfg.num_threads)
        metrics = _complete(fcfg)
        if metrics is None:
            logger.info("cross-fit %s: fine-tuning on sessions %s (holding out %s)", name,
                        fcfg.data.train_sessions, group)
            result = run_finetune(fcfg)
            if result.get("interrupted"):
                raise ConfigError(f"cross-fit {name}: the fine-tuning stopped early; rerun to resume")
            metrics = read_json(FINETUNE.outputs(fcfg)["metrics"])
        else:
            logger.info("cross-fit %s: reusing the finished fine-tuning in %s", name, fcfg.output_dir)
        plans.append(FoldPlan(name, str(FINETUNE.outputs(fcfg)["model"]), list(group),
                              list(fcfg.data.train_sessions), set().union(*(dialogues[s] for s in group)),
                              _brief(metrics)))
    full_metrics = Path(cfg.model).resolve().parent / "metrics.json"
    plans.append(FoldPlan("full", str(cfg.model), [], list(sessions["train"]), set(),
                          _brief(read_json(full_metrics)) if full_metrics.is_file() else None))
    return plans


def _brief(metrics: dict) -> dict:
    """Best epoch, and validation / test Pearson r and CCC (overall and per dimension) and the classification
    heads' F1 and accuracy of a finetune run."""
    keep = lambda d: {k: v for k, v in (d or {}).items()   # noqa: E731
                      if k.endswith(("pearson", "ccc", "weighted_f1", "macro_f1", "accuracy"))}
    return {"best_epoch": metrics.get("best_epoch"), "sessions": metrics.get("sessions"),
            "validation": keep(metrics.get("validation")), "test": keep(metrics.get("test"))}


def assign_utterances(plans: list[FoldPlan], dialogue_ids: Sequence[str]) -> np.ndarray:
    """Index into ``plans`` of the encoder that embeds each utterance (the last plan: the full model)."""
    owner = np.full(len(dialogue_ids), len(plans) - 1, dtype=np.int64)
    ids = np.asarray([str(d) for d in dialogue_ids], dtype=object)
    for i, p in enumerate(plans[:-1]):
        owner[np.isin(ids, list(p.dialogues))] = i
    return owner


def cross_fit_record(cfg, plans: list[FoldPlan], owner: np.ndarray, dialogue_ids: Sequence[str]) -> dict:
    """What ``<output>.cross_fit.json`` holds."""
    ids = np.asarray([str(d) for d in dialogue_ids], dtype=object)
    encoders = []
    for i, p in enumerate(plans):
        mask = owner == i
        entry = {"name": p.name, "model": p.model, "held_out_sessions": p.held_out,
                 "train_sessions": p.train_sessions, "dialogues": int(len(set(ids[mask]))),
                 "utterances": int(mask.sum()), "finetune_metrics": p.metrics}
        if p.fold:
            entry.update(held_out_fold=p.fold, held_out_dialogues=sorted(p.dialogues))
        encoders.append(entry)
    return {"cross_fit": int(cfg.cross_fit), "dataset": cfg.dataset, "model": str(cfg.model),
            "rule": ("an utterance of a dialogue in a fold's held-out training dialogues is embedded by that fold's "
                     "encoder (fine-tuned without them; folds seeded by the fine-tuning's seed); every other "
                     "utterance by the full model") if any(p.fold for p in plans) else
                    "an utterance of a dialogue in a fold's held-out sessions is embedded by that fold's encoder "
                    "(fine-tuned without those sessions); every other utterance by the full model",
            "encoders": encoders}
