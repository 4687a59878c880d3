"""The V/A/D regressor: a pretrained ``AutoModel`` encoder, pooling, dropout, a linear head to 3 (and,
optionally or instead, emotion and sentiment classification heads: docs/finetune.md).

It is a ``transformers`` model: :class:`VADConfig` (``model_type = "erc-vad"``, the encoder's
own config nested under ``encoder``) and :class:`VADRegressor` (a ``PreTrainedModel``), both
registered with ``AutoConfig`` / ``AutoModel`` / ``AutoModelForSequenceClassification`` when
this module is imported. ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` are the
library's own, so a saved model is a standard folder::

    config.json          VADConfig: pooling, dropout, max_seq_length, V/A/D names, the encoder's config
    model.safetensors    encoder.*, head.*, scaler_mean, scaler_std
    tokenizer.json, tokenizer_config.json, ...
    README.md            the model card (written by the training run, erc.vad.card)

and loads with ``VADRegressor.from_pretrained(dir)`` or ``AutoModel.from_pretrained(dir)``
once ``erc.vad.model`` is imported (``from erc.vad import VADRegressor`` does that).

The head and the loss are owned here explicitly (MSE on standardised targets), not
delegated to ``AutoModelForSequenceClassification``, whose float labels with
``num_labels=3`` silently train with BCE unless ``problem_type`` is set.

Targets are standardised with a per-dimension scaler (mean/std fitted on the TRAIN
split). The scaler stays two buffers of the model (saved in ``model.safetensors``)
rather than being folded into the head: training sees standardised targets (each
dimension weighs the same in the loss), a saved model fine-tunes further with that
same parametrisation, and ``logits`` / ``vad`` of ``forward`` and :meth:`predict` are
always on the data's original scale.

Folders written before this format (``vad_config.json`` + ``vad_head.safetensors`` beside a
plain encoder folder) still load with ``VADRegressor.from_pretrained``;
``erc convert-vad OLD NEW`` (:func:`convert_legacy_folder`) rewrites one in the new format.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm
from transformers import (AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer, PretrainedConfig,
                          PreTrainedModel)
from transformers.utils import ModelOutput

from erc.core.io import atomic_replace_dir
from erc.data.registry import VAD_NAMES
from erc.data.context import tokenizer_context_inputs
from erc.encoders.hf import (POOLINGS, EncoderLoadError, batches_by_length, encode_texts, encoder_inputs, load_encoder,
                             pool_hidden)

logger = logging.getLogger(__name__)

MODEL_TYPE = "erc-vad"
# the folder layout written before VADRegressor was a PreTrainedModel
LEGACY_HEAD_FILE = "vad_head.safetensors"
LEGACY_CONFIG_FILE = "vad_config.json"


class VADConfig(PretrainedConfig):
    """Configuration of :class:`VADRegressor`; ``encoder`` is the encoder's own config (any ``AutoConfig``).

    ``id2label`` names the outputs (valence, arousal, dominance) and ``problem_type`` is
    ``"regression"``, so generic tools read the head as three regression outputs.
    """

    model_type = MODEL_TYPE
    sub_configs = {"encoder": AutoConfig}

    def __init__(self, encoder: PretrainedConfig | dict | None = None, pooling: str = "cls", dropout: float = 0.1,
                 max_seq_length: int = 128, target_names: Sequence[str] = VAD_NAMES, context_past: int = 0,
                 context_future: int = 0, emotion_labels: Sequence[str] = (), emotion_loss_weight: float = 0.0,
                 sentiment_labels: Sequence[str] = (), sentiment_loss_weight: float = 0.0,
                 vad_loss_weight: float = 1.0, **kwargs):
        if isinstance(encoder, dict):
            encoder = dict(encoder)
            if "model_type" not in encoder:
                raise ValueError("VADConfig: field 'encoder' has no 'model_type'; expected the encoder's "
                                 "config as written by its save_pretrained")
            encoder = AutoConfig.for_model(encoder.pop("model_type"), **encoder)
        if pooling not in POOLINGS:
            raise ValueError(f"VADConfig: field 'pooling' must be one of {POOLINGS}, got {pooling!r}")
        self.encoder = encoder
        self.pooling = pooling
        self.dropout = float(dropout)
        self.max_seq_length = int(max_seq_length)   # not max_length: transformers reads that as a generation setting
        self.target_names = list(target_names)
        # dialogue context the model was trained with (erc.data.context): inputs are built the same way
        self.context_past, self.context_future = int(context_past), int(context_future)
        if self.context_past < 0 or self.context_future < 0:
            raise ValueError(f"VADConfig: context_past / context_future must be >= 0, got "
                             f"{self.context_past} / {self.context_future}")
        # optional multi-task head: emotion classes beside V/A/D (empty = none); its loss weight
        self.emotion_labels = list(emotion_labels)
        self.emotion_loss_weight = float(emotion_loss_weight)
        # optional sentiment head (empty = none) and the V/A/D head's own weight (target_names empty = no V/A/D)
        self.sentiment_labels = list(sentiment_labels)
        self.sentiment_loss_weight = float(sentiment_loss_weight)
        self.vad_loss_weight = float(vad_loss_weight)
        if not (self.target_names or self.emotion_labels or self.sentiment_labels):
            raise ValueError("VADConfig: no head: target_names, emotion_labels and sentiment_labels are all empty")
        # ``logits`` (what generic tools read) is the first head: V/A/D, else emotion, else sentiment
        names = self.target_names or self.emotion_labels or self.sentiment_labels
        kwargs["id2label"] = dict(enumerate(names))
        kwargs["label2id"] = {n: i for i, n in enumerate(names)}
        kwargs["problem_type"] = "regression" if self.target_names else "single_label_classification"
        encoder_attention = getattr(encoder, "_attn_implementation", None)
        super().__init__(**kwargs)
        if encoder_attention is not None and "attn_implementation" not in kwargs:
            # transformers >= 5 hands the composite config's (unset) attention implementation down to
            # its sub-configs; an encoder that is already built keeps the one it runs with
            encoder._attn_implementation = encoder_attention


@dataclass
class VADRegressorOutput(ModelOutput):
    """``logits`` and ``vad``: V/A/D on the data's scale (one tensor; ``logits`` is the name
    ``transformers`` pipelines read); ``pred``: the standardised head output the loss sees;
    ``loss``: MSE on standardised targets when ``labels`` are given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    vad: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    emotion_logits: torch.Tensor | None = None
    sentiment_logits: torch.Tensor | None = None


