"""Baby-step curriculum over dialogues: easy -> hard, the pool growing to the whole training set.

Schedule. Training dialogues are sorted by difficulty (ascending, ties by
dataset index, so the order is deterministic). With ``N`` dialogues, ``E``
epochs (0-indexed epoch ``e``), initial fraction ``f0`` and ``epoch_ratio``
``r``, the pool of epoch ``e`` is the ``n_e`` easiest dialogues::

    n_e = ceil( N * min(1, f0 + (1 - f0) * e / (r * E)) )      (at least 1)

i.e. linear growth in epochs from ``ceil(f0 N)`` at epoch 0 to the full set
from epoch ``ceil(r E)`` on (``e >= r E``). Inside the pool the order is a
permutation drawn from ``torch.Generator().manual_seed(seed + e)``: the
same on every process and after a resume, different every epoch.

Distributed use. Two equally valid set-ups:

* ``accelerator.prepare(DataLoader(..., sampler=CurriculumSampler(...)))``
  with ``num_replicas=1``: Accelerate splits the *batches* of this sampler
  between processes (each process a distinct shard) and calls ``set_epoch``
  on the sampler from the prepared loader's ``set_epoch``/``__iter__``.
* a loader per process that is not prepared: pass ``num_replicas`` and
  ``rank``; the pool permutation is padded (by repeating its head) to a
  multiple of ``num_replicas`` and process ``k`` takes positions ``k::P`` --
  the ``DistributedSampler`` rule applied to the pool, so shards are disjoint
  and cover the pool.

The sampler yields *dataset indices* (positions in the training dataset),
never dialogue ids. Its :meth:`state_dict` / :meth:`load_state_dict` make it
``accelerator.register_for_checkpointing``-compatible; the pool order is
saved too, so a resume with a different difficulty file is refused.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from erc.data.dialogues import DialogueDataset, collate_indexed
from erc.graph.difficulty import label_difficulty, load_difficulty


def pool_size(epoch: int, num_epochs: int, n: int, epoch_ratio: float, init_fraction: float = 0.2) -> int:
    """``n_e = ceil(N min(1, f0 + (1 - f0) e / (r E)))``, at least 1 and at most N."""
    if n <= 0:
        raise ValueError(f"pool_size: the training set is empty (n={n})")
    if num_epochs <= 0:
        raise ValueError(f"pool_size: num_epochs must be > 0, got {num_epochs}")
    if not 0.0 < epoch_ratio <= 1.0:
        raise ValueError(f"pool_size: epoch_ratio must be in (0, 1], got {epoch_ratio}")
    if not 0.0 < init_fraction <= 1.0:
        raise ValueError(f"pool_size: init_fraction must be in (0, 1], got {init_fraction}")
    frac = min(1.0, init_fraction + (1.0 - init_fraction) * max(epoch, 0) / (epoch_ratio * num_epochs))
    # the 1e-9 keeps ceil(N * 0.30000000000000004) from rounding a whole dialogue up
    return int(min(n, max(1, math.ceil(n * frac - 1e-9))))


def difficulty_order(difficulty: Sequence[float] | np.ndarray) -> np.ndarray:
    """Dataset indices sorted easy -> hard (stable: ties keep dataset order). Shapes: (N,) -> (N,)."""
    d = np.asarray(difficulty, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"difficulty: expected a non-empty 1-D sequence, got shape {d.shape}")
    if not np.isfinite(d).all():
        bad = int(np.flatnonzero(~np.isfinite(d))[0])
        raise ValueError(f"difficulty: non-finite value {d[bad]} at dataset index {bad}")
    return np.argsort(d, kind="stable")


def align_difficulty(dialogue_ids: Sequence[str], scores: Mapping[str, float], source: str = "difficulty") -> list[float]:
    """Difficulty of each training dialogue, in dataset order; a missing id is an error naming it."""
    missing = [d for d in dialogue_ids if str(d) not in scores]
    if missing:
        raise ValueError(f"{source}: no difficulty for {len(missing)} training dialogue(s), "
                         f"e.g. {missing[:3]}; expected one row per dialogue_id")
    return [float(scores[str(d)]) for d in dialogue_ids]


class CurriculumSampler(Sampler[int]):
    """Sampler of dataset indices following the baby-step schedule of this module.

    Args:
        difficulty: (N,) difficulty per dataset index (higher = harder).
        num_epochs: ``E``, total training epochs.
        epoch_ratio: ``r``, fraction of ``E`` after which the pool is full.
        init_fraction: ``f0``, fraction of the easiest dialogues in the first pool.
        seed: base seed of the in-pool shuffles (``seed + epoch``).
        shuffle: shuffle inside the pool (else easy -> hard order).
        num_replicas, rank: shard the pool between processes (see module doc).
    """

    def __init__(self, difficulty: Sequence[float] | np.ndarray, num_epochs: int, epoch_ratio: float = 0.15,
                 init_fraction: float = 0.2, seed: int = 0, shuffle: bool = True,
                 num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"CurriculumSampler: rank {rank} not in [0, {num_replicas})")
        self.order = difficulty_order(difficulty)
        self.num_epochs = int(num_epochs)
        self.epoch_ratio = float(epoch_ratio)
        self.init_fraction = float(init_fraction)
        pool_size(0, self.num_epochs, len(self.order), self.epoch_ratio, self.init_fraction)  # validates
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0

    # -- schedule -------------------------------------------------------------------------------
    def pool_size(self, epoch: int | None = None) -> int:
        return pool_size(self.epoch if epoch is None else epoch, self.num_epochs, len(self.order),
                         self.epoch_ratio, self.init_fraction)

    def pool(self, epoch: int | None = None) -> np.ndarray:
        """Dataset indices in the pool of ``epoch`` (easy -> hard, unshuffled)."""
        return self.order[: self.pool_size(epoch)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int | None = None) -> list[int]:
        """All processes' indices of ``epoch`` in draw order (before sharding, padded to P)."""
        epoch = self.epoch if epoch is None else int(epoch)
        pool = self.pool(epoch)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + epoch)
            pool = pool[torch.randperm(len(pool), generator=g).numpy()]
        idx = pool.tolist()
        total = math.ceil(len(idx) / self.num_replicas) * self.num_replicas
        while len(idx) < total:  # pad like DistributedSampler so every rank gets the same count
            idx += idx[: total - len(idx)]
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank:: self.num_replicas])

    def __len__(self) -> int:
        return math.ceil(self.pool_size() / self.num_replicas)

    # -- checkpointing ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed, "num_epochs": self.num_epochs,
                "epoch_ratio": self.epoch_ratio, "init_fraction": self.init_fraction,
                "order": self.order.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        order = np.asarray(state.get("order", self.order.tolist()), dtype=np.int64)
        if order.shape != self.order.shape or not np.array_equal(order, self.order):
            raise ValueError("CurriculumSampler.load_state_dict: the checkpoint's easy->hard order differs "
                             "from this run's difficulty scores (different difficulty file or training set)")
        # the schedule (num_epochs, epoch_ratio, init_fraction) stays as configured: a resumed run
        # may extend the epochs; the saved values are there for the record
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))


