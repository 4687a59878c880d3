"""Configuration of the CMERC training strategies (all off by default).

CMERC (Tu et al., "Multimodal Emotion Recognition Calibration in
Conversations", ACM MM 2024) adds three model-agnostic strategies to an ERC
model: curriculum learning over conversation difficulty, a confidence
ranking loss, and hybrid (modality- and context-level) supervised
contrastive learning. This module holds only the dataclass (no torch import);
a stage config holds it as its ``cmerc:`` section.

Paper defaults (every field below defaults to OFF; switch them on with flags):

============  ==========  ==========  ==========  ============
dataset       rank_coef   mscl_coef   cscl_coef   epoch_ratio
============  ==========  ==========  ==========  ============
IEMOCAP       0.005       0.05        0.05        0.15
MELD          0.002       0.15        0.15        0.4
============  ==========  ==========  ==========  ============

Total loss with the options on::

    L = L_task + rank_coef * L_rank + mscl_coef * L_mscl + cscl_coef * L_cscl

(see :mod:`erc.graph.cmerc_losses` for each term) and, with ``curriculum``, the
training dialogues are drawn easy -> hard with the pool schedule of
:func:`erc.graph.curriculum.pool_size`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from erc.core.config import ConfigError

#: The paper's settings, for documentation and for ``CMERCConfig.paper_defaults``.
PAPER_DEFAULTS: dict[str, dict[str, float]] = {
    "iemocap": {"rank_coef": 0.005, "mscl_coef": 0.05, "cscl_coef": 0.05, "epoch_ratio": 0.15},
    "meld": {"rank_coef": 0.002, "mscl_coef": 0.15, "cscl_coef": 0.15, "epoch_ratio": 0.4},
}


@dataclass
class CMERCConfig:
    """CMERC options (``cmerc:`` section). Field names equal the ``train-graph`` flags (``--epoch-ratio`` ...)."""

    curriculum: bool = field(default=False, metadata={
        "help": "present training dialogues easy -> hard, the pool growing to the full set "
                "by epoch_ratio of the epochs (needs a difficulty file or uses label entropy)"})
    epoch_ratio: float = field(default=0.15, metadata={
        "help": "fraction of the epochs after which the curriculum pool is the full training set "
                "(paper: IEMOCAP 0.15, MELD 0.4)"})
    curriculum_init_fraction: float = field(default=0.2, metadata={
        "help": "fraction of the (easiest) training dialogues in the pool at epoch 0"})
    difficulty_file: str | None = field(default=None, metadata={
        "help": "CSV/JSON from `cli.py difficulty` (dialogue_id -> difficulty); "
                "None = label-entropy difficulty computed from the training labels"})
    rank_coef: float = field(default=0.0, metadata={
        "help": "weight of the confidence ranking loss (paper: IEMOCAP 0.005, MELD 0.002; 0 = off)"})
    rank_margin: float = field(default=0.1, metadata={
        "help": "margin by which a correct prediction's confidence must exceed a wrong one's"})
    mscl_coef: float = field(default=0.0, metadata={
        "help": "weight of the modality-level supervised contrastive loss "
                "(paper: IEMOCAP 0.05, MELD 0.15; 0 = off; needs >= 2 modalities)"})
    cscl_coef: float = field(default=0.0, metadata={
        "help": "weight of the context-level (same-emotion) supervised contrastive loss "
                "(paper: IEMOCAP 0.05, MELD 0.15; 0 = off)"})
    cl_temperature: float = field(default=0.1, metadata={
        "help": "temperature tau of both supervised contrastive losses (not the post-hoc calibration "
                "temperature, which is fitted on validation)"})

    def validate(self) -> None:
        if not 0.0 < self.epoch_ratio <= 1.0:
            raise ConfigError(f"epoch_ratio: expected a value in (0, 1], got {self.epoch_ratio}")
        if not 0.0 < self.curriculum_init_fraction <= 1.0:
            raise ConfigError("curriculum_init_fraction: expected a value in (0, 1], "
                             f"got {self.curriculum_init_fraction}")
        for name in ("rank_coef", "mscl_coef", "cscl_coef", "rank_margin"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.cl_temperature <= 0:
            raise ConfigError(f"cl_temperature: expected > 0, got {self.cl_temperature}")

    def __post_init__(self) -> None:
        self.validate()

    @property
    def any_loss(self) -> bool:
        return self.rank_coef > 0 or self.mscl_coef > 0 or self.cscl_coef > 0

    @classmethod
    def paper_defaults(cls, dataset: str, **overrides: Any) -> "CMERCConfig":
        """All strategies on with the paper's values for ``dataset`` ('iemocap' or 'meld')."""
        key = dataset.lower().split("-")[0]
        if key not in PAPER_DEFAULTS:
            raise ValueError(f"no CMERC paper defaults for dataset {dataset!r}; "
                             f"known: {', '.join(PAPER_DEFAULTS)}")
        return cls(curriculum=True, **{**PAPER_DEFAULTS[key], **overrides})

    @classmethod
    def from_any(cls, cfg: Any) -> "CMERCConfig":
        """Pick this class's fields off any object that has them (duck typing, e.g. a namespace).

        Attributes the object lacks keep their defaults, so a stage config
        can embed only the fields it exposes.
        """
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if hasattr(cfg, f.name)}
        return cls(**values)
