"""Conversation difficulty for curriculum learning, keyed by dialogue id.

Two definitions (higher = harder):

* **model** (CMERC): the mean cross-entropy of a trained model over the
  labelled utterances of the dialogue::

      d_model(D) = 1/|L(D)| sum_{t in L(D)} -log softmax(z_t)_{y_t}

  with ``L(D)`` the labelled utterances (label >= 0) of ``D``.

* **labels** (no model needed): normalised entropy of the dialogue's label
  distribution plus its emotion-shift rate::

      d_labels(D) = H(p_D) / log C  +  s(D)
      H(p_D) = -sum_k p_k log p_k,   p_k = #{t in L(D) : y_t = k} / |L(D)|
      s(D)   = #{consecutive labelled pairs (t', t) with y_t != y_t'} / (|L(D)| - 1)

  both terms in [0, 1] (``C`` = number of classes; ``s = 0`` when fewer than
  two labelled utterances), so ``d_labels`` is in [0, 2]: a dialogue that
  stays in one emotion is easy, one that jumps between many is hard.

Scores are written with :func:`save_difficulty` (``.csv`` with columns
``dialogue_id,difficulty,num_utterances`` or ``.json`` ``{id: score}``),
atomically, and read back with :func:`load_difficulty`.

``cli.py difficulty`` runs :func:`run_difficulty` with a :class:`DifficultyConfig`
(a ``data:`` section plus ``model_dir``, ``split``, ``output``; in :mod:`erc.graph.config`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from erc.core.io import read_json, write_csv, write_json
from erc.graph.config import DifficultyConfig

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- definitions
def label_difficulty_one(labels: Sequence[int] | np.ndarray, num_classes: int) -> float:
    """``H(p)/log C + shift rate`` of one dialogue's labels (-1 ignored). See module doc."""
    y = np.asarray(labels, dtype=np.int64)
    y = y[y >= 0]
    if y.size == 0:
        return 0.0
    if num_classes < 2:
        raise ValueError(f"label difficulty: num_classes must be >= 2, got {num_classes}")
    if y.max() >= num_classes:
        raise ValueError(f"label difficulty: label {int(y.max())} >= num_classes {num_classes}")
    p = np.bincount(y, minlength=num_classes) / y.size
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(num_classes))
    shift = float(np.mean(y[1:] != y[:-1])) if y.size > 1 else 0.0
    return entropy + shift


def label_difficulty(dialogues: Iterable[Any], num_classes: int | None = None) -> dict[str, float]:
    """``{dialogue_id: d_labels}`` for objects with ``dialogue_id`` and ``labels`` (e.g. fusion Dialogue).

    ``num_classes`` defaults to (largest label + 1) over all the dialogues.
    """
    dialogues = list(dialogues)
    if num_classes is None:
        num_classes = max([int(np.max(d.labels)) for d in dialogues if len(d.labels)] + [1]) + 1
    return {str(d.dialogue_id): label_difficulty_one(d.labels, num_classes) for d in dialogues}


