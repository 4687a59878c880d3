"""Data configs, held as the ``data:`` section of every stage config. Every field has a default.

* :class:`DialogueDataConfig`: whole dialogues with per-utterance features
  (``train-graph``, ``difficulty``, ``load-data``), read through the registry.
* :class:`UtteranceDataConfig`: single utterances with V/A/D targets and how
  they are split (``finetune``, ``predict``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import ConfigError, check_choices
from erc.data.registry import DATASETS

MODALITIES = ("text", "audio", "visual", "timing")
TEXT_MODES = ("0", "1", "2", "3", "concat", "mean")
TEXT_SOURCES = ("auto", "file", "embeddings", "hash")
JOIN_MODES = ("auto", "utterance_id", "position")


@dataclass
class DialogueDataConfig:
    """Which dialogues to load and which modalities to give each utterance.

    ``text`` comes from (``text_source``): ``file`` the pickle's own text layer(s),
    combined by ``text_mode`` (one layer ``0``-``3``, ``concat`` of all, or their
    ``mean``, as in GraphSmile); ``embeddings`` the file written by ``cli.py embed``
    (``text_embeddings``), joined by utterance id or (dialogue id, position);
    ``hash`` a deterministic hashed bag of words of the transcript
    (``hash_dim`` features, see :func:`erc.data.text.hash_featurize`); ``auto``
    picks embeddings if ``text_embeddings`` is set, else the file's layers, else hash.
    """

    dataset: str = field(default="synthetic", metadata={"help": "registry name (erc.data.registry.DATASETS)",
                                                         "choices": tuple(DATASETS)})
    path: str | None = field(default=None, metadata={
        "help": "pickle / CSV folder / release root; None = the registry's default under the data folder"})
    modalities: list[str] = field(default_factory=lambda: ["text", "audio", "visual"], metadata={
        "help": f"any non-empty subset of {', '.join(MODALITIES)}", "choices": MODALITIES})
    text_source: str = field(default="auto", metadata={"help": "where text features come from",
                                                       "choices": TEXT_SOURCES})
    text_mode: str = field(default="mean", metadata={
        "help": "text layer: 0-3, concat or mean (multi-layer pickles)", "choices": TEXT_MODES})
    text_embeddings: str | None = field(default=None, metadata={"help": "file from `cli.py embed`"})
    text_join: str = field(default="auto", metadata={
        "help": "match embeddings by utterance_id or (dialogue id, position); auto: ids when both have them",
        "choices": JOIN_MODES})
    hash_dim: int = field(default=256, metadata={"help": "dimension of the hashed bag-of-words text featuriser"})
    release_root: str | None = field(default=None, metadata={
        "help": "IEMOCAP release root for timing joins; None = data folder's iemocap/IEMOCAP_full_release"})
    meld_csv_dir: str | None = field(default=None, metadata={
        "help": "folder of MELD *_sent_emo.csv for COSMIC MELD timing; None = data folder's meld/"})
    timing_transform: str = field(default="log1p", metadata={
        "help": "applied to the 4 timing features before normalisation: log1p (tames MELD's 1000-s gaps) or none",
        "choices": ("log1p", "none")})
    valid_fraction: float = field(default=0.1, metadata={
        "help": "fraction of training dialogues carved out as validation (datasets without their own)"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/valid carve"})
    normalize: list[str] = field(default_factory=lambda: ["audio", "visual", "timing"], metadata={
        "help": "modalities z-scored with statistics of the TRAINING dialogues only", "choices": MODALITIES})
    synthetic_dialogues: int = field(default=60, metadata={"help": "synthetic corpus size"})
    synthetic_seed: int = field(default=0, metadata={"help": "synthetic corpus seed"})

    def validate(self) -> None:
        if not self.modalities:
            raise ConfigError("modalities: need at least one of " + ", ".join(MODALITIES))
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities: duplicates in {self.modalities}")
        if self.text_source == "embeddings" and not self.text_embeddings:
            raise ConfigError("text_source=embeddings needs text_embeddings (a file from `cli.py embed`)")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ConfigError(f"valid_fraction: expected 0 <= fraction < 1, got {self.valid_fraction}")
        if self.hash_dim < 1:
            raise ConfigError(f"hash_dim: expected >= 1, got {self.hash_dim}")

    def __post_init__(self) -> None:
        self.modalities = list(self.modalities)
        self.normalize = list(self.normalize)
        self.text_mode = str(self.text_mode)
        check_choices(self, type(self).__name__)   # also when built directly, not through config_from_dict
        self.validate()


DATA_FORMATS = ("auto", "synthetic", "iemocap", "emobank", "table")
SPLIT_MODES = ("auto", "session", "column", "dialogue")
LOSO_VALIDATION = ("session", "slice")


def _h(text: str, **kw) -> dict:
    return dict(help=text, **kw)


@dataclass
class UtteranceDataConfig:
    """Where utterances with V/A/D come from and how they are split (finetune, predict)."""

    path: str = field(default="synthetic", metadata=_h(
        "'synthetic' (built-in corpus), an IEMOCAP release root, EmoBank's emobank.csv, "
        "or any CSV/JSONL/Parquet table; with --dataset: that dataset's file ('synthetic' = its registry default)"))
    dataset: str = field(default="", metadata=_h(
        "read a registered dialogue corpus (erc.data.registry, e.g. meld_csv, cosmic_meld) through its reader: "
        "its texts, emotion and sentiment labels and its own train/dev/test split ('' = read --path by --format)",
        choices=("", *DATASETS)))
    train_dialogue_folds: int = field(default=0, metadata=_h(
        "with held_out_fold: cut the training split's dialogues into this many seeded folds (seed: the run's "
        "seed) and train without one of them (embed --cross-fit on data without sessions; 0 = off)"))
    held_out_fold: int = field(default=0, metadata=_h(
        "the fold (1..train_dialogue_folds) left out of training (0 = none)"))
    format: str = field(default="auto", metadata=_h(
        "how to read --path (auto: synthetic / folder = IEMOCAP / emobank.csv / other table)",
        choices=DATA_FORMATS))
    text_column: str = field(default="text", metadata=_h("table: text column"))
    valence_column: str = field(default="valence", metadata=_h("table: valence column"))
    arousal_column: str = field(default="arousal", metadata=_h("table: arousal column"))
    dominance_column: str = field(default="dominance", metadata=_h("table: dominance column"))
    id_column: str = field(default="", metadata=_h("table: utterance id column ('' = row number)"))
    dialogue_column: str = field(default="", metadata=_h("table: dialogue id column ('' = none)"))
    split_column: str = field(default="", metadata=_h(
        "table: split column with train/valid/test (dev, val and validation are read as valid)"))
    split: str = field(default="auto", metadata=_h(
        "auto: sessions if the data has them, else the split column, else seeded by dialogue",
        choices=SPLIT_MODES))
    train_sessions: list[int] = field(default_factory=lambda: [1, 2, 3], metadata=_h("sessions for training"))
    valid_sessions: list[int] = field(default_factory=lambda: [4], metadata=_h("sessions for validation"))
    test_sessions: list[int] = field(default_factory=lambda: [5], metadata=_h("sessions for test"))
    leave_one_session_out: int = field(default=0, metadata=_h(
        "if > 0: test on this session, validate as loso_validation says, train on the rest"))
    loso_validation: str = field(default="session", metadata=_h(
        "leave-one-session-out validation: 'session' = the session before the test session; 'slice' = "
        "valid_fraction of the other sessions' dialogues (seeded by the run's seed), training on the rest",
        choices=LOSO_VALIDATION))
    valid_fraction: float = field(default=0.1, metadata=_h(
        "dialogue split and loso_validation 'slice': fraction of dialogues for validation"))
    test_fraction: float = field(default=0.1, metadata=_h("dialogue split: fraction of dialogues for test"))
    synthetic_dialogues: int = field(default=40, metadata=_h("synthetic corpus: number of dialogues"))
    synthetic_seed: int = field(default=0, metadata=_h("synthetic corpus: generator seed"))