class VADRegressor(PreTrainedModel):
    """Encoder -> pooling -> dropout -> one linear head per target; the loss is their weighted sum.

    The heads (:attr:`heads`): ``vad`` Linear(hidden, 3) with MSE on standardised targets (absent when
    ``config.target_names`` is empty), ``emotion`` / ``sentiment`` Linear(hidden, classes) with
    cross-entropy (present when ``config.emotion_labels`` / ``sentiment_labels`` are set).
    ``forward(input_ids, attention_mask, labels=None, emotion=None, sentiment=None)`` returns a
    :class:`VADRegressorOutput` (dict-like: ``out["vad"]``, ``out["pred"]``, ``out["emotion_logits"]``,
    ``out["sentiment_logits"]``, ``out["loss"]`` when targets are given; ``labels`` are V/A/D on the
    original scale with shape (B, 3)).
    """

    config_class = VADConfig
    base_model_prefix = "encoder"     # so ``model.base_model`` is the encoder
    main_input_name = "input_ids"

    def __init__(self, config: VADConfig, encoder: PreTrainedModel | None = None, tokenizer=None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else AutoModel.from_config(config.encoder)
        self.tokenizer = tokenizer
        # BERT-style pooler layers are not used by our pooling: freeze them so DDP does not wait
        # for their gradients (they are still saved, the folder keeps a complete encoder).
        pooler = getattr(self.encoder, "pooler", None)
        if isinstance(pooler, nn.Module):
            for p in pooler.parameters():
                p.requires_grad_(False)
        k = len(config.target_names)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.encoder.hidden_size, k) if k else None     # V/A/D
        self.emotion_head = (nn.Linear(config.encoder.hidden_size, len(config.emotion_labels))
                             if config.emotion_labels else None)
        self.sentiment_head = (nn.Linear(config.encoder.hidden_size, len(config.sentiment_labels))
                               if config.sentiment_labels else None)
        if k:
            self.register_buffer("scaler_mean", torch.zeros(k))
            self.register_buffer("scaler_std", torch.ones(k))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # The encoder keeps its pretrained weights (transformers skips modules it marked initialised).
        # The head keeps torch's default Linear init drawn when it was built, so a seeded run draws
        # the same head as before this class was a PreTrainedModel; a folder without head weights is
        # refused by from_pretrained instead of being silently re-initialised.
        return

    # ---- the attributes the rest of the project reads ---------------------------------------
    @property
    def pooling(self) -> str:
        return self.config.pooling

    @property
    def max_length(self) -> int:
        return self.config.max_seq_length

    @property
    def dropout_p(self) -> float:
        return self.config.dropout

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(self.config.target_names)

    @property
    def heads(self) -> tuple[str, ...]:
        """The targets this model predicts: any of ``vad``, ``emotion``, ``sentiment``, in that order."""
        return tuple(name for name, on in (("vad", self.head is not None), ("emotion", self.emotion_head is not None),
                                           ("sentiment", self.sentiment_head is not None)) if on)

    @classmethod
    def from_encoder_name(cls, name_or_path: str, pooling: str = "cls", dropout: float = 0.1,
                          max_length: int = 128, target_names: Sequence[str] = VAD_NAMES, context_past: int = 0,
                          context_future: int = 0, emotion_labels: Sequence[str] = (),
                          emotion_loss_weight: float = 0.0, sentiment_labels: Sequence[str] = (),
                          sentiment_loss_weight: float = 0.0, vad_loss_weight: float = 1.0) -> "VADRegressor":
        """A new model (heads untrained, scaler identity) on a pretrained encoder (name, folder, builtin:tiny).

        ``target_names`` empty: no V/A/D head; ``emotion_labels`` / ``sentiment_labels``: the classes of
        those heads (empty: none).
        """
        encoder, tokenizer = load_encoder(name_or_path)
        config = VADConfig(encoder=encoder.config, pooling=pooling, dropout=dropout, max_seq_length=max_length,
                           target_names=target_names, context_past=context_past, context_future=context_future,
                           emotion_labels=emotion_labels, emotion_loss_weight=emotion_loss_weight,
                           sentiment_labels=sentiment_labels, sentiment_loss_weight=sentiment_loss_weight,
                           vad_loss_weight=vad_loss_weight)
        return cls(config, encoder=encoder, tokenizer=tokenizer)

    # ---- scaler -------------------------------------------------------------------------
    def fit_scaler(self, targets: np.ndarray) -> None:
        """Per-dimension mean/std of the TRAIN targets (original scale), stored with the model."""
        t = np.asarray(targets, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != len(self.target_names) or len(t) == 0:
            raise ValueError(f"targets must be (n>0, {len(self.target_names)}), got {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError("targets contain NaN/inf: unlabeled rows must not reach the scaler")
        std = t.std(axis=0)
        std[std < 1e-6] = 1.0
        self.scaler_mean.copy_(torch.as_tensor(t.mean(axis=0), dtype=torch.float32))
        self.scaler_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def scale(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.scaler_mean) / self.scaler_std

    def unscale(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scaler_std + self.scaler_mean

    # ---- forward ------------------------------------------------------------------------
    def pooled(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask)
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        last = self.encoder(**kwargs).last_hidden_state
        return pool_hidden(last, attention_mask, self.pooling)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None,
                emotion=None, sentiment=None) -> VADRegressorOutput:
        """``labels``: V/A/D (B, 3) on the original scale (its MSE on standardised targets, times
        ``vad_loss_weight``); ``emotion`` / ``sentiment``: class ids (B,), -100 = none (each head's
        cross-entropy, times ``emotion_loss_weight`` / ``sentiment_loss_weight``). ``loss`` is the sum over
        the targets given; a batch with no label of a head adds nothing for it."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        h = self.dropout(self.pooled(input_ids, attention_mask, token_type_ids))
        pred = vad = None
        if self.head is not None:
            pred = self.head(h).float()
            vad = self.unscale(pred)
        emotion_logits = self.emotion_head(h).float() if self.emotion_head is not None else None
        sentiment_logits = self.sentiment_head(h).float() if self.sentiment_head is not None else None
        terms = []
        if labels is not None and pred is not None:
            mse = nn.functional.mse_loss(pred, self.scale(labels.float()))
            terms.append(mse if self.config.vad_loss_weight == 1.0 else self.config.vad_loss_weight * mse)
        for ids, logits, weight in ((emotion, emotion_logits, self.config.emotion_loss_weight),
                                    (sentiment, sentiment_logits, self.config.sentiment_loss_weight)):
            if ids is not None and logits is not None and weight > 0:
                ids = ids.long()
                if bool((ids != -100).any()):   # a batch without labels of this head adds nothing
                    terms.append(weight * nn.functional.cross_entropy(logits, ids, ignore_index=-100))
        loss = None
        if terms:
            loss = terms[0]
            for t in terms[1:]:
                loss = loss + t
        elif labels is not None or emotion is not None or sentiment is not None:
            first = next(x for x in (pred, emotion_logits, sentiment_logits) if x is not None)
            loss = first.sum() * 0.0      # no label in this batch: a zero loss that still backpropagates
        logits = next(x for x in (vad, emotion_logits, sentiment_logits) if x is not None)
        return VADRegressorOutput(loss=loss, logits=logits, vad=vad, pred=pred, emotion_logits=emotion_logits,
                                  sentiment_logits=sentiment_logits)

    # ---- inference helpers --------------------------------------------------------------
    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this VADRegressor has no tokenizer; build it with one to use predict/embed")
        return self.tokenizer

    @property
    def uses_context(self) -> bool:
        return bool(self.config.context_past or self.config.context_future)

    def inputs(self, texts: Sequence[str], dialogue_ids: Sequence | None = None,
               speakers: Sequence | None = None) -> tuple[list[str], list[str] | None]:
        """Encoder inputs ``(texts, context segments)`` by the context rule saved with the model.

        A model trained with context needs ``dialogue_ids`` (rows of a dialogue in order) to read
        each turn with its neighbours; without them every text is its own one-turn dialogue.
        """
        past, future = self.config.context_past, self.config.context_future
        if dialogue_ids is None:
            if past or future:
                logger.warning("this model was trained with %d past / %d future turns of context, but no dialogue "
                               "ids were given: each text is read as a one-turn dialogue", past, future)
            dialogue_ids = range(len(texts))
        return tokenizer_context_inputs(self._require_tokenizer(), texts, dialogue_ids, speakers, past, future,
                                        self.max_length)

    @torch.no_grad()
    def predict(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False,
                dialogue_ids: Sequence | None = None, speakers: Sequence | None = None) -> np.ndarray:
        """V/A/D ``(n, 3)`` on the original scale, in input order (``progress``: a tqdm bar).

        ``dialogue_ids`` / ``speakers``: the dialogue of each text (in order) for a model trained
        with context (:meth:`inputs`).
        """
        tok = self._require_tokenizer()
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        out = np.zeros((len(texts), len(self.target_names)), dtype=np.float32)
        texts, pairs = self.inputs(texts, dialogue_ids, speakers)
        batches = batches_by_length(tok, texts, batch_size, self.max_length, pairs)
        for idx, enc in tqdm(batches, total=-(-len(texts) // batch_size), desc="predict", disable=not progress):
            inputs = encoder_inputs(enc, device)
            got = self(**inputs)["vad"]
            if got is not None:
                out[idx] = got.float().cpu().numpy()
        self.train(was_training)
        return out

    @torch.no_grad()
    def predict_heads(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False,
                      dialogue_ids: Sequence | None = None, speakers: Sequence | None = None) -> dict[str, np.ndarray]:
        """Every head's output in input order: ``vad`` (n, 3) on the original scale, ``emotion`` /
        ``sentiment`` (n, classes) probabilities (class names: ``config.emotion_labels`` /
        ``config.sentiment_labels``); only the heads the model has."""
        tok = self._require_tokenizer()
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        sizes = {"vad": len(self.target_names), "emotion": len(self.config.emotion_labels),
                 "sentiment": len(self.config.sentiment_labels)}
        out = {h: np.zeros((len(texts), sizes[h]), dtype=np.float32) for h in self.heads}
        texts, pairs = self.inputs(texts, dialogue_ids, speakers)
        batches = batches_by_length(tok, texts, batch_size, self.max_length, pairs)
        for idx, enc in tqdm(batches, total=-(-len(texts) // batch_size), desc="predict", disable=not progress):
            res = self(**encoder_inputs(enc, device))
            for h, key in (("vad", "vad"), ("emotion", "emotion_logits"), ("sentiment", "sentiment_logits")):
                if h in out:
                    val = res[key].float()
                    out[h][idx] = (val if h == "vad" else val.softmax(-1)).cpu().numpy()
        self.train(was_training)
        return out

    def embed(self, texts: Sequence[str], batch_size: int = 32, dialogue_ids: Sequence | None = None,
              speakers: Sequence | None = None) -> np.ndarray:
        """Pooled encoder embeddings ``(n, hidden)`` (the fine-tuned text features), inputs as :meth:`inputs`."""
        texts, pairs = self.inputs(texts, dialogue_ids, speakers)
        return encode_texts(self.encoder, self._require_tokenizer(), texts, pooling=self.pooling,
                            batch_size=batch_size, max_length=self.max_length, pairs=pairs)

    # ---- persistence --------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path, push_to_hub: bool = False, **kwargs) -> Path:
        """``PreTrainedModel.save_pretrained`` plus the tokenizer, written atomically as one folder.

        The folder is written under a temporary name and renamed into place, so a reader
        never sees half of it. ``push_to_hub=True`` then uploads it (``repo_id`` defaults to
        the folder name, as in ``transformers``).
        """
        save_dir = Path(save_directory)
        save_dir.parent.mkdir(parents=True, exist_ok=True)
        hub_kwargs = {k: kwargs.pop(k) for k in ("repo_id", "commit_message", "private", "token", "create_pr")
                      if k in kwargs}
        tmp = Path(tempfile.mkdtemp(dir=save_dir.parent, prefix=f".{save_dir.name}.", suffix=".tmp"))
        try:
            super().save_pretrained(tmp, **kwargs)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(tmp)
            atomic_replace_dir(tmp, save_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if push_to_hub:
            self.push_to_hub(hub_kwargs.pop("repo_id", save_dir.name), **hub_kwargs)
        return save_dir

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *model_args, device=None,
                        **kwargs) -> "VADRegressor":
        """Load a saved model (this format or the legacy one) with its tokenizer, in eval mode.

        A folder whose weights lack the head or the scaler is refused (``transformers`` would
        otherwise initialise them silently).
        """
        path = Path(pretrained_model_name_or_path)
        if path.is_dir() and is_legacy_vad_dir(path):
            model = _load_legacy(path)
        else:
            if path.is_dir() and not is_vad_model_dir(path):
                raise EncoderLoadError(
                    f"{path}: not a VADRegressor folder (config.json with model_type '{MODEL_TYPE}', or the "
                    f"older {LEGACY_CONFIG_FILE}); expected the best_model/ folder written by `erc finetune`")
            model, info = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                                  output_loading_info=True, **kwargs)
            missing = sorted(k for k in info["missing_keys"] if not k.startswith("encoder."))
            if missing:
                raise EncoderLoadError(f"{path}: weights {missing} missing from the model weights file; "
                                       "the folder is incomplete (save it again with save_pretrained)")
            if path.is_dir() and (path / "tokenizer_config.json").is_file():
                model.tokenizer = AutoTokenizer.from_pretrained(path)
        model.eval()
        if device is not None:
            model.to(device)
        return model


def is_vad_model_dir(path: str | Path) -> bool:
    """A folder holding a VADRegressor: this format (config.json of model_type erc-vad) or the legacy one."""
    path = Path(path)
    if is_legacy_vad_dir(path):
        return True
    cfg = path / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError):
        return False


def is_legacy_vad_dir(path: str | Path) -> bool:
    return (Path(path) / LEGACY_CONFIG_FILE).is_file()


def _load_legacy(path: Path) -> VADRegressor:
    """A folder of the earlier layout: a plain encoder folder + vad_config.json + vad_head.safetensors."""
    cfg_path, head_path = path / LEGACY_CONFIG_FILE, path / LEGACY_HEAD_FILE
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        keys = ("pooling", "dropout", "max_length", "target_names")
        missing = [k for k in keys if k not in cfg]
        if missing:
            raise EncoderLoadError(f"{cfg_path}: field(s) {missing} missing; expected {list(keys)}")
        state = load_file(str(head_path))
    except (OSError, ValueError) as exc:
        raise EncoderLoadError(f"{path}: unreadable legacy V/A/D folder ({type(exc).__name__}: {exc}); expected "
                               f"{LEGACY_CONFIG_FILE} (JSON) and {LEGACY_HEAD_FILE} (safetensors)") from None
    expected = {"head.weight", "head.bias", "scaler_mean", "scaler_std"}
    if set(state) != expected:
        raise EncoderLoadError(f"{head_path}: tensors {sorted(state)}; expected {sorted(expected)}")
    encoder, tokenizer = load_encoder(str(path))
    config = VADConfig(encoder=encoder.config, pooling=cfg["pooling"], dropout=cfg["dropout"],
                       max_seq_length=cfg["max_length"], target_names=cfg["target_names"])
    model = VADRegressor(config, encoder=encoder, tokenizer=tokenizer)
    with torch.no_grad():
        model.head.weight.copy_(state["head.weight"])
        model.head.bias.copy_(state["head.bias"])
        model.scaler_mean.copy_(state["scaler_mean"])
        model.scaler_std.copy_(state["scaler_std"])
    logger.info("%s: legacy V/A/D folder loaded (convert it with `erc convert-vad %s NEW`)", path, path)
    return model


def convert_legacy_folder(old: str | Path, new: str | Path) -> Path:
    """Rewrite a legacy V/A/D folder as a standard one (``erc convert-vad OLD NEW``); returns ``new``.

    Files other than the model's own (a model card, notes) are copied along.
    """
    old, new = Path(old), Path(new)
    if not is_legacy_vad_dir(old):
        raise EncoderLoadError(f"{old}: no {LEGACY_CONFIG_FILE}; expected a V/A/D folder written before "
                               "the transformers format (a current folder needs no conversion)")
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise EncoderLoadError(f"{new}: exists and is not an empty folder; give a new folder for the converted "
                               "model (the old one is left as it is)")
    model = _load_legacy(old)
    model.save_pretrained(new)
    own = {LEGACY_CONFIG_FILE, LEGACY_HEAD_FILE, "config.json", "model.safetensors"}
    for f in old.iterdir():
        if f.is_file() and f.name not in own and not (new / f.name).exists():
            shutil.copy2(f, new / f.name)
    return new


AutoConfig.register(MODEL_TYPE, VADConfig, exist_ok=True)
AutoModel.register(VADConfig, VADRegressor, exist_ok=True)
AutoModelForSequenceClassification.register(VADConfig, VADRegressor, exist_ok=True)
