"""Configuration of the VAD stage: one dataclass per subcommand, every field defaulted.

Defaults run the Quickstart: the built-in synthetic corpus and the built-in
tiny encoder, a few epochs, no download. ``configs/vad_iemocap.yaml`` holds the
reference recipe (roberta-base, lr 2e-5, batch 16, 5 epochs, max length 128).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import ConfigError

DATA_FORMATS = ("auto", "synthetic", "iemocap", "emobank", "table")
SPLIT_MODES = ("auto", "session", "column", "dialogue")
BEST_METRICS = ("val_ccc", "val_pearson", "val_loss", "val_mse", "val_rmse", "val_mae")


def _h(text: str, **kw) -> dict:
    return dict(help=text, **kw)


@dataclass
class DataConfig:
    """Where utterances come from and how they are split (shared by finetune and predict)."""

    data: str = field(default="synthetic", metadata=_h(
        "'synthetic' (built-in corpus), an IEMOCAP release root, EmoBank's emobank.csv, "
        "or any CSV/JSONL/Parquet table"))
    data_format: str = field(default="auto", metadata=_h(
        "how to read --data (auto: synthetic / folder = IEMOCAP / emobank.csv / other table)",
        choices=DATA_FORMATS))
    text_column: str = field(default="text", metadata=_h("table: text column"))
    valence_column: str = field(default="valence", metadata=_h("table: valence column"))
    arousal_column: str = field(default="arousal", metadata=_h("table: arousal column"))
    dominance_column: str = field(default="dominance", metadata=_h("table: dominance column"))
    id_column: str = field(default="", metadata=_h("table: utterance id column ('' = row number)"))
    dialogue_column: str = field(default="", metadata=_h("table: dialogue id column ('' = none)"))
    split_column: str = field(default="", metadata=_h("table: split column with train/dev|val/test"))
    split: str = field(default="auto", metadata=_h(
        "auto: sessions if the data has them, else the split column, else seeded by dialogue",
        choices=SPLIT_MODES))
    train_sessions: list[int] = field(default_factory=lambda: [1, 2, 3], metadata=_h("sessions for training"))
    val_sessions: list[int] = field(default_factory=lambda: [4], metadata=_h("sessions for validation"))
    test_sessions: list[int] = field(default_factory=lambda: [5], metadata=_h("sessions for test"))
    leave_one_session_out: int = field(default=0, metadata=_h(
        "if > 0: test on this session, validate on the previous one, train on the rest"))
    val_fraction: float = field(default=0.1, metadata=_h("dialogue split: fraction of dialogues for validation"))
    test_fraction: float = field(default=0.1, metadata=_h("dialogue split: fraction of dialogues for test"))
    synthetic_dialogues: int = field(default=40, metadata=_h("synthetic corpus: number of dialogues"))
    synthetic_seed: int = field(default=0, metadata=_h("synthetic corpus: generator seed"))


@dataclass
class FinetuneConfig(DataConfig):
    """Fine-tune an encoder + linear head to predict V/A/D (``cli.py finetune``)."""

    model: str = field(default="builtin:tiny", metadata=_h(
        "Hugging Face model name, local HF folder, or builtin:tiny"))
    pooling: str = field(default="cls", metadata=_h("sentence pooling", choices=("cls", "mean")))
    dropout: float = field(default=0.1, metadata=_h("dropout before the head"))
    max_length: int = field(default=128, metadata=_h("max tokens per utterance"))
    output_dir: str = field(default="runs/vad_quickstart", metadata=_h("run directory"))
    epochs: int = field(default=6, metadata=_h("training epochs"))
    batch_size: int = field(default=16, metadata=_h("per-device training batch size"))
    eval_batch_size: int = field(default=64, metadata=_h("per-device evaluation batch size"))
    learning_rate: float = field(default=2.0e-3, metadata=_h("AdamW peak learning rate"))
    weight_decay: float = field(default=0.01, metadata=_h("AdamW weight decay (not on biases/LayerNorm)"))
    warmup_ratio: float = field(default=0.1, metadata=_h("fraction of optimizer steps of linear warm-up"))
    gradient_accumulation_steps: int = field(default=1, metadata=_h("micro-batches per optimizer step"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping (0 = off)"))
    mixed_precision: str = field(default="no", metadata=_h("mixed precision", choices=("no", "fp16", "bf16")))
    group_by_length: bool = field(default=True, metadata=_h("length-grouped batches (dynamic padding)"))
    drop_last: bool = field(default=False, metadata=_h("drop the last incomplete training batch"))
    seed: int = field(default=42, metadata=_h("random seed"))
    metric_for_best: str = field(default="val_ccc", metadata=_h(
        "validation metric that picks the best epoch", choices=BEST_METRICS))
    early_stopping_patience: int = field(default=0, metadata=_h(
        "stop after this many epochs without improvement (0 = off)"))
    checkpointing_steps: int = field(default=0, metadata=_h(
        "also save a step_N checkpoint every N optimizer steps (0 = epoch checkpoints only)"))
    keep_checkpoints: int = field(default=2, metadata=_h("epoch/step checkpoints kept (0 = all)"))
    resume: str = field(default="", metadata=_h(
        "resume from a checkpoint folder, or 'latest' for the newest in output_dir/checkpoints"))
    num_threads: int = field(default=0, metadata=_h("torch CPU threads (0 = torch default)"))
    plots: bool = field(default=True, metadata=_h("write plots/*.png"))
    stop_after_steps: int = field(default=0, metadata=_h(
        "testing aid: stop (as if interrupted) after this many optimizer steps (0 = off)"))

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"field 'epochs': expected >= 1, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': expected >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"field 'warmup_ratio': expected in [0, 1), got {self.warmup_ratio}")
        if self.learning_rate < 0:
            raise ConfigError(f"field 'learning_rate': expected >= 0, got {self.learning_rate}")


@dataclass
class PredictConfig(DataConfig):
    """Predict V/A/D with a fine-tuned model (``cli.py predict``)."""

    model_dir: str = field(default="runs/vad_quickstart/best_model", metadata=_h(
        "a VADRegressor folder (best_model/ of a finetune run)"))
    input: str = field(default="", metadata=_h(
        "CSV of texts (text column --text-column), a .txt file (one text per line), or an IEMOCAP root"))
    output: str = field(default="predictions.csv", metadata=_h("output CSV (utterance_id, valence, arousal, dominance)"))
    batch_size: int = field(default=64, metadata=_h("inference batch size"))


@dataclass
class EmbedConfig:
    """Encode every utterance of a dataset with an encoder or a fine-tuned V/A/D model; write ids + matrix (.npz)."""

    dataset: str = field(default="synthetic", metadata={"help": "registry name"})
    path: str | None = field(default=None, metadata={"help": "dataset file (None = registry default)"})
    model: str = field(default="builtin:tiny", metadata={
        "help": "encoder name/folder for erc.encoders.hf.load_encoder, or a fine-tuned VADRegressor folder"})
    pooling: str = field(default="mean", metadata={"help": "pooling for erc.encoders.hf.encode_texts"})
    batch_size: int = field(default=64, metadata={"help": "texts per encoder batch"})
    output: str = field(default="runs/embeddings.npz", metadata={"help": "output .npz (written atomically)"})
    synthetic_dialogues: int = 60
    synthetic_seed: int = 0
