"""Dataclass configuration of the graph stage. Every field has a default.

:class:`GraphTrainConfig` is composed, not inherited: it HOLDS its data as the
``data:`` section (:class:`erc.data.config.DialogueDataConfig`) and the CMERC
strategies as the ``cmerc:`` section (:class:`erc.graph.cmerc_config.CMERCConfig`,
all off by default), next to its own model, loss and training fields. Every
leaf is a ``train-graph`` flag under its own name (``--dataset``,
``--modalities``, ``--rank-coef``, ``--lr``). The defaults are GraphSmile's
IEMOCAP-6 setting on the synthetic corpus; ``configs/graph_*.yaml`` hold the
published settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import MIXED_PRECISION, RESUME_HELP, ConfigError, check_choices, check_resume
from erc.core.runs import ALLOW_CONFIG_CHANGE_HELP, OVERWRITE_HELP, REPORT_TO, REPORT_TO_HELP
from erc.data.config import MODALITIES, DialogueDataConfig
from erc.data.registry import DATASETS
from erc.data.splits import SPLITS
from erc.graph.cmerc_config import CMERCConfig

#: inference precision of a saved model (erc.graph.quantize): "none" = as trained (float32)
QUANTIZE = ("none", "int8")

LOSS_MODES = ("emo_sen_sft", "epoch", "auto")
#: Validation metrics (columns ``valid_<name>`` of epochs.csv) that can pick the best epoch.
SELECTION_METRICS = ("weighted_f1", "accuracy", "macro_f1")


@dataclass
class GraphTrainConfig:
    """``cli.py train-graph``: ``data`` section + ``cmerc`` section (``--curriculum --epoch-ratio
    --rank-coef --mscl-coef --cscl-coef --cl-temperature``, all off by default) + model + loss + training."""

    data: DialogueDataConfig = field(default_factory=DialogueDataConfig, metadata={
        "help": "which dialogues and modalities (erc.data.config.DialogueDataConfig)"})
    cmerc: CMERCConfig = field(default_factory=CMERCConfig, metadata={
        "help": "CMERC training strategies (erc.graph.cmerc_config.CMERCConfig), all off by default"})
    output_dir: str = field(default="runs/train_graph", metadata={"help": "run directory (seed_<k>/ per seed)"})
    # model
    hidden_dim: int = field(default=512, metadata={"help": "node feature size after projection"})
    layers: list[int] = field(default_factory=lambda: [7, 7, 7], metadata={
        "help": "graph conv layers per modality pair, in the order of combinations(modalities) "
                "(text, visual, audio -> tv, ta, va); one value for a single modality"})
    win_p: int = field(default=17, metadata={"help": "past window (utterances); -1 = whole dialogue"})
    win_f: int = field(default=17, metadata={"help": "future window (utterances); -1 = whole dialogue"})
    max_distance: int = field(default=32, metadata={
        "help": "relative distances are clipped to this many buckets on an unbounded (-1) window side"})
    dropout: float = field(default=0.2, metadata={"help": "dropout of projections and graph branches"})
    shift_win: int = field(default=19, metadata={"help": "block size for sentiment-shift pairs"})
    batchnorm_modalities: list[str] = field(default_factory=lambda: ["text"], metadata={
        "help": "modalities batch-normalised before projection (reference: text)", "choices": MODALITIES})
    norm: str = field(default="sym", metadata={
        "help": "edge normalisation: sym = D^-1/2 A D^-1/2 (GraphSmile, GCN), row = D^-1 A, the mean over each "
                "node's window (for one-sided, causal windows: see erc.graph.layers.NORMS)", "choices": ("sym", "row")})
    propagation: str = field(default="csr", metadata={
        "help": "graph propagation: csr (sparse operator, fast) or edgewise (GCNConv reference)",
        "choices": ("csr", "edgewise")})
    # loss
    loss: str = field(default="emo_sen_sft", metadata={"help": "task-loss combination", "choices": LOSS_MODES})
    lambda_emo: float = field(default=1.0, metadata={"help": "emotion loss weight"})
    lambda_sen: float = field(default=1.0, metadata={"help": "sentiment loss weight"})
    lambda_shift: float = field(default=0.7, metadata={"help": "sentiment-shift loss weight"})
    # optimisation
    lr: float = field(default=1.0e-4, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1.0e-4, metadata={"help": "AdamW weight decay"})
    batch_size: int = field(default=16, metadata={"help": "dialogues per batch (per process)"})
    eval_batch_size: int = field(default=32, metadata={"help": "dialogues per evaluation batch"})
    epochs: int = field(default=120, metadata={"help": "training epochs"})
    max_grad_norm: float = field(default=0.0, metadata={"help": "gradient clipping norm (0 = off)"})
    seed: int = field(default=0, metadata={"help": "first seed; seeds are seed, seed+1, ..."})
    seeds: int = field(default=1, metadata={"help": "number of seeds to run (mean and std reported)"})
    selection_metric: str = field(default="weighted_f1", metadata={
        "help": "validation metric that picks the best epoch", "choices": SELECTION_METRICS})
    resume: str = field(default="auto", metadata={"help": RESUME_HELP + " (per seed: seed_<k>/checkpoints/)"})
    checkpoint: bool = field(default=True, metadata={
        "help": "save a checkpoint (seed_<k>/checkpoints/epoch_N/) after every epoch"})
    keep_checkpoints: int = field(default=2, metadata={"help": "epoch checkpoints kept per seed (0 = all)"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = leave torch's default)"})
    release_memory: bool = field(default=False, metadata={
        "help": "lean heap: a fixed 1 MiB mmap threshold and the freed heap handed back to the OS (glibc malloc_trim) "
                "after each optimizer step (erc.core.harness.steady_heap): about 0.4 GiB lower peak RSS for a "
                "slower epoch. Off (default): one arena with 64 MiB thresholds (fast_steady_heap), pages reused "
                "from step to step. Both keep the peak the same from run to run; bench/bench_graph_epoch.py "
                "measures both; no effect on results"})
    recompute_graphs: bool = field(default=False, metadata={
        "help": "keep only each graph stack's input in the forward and recompute its activations in the "
                "backward (activation checkpointing): lower peak memory for a slower step; the same "
                "gradients (dropout masks replayed), so no effect on results"})
    report_to: str = field(default="none", metadata={"help": REPORT_TO_HELP, "choices": REPORT_TO})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    allow_config_change: bool = field(default=False, metadata={"help": ALLOW_CONFIG_CHANGE_HELP})
    mixed_precision: str = field(default="no", metadata={"help": "Accelerate mixed precision",
                                                         "choices": MIXED_PRECISION})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar on the main process"})

    def validate(self) -> None:
        check_resume(self.resume)
        for name in ("hidden_dim", "batch_size", "eval_batch_size", "shift_win", "seeds", "max_distance"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.epochs < 0:
            raise ConfigError(f"epochs: expected >= 0, got {self.epochs}")
        for name in ("win_p", "win_f"):
            if getattr(self, name) < -1:
                raise ConfigError(f"{name}: expected -1 (whole dialogue) or >= 0, got {getattr(self, name)}")
        if not self.layers or any(k < 1 for k in self.layers):
            raise ConfigError(f"layers: expected positive integers, got {self.layers}")
        mods = self.data.modalities
        n_pairs = max(len(mods) * (len(mods) - 1) // 2, 1)
        if len(self.layers) < n_pairs:
            raise ConfigError(f"layers: {self.layers} gives {len(self.layers)} value(s) for {n_pairs} modality "
                              f"pair(s) of {mods}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout: expected 0 <= p < 1, got {self.dropout}")

    def __post_init__(self) -> None:
        self.layers = [int(k) for k in self.layers]
        self.batchnorm_modalities = list(self.batchnorm_modalities)
        check_choices(self, type(self).__name__)   # also when built directly, not through config_from_dict
        self.validate()


@dataclass
class PredictGraphConfig:
    """``cli.py predict-graph``: emotion, sentiment and class probabilities per utterance."""

    model_dir: str = field(default="runs/train_graph/seed_0/best_model", metadata={
        "help": "best_model/ folder written by train-graph"})
    dataset: str | None = field(default=None, metadata={
        "help": "registry name of the file to predict; None = the training dataset", "choices": tuple(DATASETS)})
    path: str | None = field(default=None, metadata={
        "help": "file of that dataset; None = the registry default (or the training path)"})
    text_embeddings: str | None = field(default=None, metadata={
        "help": "embeddings file from `cli.py embed` for this file's utterances; None = as in training"})
    splits: list[str] = field(default_factory=lambda: ["train", "valid", "test"], metadata={
        "help": "which splits of the file to predict", "choices": SPLITS})
    output: str = field(default="runs/train_graph/predictions.csv", metadata={"help": "CSV written atomically"})
    batch_size: int = field(default=32, metadata={"help": "dialogues per batch"})
    quantize: str = field(default="none", metadata={
        "help": "int8: run the model's dense products in 8-bit integers on the CPU (erc.graph.quantize; faster, "
                "predictions measured within seed noise); none: as trained", "choices": QUANTIZE})

    def validate(self) -> None:
        if not self.splits:
            raise ConfigError(f"splits: expected a non-empty subset of {', '.join(SPLITS)}, got {self.splits}")


DIFFICULTY_METHODS = ("auto", "model", "labels")


@dataclass
class DifficultyConfig:
    """``cli.py difficulty``: a ``data:`` section plus these (:mod:`erc.graph.difficulty`)."""

    data: DialogueDataConfig = field(default_factory=DialogueDataConfig, metadata={
        "help": "which dialogues (erc.data.config.DialogueDataConfig)"})
    output: str = field(default="runs/difficulty/difficulty.csv", metadata={
        "help": "where to write the scores (.csv or .json), keyed by dialogue id"})
    method: str = field(default="auto", metadata={
        "help": "model: mean loss of model_dir's model; labels: label entropy + shift rate; "
                "auto: model if model_dir is set, else labels", "choices": DIFFICULTY_METHODS})
    model_dir: str | None = field(default=None, metadata={
        "help": "folder of a trained graph model (model.safetensors + model_config.json from train-graph)"})
    split: str = field(default="train", metadata={"help": "which split's dialogues to score",
                                                  "choices": SPLITS})
    batch_size: int = field(default=16, metadata={"help": "dialogues per batch for the model pass"})
    device: str = field(default="cpu", metadata={"help": "torch device for the model pass"})

    def validate(self) -> None:
        if self.method == "model" and not self.model_dir:
            raise ConfigError("method=model needs model_dir (a trained graph model folder)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, got {self.batch_size}")