def loss_difficulty(losses: Any, dialogue_of_node: Any, dialogue_ids: Sequence[str],
                    labels: Any | None = None) -> dict[str, float]:
    """Mean per-utterance loss of each dialogue: ``{dialogue_ids[b]: mean_{t : batch[t] = b} loss_t}``.

    Shapes: losses (N,), dialogue_of_node (N,) in [0, B), dialogue_ids (B,);
    ``labels`` (N,) optional: nodes with label -1 are excluded. A dialogue
    without labelled nodes gets NaN.
    """
    def np_(x, dtype):
        return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=dtype)

    loss = np_(losses, np.float64).reshape(-1)
    b = np_(dialogue_of_node, np.int64).reshape(-1)
    if loss.shape != b.shape:
        raise ValueError(f"loss_difficulty: {loss.size} losses but {b.size} dialogue indices")
    keep = np.ones_like(b, dtype=bool) if labels is None else np_(labels, np.int64).reshape(-1) >= 0
    nb = len(dialogue_ids)
    total = np.bincount(b[keep], weights=loss[keep], minlength=nb)
    count = np.bincount(b[keep], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {str(d): float(m) for d, m in zip(dialogue_ids, mean)}


def model_difficulty(logits_fn: Callable[[Any], Any], dialogues: Sequence[Any], batch_size: int = 16,
                     device: str = "cpu") -> dict[str, float]:
    """``{dialogue_id: d_model}``: mean cross-entropy of ``logits_fn(batch)`` per dialogue.

    ``logits_fn`` maps a :class:`erc.data.batch.DialogueBatch` to emotion
    logits (N, C) or to an object with ``emotion_logits`` (a GraphSmile
    output). Runs through :func:`erc.graph.infer.run_inference` (inference mode).
    """
    # lazy: this module registers `cli.py difficulty`, whose --help must not import torch
    from erc.data.dialogues import make_loader
    from erc.graph.infer import run_inference

    dialogues = list(dialogues)
    res = run_inference(logits_fn, make_loader(dialogues, batch_size=batch_size, shuffle=False), device=device)
    return loss_difficulty(res.per_utterance_loss(), res.dialogue_index, [d.dialogue_id for d in dialogues],
                           res.labels)


# ----------------------------------------------------------------------------- files
def save_difficulty(path: str | Path, scores: Mapping[str, float],
                    num_utterances: Mapping[str, int] | None = None) -> Path:
    """Write ``scores`` atomically: ``.json`` -> ``{id: score}``, else CSV (sorted easy -> hard)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        write_json(path, {str(k): float(v) for k, v in scores.items()})
    else:
        rows = [{"dialogue_id": k, "difficulty": repr(float(v)),
                 "num_utterances": "" if num_utterances is None else int(num_utterances.get(k, 0))}
                for k, v in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))]
        write_csv(path, rows, ["dialogue_id", "difficulty", "num_utterances"])
    return path


def load_difficulty(path: str | Path) -> dict[str, float]:
    """Read a file written by :func:`save_difficulty`; errors name the file, row and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"difficulty file {path} does not exist (write one with `cli.py difficulty`)")
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{dialogue_id: difficulty}}")
        out = {}
        for k, v in data.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{path}: dialogue {k!r}: difficulty must be a finite number, got {v!r}")
            out[str(k)] = float(v)
        return out
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"dialogue_id", "difficulty"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected dialogue_id,difficulty")
        out = {}
        for i, row in enumerate(reader, start=2):
            try:
                v = float(row["difficulty"])
            except ValueError:
                raise ValueError(f"{path}, line {i}: field 'difficulty': expected a number, "
                                 f"got {row['difficulty']!r}") from None
            if not math.isfinite(v):
                raise ValueError(f"{path}, line {i}: field 'difficulty': expected a finite number, got {v}")
            if row["dialogue_id"] in out:
                raise ValueError(f"{path}, line {i}: dialogue_id {row['dialogue_id']!r} appears twice")
            out[row["dialogue_id"]] = v
    return out


# ----------------------------------------------------------------------------- CLI stage
def run_difficulty(cfg: DifficultyConfig) -> dict[str, float]:
    """Score the dialogues of ``cfg.split`` and write ``cfg.output`` (+ the resolved config next to it)."""
    from erc.core.config import save_config
    from erc.core.logs import setup_logging
    from erc.data.dialogues import load_splits

    setup_logging(True)
    splits = load_splits(cfg.data)
    dialogues = splits.split(cfg.split)
    if not dialogues:
        raise ValueError(f"split {cfg.split!r} of {splits.source} has no dialogues to score")
    method = cfg.method if cfg.method != "auto" else ("model" if cfg.model_dir else "labels")
    if method == "model":
        import torch

        from erc.graph.model import load_graph_model

        model, _ = load_graph_model(cfg.model_dir, map_location=cfg.device)
        model.to(torch.device(cfg.device)).eval()
        scores = model_difficulty(model, dialogues, cfg.batch_size, cfg.device)
    else:
        scores = label_difficulty(dialogues, splits.num_classes)
    out = save_difficulty(cfg.output, scores, {d.dialogue_id: len(d) for d in dialogues})
    save_config(cfg, out.with_name(out.stem + ".config.yaml"))
    vals = np.array(list(scores.values()), dtype=np.float64)
    logger.info("difficulty (%s) of %d %s dialogues -> %s: min %.4f median %.4f max %.4f", method, len(scores),
                cfg.split, out, np.nanmin(vals), np.nanmedian(vals), np.nanmax(vals))
    return scores


def _run(cfg: DifficultyConfig) -> dict[str, float]:
    return run_difficulty(cfg)


def register(subparsers) -> None:
    """``cli.py difficulty``; call from graph/cli.py: ``difficulty.register(subparsers)``."""
    from erc.core.cli import add_stage_command

    add_stage_command(subparsers, "difficulty", DifficultyConfig, _run,
                      help="per-dialogue difficulty (model loss or label entropy) for curriculum training")
