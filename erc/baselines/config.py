"""Dataclass configuration of the baselines stage (``train-baseline``, ``predict-baseline``). Every field has a default.

:class:`BaselineTrainConfig` holds its data as the ``data:`` section
(:class:`erc.data.config.DialogueDataConfig`, as ``train-graph`` does), the ``method``
(``dialoguernn``, ``dialoguegcn`` or ``mlp``), each method's own sizes (a method reads
only its own fields; the others are recorded but unused) and the training fields shared by
the three. The defaults are DialogueRNN's and DialogueGCN's IEMOCAP settings on the synthetic
corpus; ``configs/baseline_*.yaml`` hold the published settings per method and dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import MIXED_PRECISION, RESUME_HELP, ConfigError, check_choices, check_resume
from erc.core.runs import ALLOW_CONFIG_CHANGE_HELP, OVERWRITE_HELP, REPORT_TO, REPORT_TO_HELP, IdentityRule
from erc.data.config import DialogueDataConfig
from erc.data.registry import DATASETS
from erc.data.splits import SPLITS

METHODS = ("dialoguernn", "dialoguegcn", "mlp")
CLASS_WEIGHTING = ("none", "inverse_frequency", "given")
CONTEXT_ATTENTION = ("general", "simple")
ENCODERS = ("gru", "lstm")
SELECTION_METRICS = ("weighted_f1", "accuracy", "macro_f1")


@dataclass
class BaselineTrainConfig:
    """``cli.py train-baseline --method {dialoguernn,dialoguegcn,mlp}``: ``data`` section + model + loss + training."""

    method: str = field(default="dialoguernn", metadata={
        "help": "dialoguernn (Majumder et al. 2019), dialoguegcn (Ghosal et al. 2019) or mlp (no dialogue context)",
        "choices": METHODS})
    data: DialogueDataConfig = field(default_factory=lambda: DialogueDataConfig(modalities=["text"]), metadata={
        "help": "which dialogues and modalities (erc.data.config.DialogueDataConfig); modalities are concatenated"})
    output_dir: str = field(default="runs/train_baseline", metadata={"help": "run directory (seed_<k>/ per seed)"})
    bidirectional: bool = field(default=False, metadata={
        "help": "dialoguernn: a second DialogueRNN over the reversed dialogue (BiDialogueRNN); dialoguegcn: a "
                "bidirectional sequential encoder. Off = causal (each turn sees only its past)"})
    # DialogueRNN
    global_dim: int = field(default=500, metadata={"help": "dialoguernn: global GRU state size (D_g)"})
    party_dim: int = field(default=500, metadata={"help": "dialoguernn: party GRU state size (D_p)"})
    emotion_dim: int = field(default=300, metadata={"help": "dialoguernn: emotion GRU state size (D_e)"})
    listener_update: bool = field(default=False, metadata={
        "help": "dialoguernn: update the listeners' party states too (the paper's active listener); off = "
                "listeners keep their state"})
    context_attention: str = field(default="general", metadata={
        "help": "dialoguernn: attention over the global history: general (query = the utterance) or simple "
                "(learned scorer, no query)", "choices": CONTEXT_ATTENTION})
    emotion_attention: bool = field(default=True, metadata={
        "help": "dialoguernn: attention over the emotion states of the dialogue before the classifier "
                "(the paper's +Att; past only when not bidirectional)"})
    rec_dropout: float = field(default=0.1, metadata={"help": "dialoguernn: dropout of the recurrent states"})
    # DialogueGCN
    encoder: str = field(default="gru", metadata={"help": "dialoguegcn: sequential context encoder",
                                                   "choices": ENCODERS})
    encoder_dim: int = field(default=100, metadata={"help": "dialoguegcn: encoder hidden size per direction"})
    encoder_layers: int = field(default=2, metadata={"help": "dialoguegcn: encoder layers"})
    graph_dim: int = field(default=100, metadata={"help": "dialoguegcn: RGCNConv / GraphConv output size"})
    num_bases: int = field(default=30, metadata={"help": "dialoguegcn: RGCNConv basis matrices (0 = none)"})
    win_p: int = field(default=10, metadata={"help": "dialoguegcn: past window (utterances); -1 = whole dialogue"})
    win_f: int = field(default=10, metadata={"help": "dialoguegcn: future window (utterances); -1 = whole dialogue"})
    nodal_attention: bool = field(default=True, metadata={
        "help": "dialoguegcn: attention over the dialogue's node features before the classifier (past only "
                "when the model is causal)"})
    edge_attention: bool = field(default=False, metadata={
        "help": "dialoguegcn: the paper's edge attention: each edge j -> i weighted by softmax over i's window of "
                "g_i^T W_e g_j (g: the sequential encoder's output) in the RGCNConv (off = every edge weighs 1)"})
    num_speakers: int = field(default=0, metadata={
        "help": "dialoguegcn: speakers per dialogue the relation types cover (2 * S^2 relations); 0 = the most "
                "any dialogue of the data has"})
    # MLP
    mlp_dims: list[int] = field(default_factory=lambda: [300], metadata={"help": "mlp: hidden layer sizes"})
    # shared
    hidden_dim: int = field(default=300, metadata={"help": "size of the classifier's hidden layer (D_h)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the classifier (and in the encoder)"})
    # loss
    class_weighting: str = field(default="none", metadata={
        "help": "NLL class weights: none; inverse_frequency (1 / training frequency, as the originals' IEMOCAP "
                "runs); given (class_weights)", "choices": CLASS_WEIGHTING})
    class_weights: list[float] = field(default_factory=list, metadata={
        "help": "one weight per class, in the dataset's label order (class_weighting given)"})
    # optimisation
    lr: float = field(default=1.0e-4, metadata={"help": "Adam learning rate"})
    weight_decay: float = field(default=1.0e-5, metadata={"help": "Adam L2 weight decay (the originals' --l2)"})
    batch_size: int = field(default=30, metadata={"help": "dialogues per batch (per process)"})
    eval_batch_size: int = field(default=32, metadata={"help": "dialogues per evaluation batch"})
    epochs: int = field(default=60, metadata={"help": "training epochs"})
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
    report_to: str = field(default="none", metadata={"help": REPORT_TO_HELP, "choices": REPORT_TO})
    overwrite: bool = field(default=False, metadata={"help": OVERWRITE_HELP})
    allow_config_change: bool = field(default=False, metadata={"help": ALLOW_CONFIG_CHANGE_HELP})
    mixed_precision: str = field(default="no", metadata={"help": "Accelerate mixed precision",
                                                         "choices": MIXED_PRECISION})
    progress: bool = field(default=True, metadata={"help": "tqdm progress bar on the main process"})

    def validate(self) -> None:
        check_resume(self.resume)
        for name in ("global_dim", "party_dim", "emotion_dim", "encoder_dim", "encoder_layers", "graph_dim",
                     "hidden_dim", "batch_size", "eval_batch_size", "seeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("epochs", "num_bases", "num_speakers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("win_p", "win_f"):
            if getattr(self, name) < -1:
                raise ConfigError(f"{name}: expected -1 (whole dialogue) or >= 0, got {getattr(self, name)}")
        if any(k < 1 for k in self.mlp_dims):
            raise ConfigError(f"mlp_dims: expected positive sizes, got {self.mlp_dims}")
        for name in ("dropout", "rec_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: expected 0 <= p < 1, got {getattr(self, name)}")
        if self.class_weighting == "given" and not self.class_weights:
            raise ConfigError("class_weighting given needs class_weights (one per class, in the label order)")
        if any(w <= 0 for w in self.class_weights):
            raise ConfigError(f"class_weights: expected positive weights, got {self.class_weights}")

    def __post_init__(self) -> None:
        self.mlp_dims = [int(k) for k in self.mlp_dims]
        self.class_weights = [float(w) for w in self.class_weights]
        check_choices(self, type(self).__name__)   # also when built directly, not through config_from_dict
        self.validate()

    @property
    def causal(self) -> bool:
        """Whether each utterance's prediction reads only its own and earlier turns (usable online)."""
        if self.method == "mlp":
            return True
        if self.method == "dialoguernn":
            return not self.bidirectional
        return not self.bidirectional and self.win_f == 0


