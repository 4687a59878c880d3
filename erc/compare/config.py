"""Configuration of the compare stage: :class:`CompareConfig` holds its data as the ``data:``
section (:class:`CompareDataConfig`); every field has a default.

The default runs offline on the built-in synthetic corpus with the built-in tiny
encoder (``builtin:tiny``), so ``python cli.py compare`` works on a fresh clone.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import ConfigError

ZERO_SHOT_METHODS = ("anchor", "nli")
DATA_KINDS = ("synthetic", "iemocap", "table")


@dataclass
class CompareDataConfig:
    """Utterances with emotion and gold V/A/D, split into train / test (the ``data:`` section)."""

    format: str = field(default="synthetic", metadata={
        "help": "synthetic (built-in corpus), iemocap (release layout at path) or table "
                "(CSV/JSONL/Parquet at path)", "choices": DATA_KINDS})
    path: str = field(default="", metadata={"help": "IEMOCAP release root or table file"})
    train_sessions: list[int] = field(default_factory=lambda: [1, 2, 3],
                                      metadata={"help": "sessions of the training split (synthetic/iemocap)"})
    test_sessions: list[int] = field(default_factory=lambda: [4],
                                     metadata={"help": "sessions of the test split (synthetic/iemocap)"})
    split_column: str = field(default="split", metadata={
        "help": "table data: column with train/valid/test values ('' or absent: seeded split by dialogue)"})
    text_column: str = field(default="text", metadata={"help": "table data: text column"})
    emotion_column: str = field(default="emotion", metadata={"help": "table data: emotion label column"})
    valence_column: str = "valence"
    arousal_column: str = "arousal"
    dominance_column: str = "dominance"
    id_column: str = field(default="", metadata={"help": "table data: utterance id column ('' = row number)"})
    dialogue_column: str = field(default="", metadata={
        "help": "table data: dialogue id column ('' = every row its own dialogue)"})
    test_fraction: float = field(default=0.25, metadata={
        "help": "table data without a split column: fraction of dialogues in the test split"})
    synthetic_dialogues: int = field(default=60, metadata={"help": "synthetic corpus size"})

    def validate(self) -> None:
        if self.format in ("iemocap", "table") and not self.path:
            raise ConfigError(f"field 'path': required for format={self.format}")
        if self.format != "table" and set(self.train_sessions) & set(self.test_sessions):
            raise ConfigError(f"fields 'train_sessions'/'test_sessions' overlap: "
                              f"{sorted(set(self.train_sessions) & set(self.test_sessions))}")


@dataclass
class CompareConfig:
    # ---- data -------------------------------------------------------------------------------
    data: CompareDataConfig = field(default_factory=CompareDataConfig, metadata={
        "help": "utterances and their train/test split"})
    class_sets: list[str] = field(default_factory=lambda: ["iemocap4", "iemocap6"], metadata={
        "help": "emotion class sets: iemocap4, iemocap6, or 'all' (every label the table has)"})
    # ---- encoders ---------------------------------------------------------------------------
    model: str = field(default="builtin:tiny", metadata={
        "help": "encoder for the zero-shot anchor projection: HF name, local folder or builtin:tiny"})
    pooling: str = field(default="mean", metadata={"help": "cls or mean", "choices": ("cls", "mean")})
    max_length: int = 128
    batch_size: int = 64
    zero_shot: list[str] = field(default_factory=lambda: ["anchor"], metadata={
        "help": "zero-shot methods to run: anchor, nli"})
    anchors: str = field(default="configs/vad_anchors.yaml", metadata={
        "help": "YAML with descriptor phrases per pole of each dimension (editable)"})
    anchor_temperature: float = field(default=0.1, metadata={
        "help": "fixed map: value = lo + (hi-lo) * sigmoid((cos_high - cos_low) / T); uses no labels"})
    nli_model: str = field(default="", metadata={
        "help": "NLI model (name or folder) for zero-shot-classification; required when 'nli' is run"})
    nli_hypothesis: str = field(default="{}", metadata={
        "help": "hypothesis template; {} is replaced by each pole phrase"})
    scale_min: float = 1.0
    scale_max: float = 5.0
    # ---- fine-tuned settings ----------------------------------------------------------------
    finetuned: list[str] = field(default_factory=list, metadata={
        "help": "fine-tuned VADRegressor folders (a run dir with best_model/ or the model folder)"})
    train_finetuned: bool = field(default=True, metadata={
        "help": "fine-tune first through the VAD stage (erc.vad.train), one run per seed"})
    finetune_config: str = field(default="", metadata={
        "help": "YAML of the VAD stage used as the base when train_finetuned (fields of FinetuneConfig)"})
    finetune_epochs: int = field(default=0, metadata={"help": "override epochs of the VAD run (0: keep)"})
    finetune_seeds: list[int] = field(default_factory=lambda: [0])
    # ---- forest -----------------------------------------------------------------------------
    forest_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={
        "help": "random_state of the forest and of the CV folds; results are mean +- std over them"})
    cv_folds: int = 3
    cv_scoring: str = field(default="f1_weighted", metadata={"help": "sklearn scoring for GridSearchCV"})
    forest_n_estimators: list[int] = field(default_factory=lambda: [100])
    forest_max_depth: list[int] = field(default_factory=lambda: [0, 8], metadata={
        "help": "0 means unlimited depth"})
    forest_min_samples_leaf: list[int] = field(default_factory=lambda: [5, 20])
    # ---- report -----------------------------------------------------------------------------
    tsne_max_points: int = field(default=1500, metadata={
        "help": "t-SNE on at most this many test utterances (seeded subsample)"})
    seed: int = field(default=0, metadata={"help": "seed of subsampling, t-SNE and data split"})
    num_threads: int = field(default=1, metadata={"help": "torch CPU threads (keep 1 on a shared, busy CPU)"})
    output_dir: str = "runs/compare_synthetic"
    overwrite_predictions: bool = field(default=False, metadata={
        "help": "recompute cached predictions (default: reuse them, so an interrupted run resumes)"})
    overwrite: bool = field(default=False, metadata={
        "help": "fine-tune runs under output_dir/finetune/ that hold another config or other inputs are "
                "cleared and redone (without it they are refused)"})

    def validate(self) -> None:
        bad = [m for m in self.zero_shot if m not in ZERO_SHOT_METHODS]
        if bad:
            raise ConfigError(f"field 'zero_shot': unknown method(s) {bad}; expected {list(ZERO_SHOT_METHODS)}")
        if "nli" in self.zero_shot and not self.nli_model:
            raise ConfigError("field 'nli_model': required when zero_shot includes 'nli' "
                              "(an NLI model name or local folder)")
        if not self.scale_min < self.scale_max:
            raise ConfigError("fields 'scale_min'/'scale_max': expected scale_min < scale_max")
        if self.anchor_temperature <= 0:
            raise ConfigError("field 'anchor_temperature': expected > 0")
        if self.cv_folds < 2:
            raise ConfigError("field 'cv_folds': expected >= 2")
        if "{}" not in self.nli_hypothesis:
            raise ConfigError("field 'nli_hypothesis': expected a template containing {}")
        if not self.forest_seeds:
            raise ConfigError("field 'forest_seeds': expected at least one seed")
        if self.train_finetuned and not self.finetune_seeds:
            raise ConfigError("field 'finetune_seeds': expected at least one seed")
