"""Dataclass configuration of the HRG-SSA stage. Every field has a default.

:class:`HRGTrainConfig` is composed: it HOLDS its dialogues as the ``data:`` section
(:class:`erc.data.config.DialogueDataConfig`; every leaf is still a flag under its own
name, ``--dataset``, ``--modalities``) next to the backbone, graph, alignment and
two-phase training fields. The defaults are the
published IEMOCAP-6 setting (window 8, 1 GAT layer of 12 heads x 64, alignment
weight 0.001, temperature 1, batch 8 dialogues, 10 frozen epochs at 5e-5 then
10 trainable at 3e-5, warm-up 20 %) on the synthetic corpus;
``configs/hrg_{iemocap6,meld}.yaml`` hold the published settings per dataset.

Text is always a modality here (it is what the backbone encodes); ``modalities``
lists it with any of ``audio``, ``visual``, ``timing``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from erc.core.config import RESUME_HELP, ConfigError, check_resume
from erc.core.runs import ALLOW_CONFIG_CHANGE_HELP, OVERWRITE_HELP, REPORT_TO, REPORT_TO_HELP, IdentityRule
from erc.data.config import DialogueDataConfig

HEADS = ("generate", "classify")
HISTORY_MODES = ("predicted", "gold")
GRAPH_EDGES = ("hybrid", "explicit", "self")
POOLINGS = ("last", "mean", "first")
SELECTION = ("weighted_f1", "accuracy", "macro_f1")
LEAK_NOTE = ("history_labels=gold: the gold emotion/sentiment of EARLIER turns were fed to the model at "
             "inference (label leak, ablation only; not comparable to any honest score)")


@dataclass
class HRGModelFields:
    """Architecture fields shared by training and the saved model."""

    backbone: str = field(default="t5-base", metadata={
        "help": "Hugging Face encoder-decoder (name or folder), an encoder folder (assembled into an "
                "EncoderDecoderModel for --head generate), or builtin:tiny"})
    head: str = field(default="generate", metadata={
        "help": "generate: the decoder scores every class's label words (emotion then sentiment); "
                "classify: encoder + cross-attention classifier", "choices": HEADS})
    window: int = field(default=8, metadata={"help": "previous turns in each target's window (W)"})
    gat_layers: int = field(default=1, metadata={"help": "GAT layers per modality graph"})
    gat_heads: int = field(default=12, metadata={"help": "GAT attention heads"})
    gat_head_dim: int = field(default=64, metadata={"help": "GAT channels per head"})
    graph_edges: str = field(default="hybrid", metadata={
        "help": "hybrid: explicit + implicit edges; explicit: no implicit edges; self: self loops only "
                "(ablation: no context through the graph)", "choices": GRAPH_EDGES})
    scorer_dim: int = field(default=64, metadata={"help": "projection size of the implicit-edge scorer"})
    fusion_layers: int = field(default=6, metadata={
        "help": "transformer-decoder layers fusing modalities per node (0: projection + pooling only)"})
    fusion_heads: int = field(default=4, metadata={"help": "attention heads of the fusion / classifier layers"})
    node_pooling: str = field(default="last", metadata={
        "help": "pooling of a text node's token states: last (published), mean or first token",
        "choices": POOLINGS})
    dropout: float = field(default=0.1, metadata={"help": "dropout of fusion, graph and classifier layers"})
    max_length: int = field(default=128, metadata={"help": "tokens per utterance ('speaker: text')"})


@dataclass
class HRGTrainConfig(HRGModelFields):
    """``cli.py train-hrg``: ``data`` section + model + alignment + two-phase training."""

    data: DialogueDataConfig = field(default_factory=DialogueDataConfig, metadata={
        "help": "which dialogues and modalities (erc.data.config.DialogueDataConfig); text is required"})
    output_dir: str = field(default="runs/hrg", metadata={"help": "run directory (seed_<k>/ per seed)"})
    history_labels: str = field(default="predicted", metadata={
        "help": "labels of earlier turns at inference: predicted (the model's own, turn by turn) or gold "
                "(LEAKS labels; ablation only)", "choices": HISTORY_MODES})
    align_weight: float = field(default=1.0e-3, metadata={"help": "weight of primary + semantic InfoNCE"})
    temperature: float = field(default=1.0, metadata={"help": "InfoNCE temperature"})
    batch_size: int = field(default=8, metadata={"help": "dialogues per training batch (per process)"})
    eval_batch_size: int = field(default=8, metadata={"help": "dialogues per evaluation batch"})
    epochs_frozen: int = field(default=10, metadata={"help": "phase 1: epochs with the pretrained backbone frozen"})
    epochs_full: int = field(default=10, metadata={"help": "phase 2: epochs with everything trainable"})
    lr_frozen: float = field(default=5.0e-5, metadata={"help": "peak learning rate of phase 1"})
    lr_full: float = field(default=3.0e-5, metadata={"help": "peak learning rate of phase 2"})
    warmup_ratio: float = field(default=0.2, metadata={
        "help": "linear warm-up over this share of each phase's steps, then linear decay"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    cache_frozen_encoder: bool = field(default=True, metadata={
        "help": "phase 1: encode each utterance and label string once and reuse it (the frozen encoder "
                "runs in eval mode, so its outputs do not change)"})
    stop_after_epochs: int = field(default=0, metadata={
        "help": "stop after this many epochs in this invocation (0 = run to the end); a later run resumes"})
    seed: int = field(default=0, metadata={"help": "first seed; seeds are seed, seed+1, ..."})
    seeds: int = field(default=1, metadata={"help": "number of seeds (mean and std reported)"})
    selection_metric: str = field(default="weighted_f1", metadata={
        "help": "validation metric that picks the best epoch", "choices": SELECTION})
    resume: str = field(default="auto", metadata={"help": RESUME_HELP + " (per seed: seed_<k>/checkpoints/)"})
    checkpoint: bool = field(default=True, metadata={
        "help": "save a checkpoint (seed_<k>/checkpoints/epoch_N/) after every epoch"})
    keep_checkpoints: int = field(default=2, metadata={"help": "epoch checkpoints kept per seed (0 = all)"})
    report_to: str = field(default="none", metadata={"help": REPORT_TO_HELP, "choices": REPORT_TO})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    allow_config_change: bool = field(default=False, metadata={"help": ALLOW_CONFIG_CHANGE_HELP})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave torch's default)"})
    mixed_precision: str = field(default="no", metadata={"help": "Accelerate mixed precision",
                                                         "choices": ("no", "fp16", "bf16")})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar on the main process"})

    @property
    def epochs(self) -> int:
        return self.epochs_frozen + self.epochs_full

    @property
    def modalities(self) -> list[str]:
        """Text first, then the other modalities in the order given."""
        return ["text"] + self.extra_modalities

    @property
    def extra_modalities(self) -> list[str]:
        """The non-text modalities, in the order given."""
        return [m for m in self.data.modalities if m != "text"]

    def validate(self) -> None:
        check_resume(self.resume)
        if "text" not in self.data.modalities:
            raise ConfigError(f"modalities: HRG-SSA encodes the transcript, so 'text' must be one of them "
                              f"(got {self.data.modalities})")
        for name, choices in (("head", HEADS), ("history_labels", HISTORY_MODES), ("graph_edges", GRAPH_EDGES),
                              ("node_pooling", POOLINGS), ("selection_metric", SELECTION)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name}: expected one of {choices}, got {getattr(self, name)!r}")
        for name in ("window", "gat_layers", "gat_heads", "gat_head_dim", "scorer_dim", "fusion_heads",
                     "max_length", "batch_size", "eval_batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("fusion_layers", "epochs_frozen", "epochs_full", "stop_after_epochs", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.epochs < 1:
            raise ConfigError("epochs_frozen + epochs_full: expected at least one epoch")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: expected 0 <= p < 1, got {self.dropout}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio: expected 0 <= r < 1, got {self.warmup_ratio}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature: expected > 0, got {self.temperature}")
        if self.align_weight < 0:
            raise ConfigError(f"align_weight: expected >= 0, got {self.align_weight}")

    def data_config(self) -> DialogueDataConfig:
        """The ``data`` section as loaded: the transcript is read as text, so no text FEATURES are built."""
        values = dataclasses.asdict(self.data)
        values["modalities"] = self.extra_modalities or ["text"]
        if not self.extra_modalities:          # the loader needs one modality: a 1-d hash, ignored
            values.update(text_source="hash", hash_dim=1, text_embeddings=None)
        return DialogueDataConfig(**values)

    def model_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(HRGModelFields)}


# What makes two train-hrg runs the same run (erc.core.runs): a longer phase 2, more seeds or a time box
# do not change what the finished epochs computed; the backbone folder and data files are inputs.
TRAIN_HRG_IDENTITY = IdentityRule(
    ignore=frozenset({"epochs_full", "stop_after_epochs", "seeds", "checkpoint", "keep_checkpoints"}),
    inputs=("backbone", "data.path", "data.release_root", "data.meld_csv_dir"))


@dataclass
class PredictHRGConfig:
    """``cli.py predict-hrg``: emotion and sentiment per utterance with a trained HRG-SSA model."""

    model_dir: str = field(default="runs/hrg/seed_0/best_model", metadata={
        "help": "best_model/ folder written by train-hrg"})
    dataset: str | None = field(default=None, metadata={
        "help": "registry name of the file to predict; None = the training dataset"})
    path: str | None = field(default=None, metadata={"help": "file of that dataset; None = as in training"})
    splits: list[str] = field(default_factory=lambda: ["test"], metadata={"help": "splits to predict"})
    history_labels: str = field(default="predicted", metadata={
        "help": "predicted (default, honest) or gold (LEAKS labels of earlier turns; ablation only)",
        "choices": HISTORY_MODES})
    output: str = field(default="runs/hrg/predictions.csv", metadata={"help": "CSV written atomically"})
    batch_size: int = field(default=8, metadata={"help": "dialogues per batch"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})

    def validate(self) -> None:
        bad = [s for s in self.splits if s not in ("train", "valid", "test")]
        if bad or not self.splits:
            raise ConfigError(f"splits: expected a non-empty subset of train, valid, test, got {self.splits}")
        if self.history_labels not in HISTORY_MODES:
            raise ConfigError(f"history_labels: expected one of {HISTORY_MODES}, got {self.history_labels!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, got {self.batch_size}")