def build_curriculum_sampler(train_dialogue_ids: Sequence[str], num_epochs: int, cfg: Any, seed: int,
                             difficulty_scores: Mapping[str, float] | None = None,
                             num_replicas: int = 1, rank: int = 0) -> CurriculumSampler:
    """A :class:`CurriculumSampler` for the training dialogues from a CMERC config.

    ``difficulty_scores`` (dialogue_id -> score) wins; else ``cfg.difficulty_file``
    is read with :func:`erc.graph.difficulty.load_difficulty`. Raises if neither is given
    (the label-entropy fallback needs the dialogues: compute it with
    :func:`erc.graph.difficulty.label_difficulty` and pass it as ``difficulty_scores``).
    """
    if difficulty_scores is None:
        path = getattr(cfg, "difficulty_file", None)
        if not path:
            raise ValueError("curriculum: no difficulty scores given and cfg.difficulty_file is unset")

        difficulty_scores = load_difficulty(path)
        source = str(path)
    else:
        source = "difficulty scores"
    diff = align_difficulty(train_dialogue_ids, difficulty_scores, source)
    return CurriculumSampler(diff, num_epochs=num_epochs, epoch_ratio=cfg.epoch_ratio,
                             init_fraction=getattr(cfg, "curriculum_init_fraction", 0.2), seed=seed,
                             num_replicas=num_replicas, rank=rank)


def make_curriculum_loader(train_dialogues: Sequence[Any], sampler: CurriculumSampler, batch_size: int = 16,
                           num_workers: int = 0):
    """``DataLoader`` over the fusion training dialogues drawn by ``sampler`` (whole dialogues per batch).

    Same items and collate as :func:`erc.data.dialogues.make_loader` (``dialogue_index``
    = dataset index), so the training loop is unchanged; call
    ``loader.set_epoch(epoch)`` (prepared loader) or ``sampler.set_epoch(epoch)``
    before each epoch. ``len(loader)`` grows with the pool: build LR schedules on
    the full-set length, not on ``len(loader)`` at epoch 0.
    """

    if len(sampler.order) != len(train_dialogues):
        raise ValueError(f"curriculum sampler covers {len(sampler.order)} dialogues but the training set has "
                         f"{len(train_dialogues)}")
    return DataLoader(DialogueDataset(train_dialogues), batch_size=batch_size, sampler=sampler,
                      collate_fn=collate_indexed, num_workers=num_workers)


def curriculum_for_training(train_dialogues: Sequence[Any], num_epochs: int, cfg: Any, seed: int,
                            num_classes: int | None = None) -> CurriculumSampler:
    """The sampler ``train-graph --curriculum`` uses: scores from ``cfg.difficulty_file`` when set,
    else the label-entropy difficulty (:func:`erc.graph.difficulty.label_difficulty`) of the training dialogues.
    """
    ids = [d.dialogue_id for d in train_dialogues]
    scores = None if getattr(cfg, "difficulty_file", None) else label_difficulty(train_dialogues, num_classes)
    return build_curriculum_sampler(ids, num_epochs, cfg, seed, difficulty_scores=scores)
