"""Configuration of the VAD stage: one dataclass per subcommand, every field defaulted.

Defaults run the Quickstart: the built-in synthetic corpus and the built-in
tiny encoder, a few epochs, no download. ``configs/vad_iemocap.yaml`` holds the
reference recipe (roberta-base, lr 2e-5, batch 16, 5 epochs, max length 128).
The data (where utterances come from, how they are split) is the ``data:``
section, an :class:`erc.data.config.UtteranceDataConfig`; its fields are
flags too (``--path``, ``--format``, ``--valid-sessions`` ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from erc.core.config import MIXED_PRECISION, RESUME_HELP, ConfigError, check_resume
from erc.core.runs import ALLOW_CONFIG_CHANGE_HELP, OVERWRITE_HELP, REPORT_TO, REPORT_TO_HELP
from erc.data.config import UtteranceDataConfig
from erc.data.registry import CLASS_SETS, DATASETS, VAD_NAMES
from erc.encoders import POOLINGS

#: What ``finetune`` can learn: one head per target (V/A/D regression, emotion and sentiment classes).
TARGETS = ("vad", "emotion", "sentiment")
#: The classification heads' validation scores (``val_<head>_<score>`` in train_log.csv).
CLASS_SCORES = ("accuracy", "weighted_f1", "macro_f1")
#: V/A/D validation metrics: overall (mean over the dimensions), per dimension, and the pooled errors.
VAD_SELECTION = ("ccc", "pearson", "mean_ccc", "mean_pearson", "mse", "rmse", "mae",
                 *(f"{d}_{m}" for d in VAD_NAMES for m in ("ccc", "pearson")))
#: Validation metrics (columns ``val_<name>`` of train_log.csv) that can pick the best epoch: ``loss``, a
#: V/A/D metric (needs the vad target), ``emotion_*`` / ``sentiment_*`` (need that head).
SELECTION_METRICS = ("loss", *VAD_SELECTION, *(f"{t}_{m}" for t in ("emotion", "sentiment") for m in CLASS_SCORES))
#: ``emotion_classes``: a registry class set, or ``dataset``: the labels of ``data.dataset`` (MELD's 7 ...).
EMOTION_CLASS_CHOICES = (*CLASS_SETS, "dataset")


def _h(text: str, **kw) -> dict:
    return dict(help=text, **kw)


@dataclass
class FinetuneConfig:
    """Fine-tune an encoder with one linear head per target: V/A/D, emotion, sentiment (``cli.py finetune``)."""

    data: UtteranceDataConfig = field(default_factory=UtteranceDataConfig, metadata=_h(
        "where utterances come from and how they are split"))
    model: str = field(default="builtin:tiny", metadata=_h(
        "Hugging Face model name, local HF folder, or builtin:tiny"))
    pooling: str = field(default="cls", metadata=_h("sentence pooling", choices=POOLINGS))
    dropout: float = field(default=0.1, metadata=_h("dropout before the head"))
    max_length: int = field(default=128, metadata=_h("max tokens per utterance (with its context)"))
    context_past: int = field(default=0, metadata=_h(
        "previous turns of the dialogue read with each utterance (speaker-tagged, the target marked; "
        "cut from the far side first; saved with the model). 0 = the utterance alone"))
    context_future: int = field(default=0, metadata=_h("following turns read with each utterance (as context_past)"))
    targets: list[str] = field(default_factory=list, metadata=_h(
        "heads to train, any of vad, emotion, sentiment (one head each; the loss is the weighted sum of "
        "theirs). Empty: vad, plus emotion when emotion_loss_weight > 0 (the older multi-task setting)",
        choices=TARGETS))
    loss_weights: dict[str, float] = field(default_factory=dict, metadata=_h(
        "weight of each target's loss (YAML mapping, or the flag as 'emotion=1.0 sentiment=0.5'); a target "
        "not named weighs 1.0 (emotion: emotion_loss_weight when that is > 0)"))
    emotion_loss_weight: float = field(default=0.0, metadata=_h(
        "multi-task: weight of an emotion-classification head's cross-entropy beside the V/A/D loss "
        "(trained on the training split; 0 = no head). Older spelling of targets [vad, emotion] with "
        "loss_weights {emotion: W}"))
    emotion_classes: str = field(default="iemocap6", metadata=_h(
        "class set of the emotion head (registry CLASS_SETS, or 'dataset': the labels of data.dataset); "
        "utterances outside it add no emotion loss",
        choices=EMOTION_CLASS_CHOICES))
    folds: list[int] = field(default_factory=list, metadata=_h(
        "leave-one-session-out over these sessions: one run per fold (test = the session, validation = "
        "the session before it, train = the rest) in output_dir/fold_K, then folds_summary.json / .md "
        "with each fold's test metrics and their mean +- std (empty: one run)"))
    output_dir: str = field(default="runs/vad_quickstart", metadata=_h("run directory"))
    epochs: int = field(default=6, metadata=_h("training epochs"))
    batch_size: int = field(default=16, metadata=_h("per-device training batch size"))
    eval_batch_size: int = field(default=64, metadata=_h("per-device evaluation batch size"))
    lr: float = field(default=2.0e-3, metadata=_h("AdamW peak learning rate"))
    weight_decay: float = field(default=0.01, metadata=_h("AdamW weight decay (not on biases/LayerNorm)"))
    warmup_ratio: float = field(default=0.1, metadata=_h("fraction of optimizer steps of linear warm-up"))
    gradient_accumulation_steps: int = field(default=1, metadata=_h("micro-batches per optimizer step"))
    max_grad_norm: float = field(default=1.0, metadata=_h("gradient clipping (0 = off)"))
    mixed_precision: str = field(default="no", metadata=_h("mixed precision", choices=MIXED_PRECISION))
    group_by_length: bool = field(default=True, metadata=_h("length-grouped batches (dynamic padding)"))
    drop_last: bool = field(default=False, metadata=_h("drop the last incomplete training batch"))
    seed: int = field(default=42, metadata=_h("random seed"))
    selection_metric: str = field(default="ccc", metadata=_h(
        "validation metric that picks the best epoch (ccc / pearson: the mean over V/A/D; "
        "valence_ccc ...; emotion_weighted_f1, sentiment_macro_f1 ...: a classification head's)",
        choices=SELECTION_METRICS))
    early_stopping_patience: int = field(default=0, metadata=_h(
        "stop after this many epochs without improvement (0 = off)"))
    checkpointing_steps: int = field(default=0, metadata=_h(
        "also save a step_N checkpoint every N optimizer steps (0 = epoch checkpoints only)"))
    keep_checkpoints: int = field(default=2, metadata=_h("epoch/step checkpoints kept (0 = all)"))
    resume: str = field(default="never", metadata=_h(RESUME_HELP))
    num_threads: int = field(default=0, metadata=_h("torch CPU threads (0 = torch default)"))
    report_to: str = field(default="none", metadata=_h(REPORT_TO_HELP, choices=REPORT_TO))
    overwrite: bool = field(default=False, metadata=_h(OVERWRITE_HELP))
    allow_config_change: bool = field(default=False, metadata=_h(ALLOW_CONFIG_CHANGE_HELP))
    plots: bool = field(default=True, metadata=_h("write plots/*.png"))
    stop_after_steps: int = field(default=0, metadata=_h(
        "testing aid: stop (as if interrupted) after this many optimizer steps (0 = off)"))

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"field 'epochs': expected >= 1, got {self.epochs}")
        for name in ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}': expected >= 1, got {getattr(self, name)}")
        if self.emotion_loss_weight < 0:
            raise ConfigError(f"field 'emotion_loss_weight': expected >= 0, got {self.emotion_loss_weight}")
        if len(set(self.targets)) != len(self.targets):
            raise ConfigError(f"field 'targets': duplicates in {self.targets}")
        targets = self.resolved_targets()
        if self.targets and self.emotion_loss_weight > 0 and "emotion" not in targets:
            raise ConfigError(f"field 'emotion_loss_weight': {self.emotion_loss_weight} weighs an emotion head, but "
                              f"targets are {list(targets)} (add emotion, or set its weight in loss_weights)")
        for name, w in self.loss_weights.items():
            if name not in targets:
                raise ConfigError(f"field 'loss_weights': {name!r} is not a target (targets: {list(targets)})")
            if not w > 0:
                raise ConfigError(f"field 'loss_weights': {name} expected > 0, got {w}")
        if self.emotion_classes == "dataset" and "emotion" in targets and not self.data.dataset:
            raise ConfigError("field 'emotion_classes': 'dataset' takes the labels of data.dataset, which is not set")
        metric = self.selection_metric
        head = metric.split("_")[0] if metric.startswith(("emotion_", "sentiment_")) else \
            (None if metric == "loss" else "vad")
        if head is not None and head not in targets:
            if head == "emotion" and not self.targets:
                raise ConfigError(f"field 'selection_metric': {metric} scores the emotion head, which "
                                  "needs emotion_loss_weight > 0 (or targets with emotion)")
            raise ConfigError(f"field 'selection_metric': {metric} scores the {head} head, but targets are "
                              f"{list(targets)}")
        for name in ("context_past", "context_future"):
            if getattr(self, name) < 0:
                raise ConfigError(f"field '{name}': expected >= 0 turns, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"field 'warmup_ratio': expected in [0, 1), got {self.warmup_ratio}")
        if self.lr < 0:
            raise ConfigError(f"field 'lr': expected >= 0, got {self.lr}")
        check_resume(self.resume)

    def resolved_targets(self) -> tuple[str, ...]:
        """The heads this run trains, in :data:`TARGETS` order (``targets``, or the older vad [+ emotion])."""
        if self.targets:
            return tuple(t for t in TARGETS if t in self.targets)
        return ("vad", "emotion") if self.emotion_loss_weight > 0 else ("vad",)

    def resolved_weights(self) -> dict[str, float]:
        """Loss weight of each target: ``loss_weights``, else emotion_loss_weight for emotion (if > 0), else 1."""
        out = {}
        for t in self.resolved_targets():
            default = self.emotion_loss_weight if t == "emotion" and self.emotion_loss_weight > 0 else 1.0
            out[t] = float(self.loss_weights.get(t, default))
        return out


@dataclass
class PredictConfig:
    """Predict V/A/D with a fine-tuned model (``cli.py predict``)."""

    data: UtteranceDataConfig = field(default_factory=UtteranceDataConfig, metadata=_h(
        "table columns (text_column, id_column) of --input"))
    model_dir: str = field(default="runs/vad_quickstart/best_model", metadata=_h(
        "a VADRegressor folder (best_model/ of a finetune run)"))
    input: str = field(default="", metadata=_h(
        "CSV of texts (text column --text-column), a .txt file (one text per line), or an IEMOCAP root"))
    output: str = field(default="predictions.csv", metadata=_h(
        "output CSV (utterance_id, then valence, arousal, dominance / emotion / sentiment: the model's heads)"))
    batch_size: int = field(default=64, metadata=_h("inference batch size"))


@dataclass
class EmbedConfig:
    """Encode every utterance of a dataset with an encoder or a fine-tuned V/A/D model; write ids + matrix (.npz)."""

    dataset: str = field(default="synthetic", metadata={"help": "registry name", "choices": tuple(DATASETS)})
    path: str | None = field(default=None, metadata={"help": "dataset file (None = registry default)"})
    model: str = field(default="builtin:tiny", metadata={
        "help": "encoder name/folder for erc.encoders.hf.load_encoder, or a fine-tuned VADRegressor folder"})
    pooling: str = field(default="mean", metadata={"help": "pooling for erc.encoders.hf.encode_texts",
                                                   "choices": POOLINGS})
    batch_size: int = field(default=64, metadata={"help": "texts per encoder batch"})
    context_past: int = field(default=0, metadata={"help": (
        "previous turns read with each utterance, for a plain encoder (a fine-tuned V/A/D folder uses the "
        "rule it was trained with)")})
    context_future: int = field(default=0, metadata={"help": "following turns (as context_past)"})
    max_length: int = field(default=128, metadata={"help": "max tokens per input, for a plain encoder"})
    output: str = field(default="runs/embeddings.npz", metadata={"help": "output .npz (written atomically)"})
    cross_fit: int = field(default=0, metadata={"help": (
        "out-of-fold embeddings: cut the training sessions of --model's fine-tuning into K folds, fine-tune "
        "once per fold without it, and embed each fold's dialogues with the encoder that never saw them "
        "(everything else with --model); <output>.cross_fit.json says which encoder embedded what. "
        "0 = off (every utterance by --model)")})
    finetune_config: str = field(default="", metadata={"help": (
        "cross-fit: the config.yaml of the finetune run that made --model (default: the one beside it)")})
    cross_fit_dir: str = field(default="", metadata={"help": (
        "cross-fit: folder of the fold fine-tunings (default: cross_fit/ beside --output); finished folds "
        "of the same config are reused")})
    num_threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    synthetic_dialogues: int = 60
    synthetic_seed: int = 0

    def validate(self) -> None:
        if self.cross_fit == 1 or self.cross_fit < 0:
            raise ConfigError(f"field 'cross_fit': expected 0 (off) or at least 2 folds, got {self.cross_fit}")