# What makes two train-baseline runs the same run (erc.core.runs): more epochs or seeds extend a run,
# checkpoint bookkeeping and the number of processes do not change what it computes; data files are inputs.
# Fields added later are left out at their default, so runs recorded before them keep their identity.
TRAIN_BASELINE_IDENTITY = IdentityRule(
    ignore=frozenset({"epochs", "seeds", "checkpoint", "keep_checkpoints"}),
    inputs=("data.path", "data.text_embeddings", "data.release_root", "data.meld_csv_dir"),
    added=(("edge_attention", False),))


@dataclass
class PredictBaselineConfig:
    """``cli.py predict-baseline``: emotion and class probabilities per utterance with a trained baseline."""

    model_dir: str = field(default="runs/train_baseline/seed_0/best_model", metadata={
        "help": "best_model/ folder written by train-baseline"})
    dataset: str | None = field(default=None, metadata={
        "help": "registry name of the file to predict; None = the training dataset", "choices": tuple(DATASETS)})
    path: str | None = field(default=None, metadata={
        "help": "file of that dataset; None = the registry default (or the training path)"})
    text_embeddings: str | None = field(default=None, metadata={
        "help": "embeddings file from `cli.py embed` for this file's utterances; None = as in training"})
    splits: list[str] = field(default_factory=lambda: ["test"], metadata={
        "help": "which splits of the file to predict", "choices": SPLITS})
    output: str = field(default="runs/train_baseline/predictions.csv", metadata={"help": "CSV written atomically"})
    batch_size: int = field(default=32, metadata={"help": "dialogues per batch"})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})

    def validate(self) -> None:
        if not self.splits:
            raise ConfigError(f"splits: expected a non-empty subset of {', '.join(SPLITS)}, got {self.splits}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size: expected >= 1, got {self.batch_size}")
