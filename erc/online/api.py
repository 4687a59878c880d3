"""Streaming prediction, one turn at a time: :class:`OnlinePredictor`.

    from erc.online.api import OnlinePredictor
    online = OnlinePredictor.from_pretrained("runs/causal/seed_0/best_model")   # a causal train-graph model
    chat = online.start()
    online.push(chat, "I can't believe you did that.", speaker="F")
    # {'conversation_id': ..., 'turn': 0, 'speaker': 'F', 'emotion': 'ang', 'sentiment': 'negative',
    #  'emotion_probabilities': {'hap': ..., ...}, 'sentiment_probabilities': {...}}
    online.push(chat, "I'm sorry.", speaker="M")                                 # turn 1 reads turn 0
    chat.history                                                                  # every turn's prediction

The model must be causal (``win_f: 0``, ``configs/graph_*_causal.yaml``): a turn's prediction is
final when the turn arrives and equals what the same model gives offline on the whole dialogue
(``predict-graph``, :class:`erc.graph.api.GraphPredictor`). Per turn the predictor computes only
that turn's features (one text-encoder pass: the encoder that wrote the training run's
embeddings file, with its pooling and its past-turn context rule; or the hashed bag of words;
timing from ``start``/``end``; other modalities as given), normalises them with the training
statistics saved with the model, and advances the conversation's :class:`~erc.graph.streaming.GraphStream`;
nothing of an earlier turn is recomputed.

Bad input raises :class:`TurnError` naming the field and what was expected.
"""
from __future__ import annotations

import threading
from collections import deque
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from erc.core.config import ConfigError, load_yaml
from erc.data.text import hash_featurize, read_embeddings
from erc.data.timing import timing_features
from erc.graph.api import GraphPredictor, _flat, _text_source
from erc.graph.model import load_graph_model
from erc.graph.streaming import GraphStream, NotCausalError

#: ``texts so far, speakers so far -> (d,) embedding of the last text``
TurnEncoder = Callable[[Sequence[str], Sequence[str]], np.ndarray]


class TurnError(ConfigError):
    """A turn that cannot be predicted as given (the message names the field and what was expected)."""


class OnlineModelError(ConfigError):
    """A model folder that cannot serve online (not causal, or its text features read future turns)."""


def turn_encoder(embeddings_file: str | Path) -> TurnEncoder:
    """The encoder that wrote ``embeddings_file`` (``erc embed``), one new turn at a time.

    Inputs are built exactly as ``erc embed`` built them (:func:`erc.vad.embed.encoder_fn`: a
    fine-tuned V/A/D folder by the context rule saved with it, any other encoder by the recorded
    ``pooling`` / ``context_past`` / ``max_length``); only the last ``context_past`` turns are read.
    Future context is refused: it is not known when a turn arrives.
    """
    from erc.vad.embed import encoder_fn    # the V/A/D stage's encoder loading (imports torch, transformers)

    table = read_embeddings(embeddings_file)
    record = Path(str(embeddings_file) + ".config.yaml")
    rec = load_yaml(record) if record.is_file() else {}
    model = rec.get("model") or table.model
    if not model:
        raise OnlineModelError(f"{embeddings_file}: records no encoder ({record.name} missing); pass text_encoder=")
    past, future = int(rec.get("context_past", 0) or 0), int(rec.get("context_future", 0) or 0)
    folder_cfg = Path(model) / "config.json"
    if folder_cfg.is_file():                  # a fine-tuned V/A/D folder reads the context it was trained with
        import json

        declared = json.loads(folder_cfg.read_text(encoding="utf-8"))
        if declared.get("model_type") == "erc-vad":
            past, future = int(declared.get("context_past", 0) or 0), int(declared.get("context_future", 0) or 0)
    if future:
        raise OnlineModelError(f"{embeddings_file}: its text embeddings read {future} future turn(s) (encoder "
                               f"{model}); online prediction needs embeddings made with context_future 0")
    make_inputs, encode = encoder_fn(str(model), str(rec.get("pooling", "mean")), 1, (past, 0),
                                     int(rec.get("max_length", 128) or 128))

    def encode_turn(texts: Sequence[str], speakers: Sequence[str]) -> np.ndarray:
        lo = max(0, len(texts) - 1 - past)
        inputs, pairs = make_inputs(list(texts[lo:]), ["conversation"] * (len(texts) - lo), list(speakers[lo:]))
        return np.asarray(encode(inputs[-1:], pairs[-1:] if pairs is not None else None), dtype=np.float32)[0]

    encode_turn.context_past = past         # how many earlier turns a conversation must keep for it
    return encode_turn


@dataclass
class Conversation:
    """One conversation's state: its turns so far, their predictions and the model's cached stream."""

    conversation_id: str
    stream: GraphStream
    context_turns: int = 0             # past turns the text encoder reads: only those texts are kept
    texts: deque = field(init=False)
    speakers: deque = field(init=False)
    last_end: float | None = None
    history: list[dict] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.texts = deque(maxlen=self.context_turns)
        self.speakers = deque(maxlen=self.context_turns)

    def __len__(self) -> int:
        return len(self.history)


class OnlinePredictor:
    """Per-turn emotion and sentiment with a causal graph model (see the module docstring)."""

    def __init__(self, base: GraphPredictor, turn_text_encoder: TurnEncoder | None = None, device: str = "cpu"):
        self.base = base
        self.model = base.model.to(device).eval()
        self.device = torch.device(device)
        self.settings = base.settings
        GraphStream(self.model)                      # refuses a model that reads future turns, up front
        self.turn_text_encoder = turn_text_encoder
        self.label_names = list(self.model.cfg.label_names) or [str(k) for k in range(self.model.cfg.num_classes)]
        self.sentiment_names = (list(self.model.cfg.sentiment_names)
                                or [str(k) for k in range(self.model.cfg.num_sentiments)])
        self.stats = {m: {k: torch.as_tensor(v, dtype=torch.float32) for k, v in st.items()}
                      for m, st in base.stats.items()}
        self._lock = threading.Lock()                # one turn through the model at a time

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, text_encoder: TurnEncoder | None = None,
                        device: str = "cpu") -> "OnlinePredictor":
        """Load a ``best_model/`` folder of a causal ``train-graph`` run.

        ``text_encoder(texts_so_far, speakers_so_far) -> (d,)``, the last text's features, replaces
        the run's encoder (for models trained on features from elsewhere).
        """
        model, meta = load_graph_model(model_dir)
        if model.cfg.win_f != 0:
            raise OnlineModelError(f"{model_dir}: the model reads {model.cfg.win_f if model.cfg.win_f > 0 else 'all'} "
                                   "future turn(s) (win_f); online prediction needs a causal model: train it with "
                                   "win_f 0 (configs/graph_cosmic_iemocap_causal.yaml, configs/graph_cosmic_meld_causal.yaml)")
        cfg_path = Path(model_dir) / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"{cfg_path}: missing; a graph model folder keeps the run's config.yaml beside its weights")
        train_cfg = load_yaml(cfg_path)
        settings = _flat(train_cfg)
        if (text_encoder is None and "text" in model.cfg.modalities and _text_source(settings) == "embeddings"):
            text_encoder = turn_encoder(settings["text_embeddings"])
        return cls(GraphPredictor(model, meta, train_cfg), text_encoder, device)

    @property
    def modalities(self) -> list[str]:
        return self.model.cfg.modalities

    def describe(self) -> dict:
        """What the model needs per turn and what it predicts (for ``/v1/model``)."""
        cfg = self.model.cfg
        return {"modalities": {m: int(d) for m, d in cfg.input_dims.items()}, "emotions": self.label_names,
                "sentiments": self.sentiment_names, "past_window": cfg.win_p, "dataset": self.settings.get("dataset"),
                "needs_timing": "timing" in cfg.input_dims,
                "features_required": [m for m in cfg.input_dims if m not in ("text", "timing")]}

    def start(self, conversation_id: str | None = None) -> Conversation:
        """A new, empty conversation."""
        return Conversation(conversation_id or uuid.uuid4().hex, GraphStream(self.model),
                            context_turns=int(getattr(self.turn_text_encoder, "context_past", 0)))

    # -- per-turn features -------------------------------------------------------------------
    def _turn_features(self, conv: Conversation, text: str, speaker: str, features: dict | None,
                       start: float | None, end: float | None) -> dict[str, torch.Tensor]:
        given = dict(features or {})
        unknown = sorted(set(given) - set(self.modalities))
        if unknown:
            raise TurnError(f"features: unknown modality {unknown}; the model uses {self.modalities}")
        out: dict[str, np.ndarray] = {}
        for m, dim in self.model.cfg.input_dims.items():
            if m in given:
                try:
                    x = np.asarray(given[m], dtype=np.float32).reshape(-1)
                except (TypeError, ValueError):
                    raise TurnError(f"features.{m}: expected a list of {dim} numbers") from None
            elif m == "text":
                x = self._text(conv, text, speaker)
            elif m == "timing":
                x = self._timing(conv, text, start, end)
            else:
                raise TurnError(f"features.{m}: the model uses '{m}' features; expected a list of {dim} numbers")
            if x.shape != (dim,):
                raise TurnError(f"features.{m}: expected {dim} numbers, got {x.size}")
            if not np.isfinite(x).all():
                raise TurnError(f"features.{m}: expected finite numbers (no NaN or infinity)")
            out[m] = x
        feats = {m: torch.from_numpy(x) for m, x in out.items()}
        for m, st in self.stats.items():               # the training dialogues' statistics
            if m in feats:
                feats[m] = (feats[m] - st["mean"].reshape(-1)) / st["std"].reshape(-1)
        return {m: v.to(self.device) for m, v in feats.items()}

    def _text(self, conv: Conversation, text: str, speaker: str) -> np.ndarray:
        if _text_source(self.settings) == "hash":
            return hash_featurize([text], int(self.settings.get("hash_dim", 256)))[0]
        if self.turn_text_encoder is None:
            raise TurnError("features.text: the model's text features came from its dataset file; give them in "
                            "features.text or load the predictor with text_encoder=")
        return np.asarray(self.turn_text_encoder(list(conv.texts) + [text], list(conv.speakers) + [speaker]),
                          dtype=np.float32)

    def _timing(self, conv: Conversation, text: str, start: float | None, end: float | None) -> np.ndarray:
        if start is None or end is None:
            raise TurnError("start, end: the model uses timing; expected both, in seconds")
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise TurnError(f"start, end: expected numbers of seconds, got {start!r} and {end!r}") from None
        if not (np.isfinite(start) and np.isfinite(end)) or end < start:
            raise TurnError(f"start, end: expected finite seconds with end >= start, got {start} and {end}")
        if conv.last_end is not None:   # this turn's row after the previous one: gap / overlap read its end only
            prev = conv.last_end
            x = timing_features(np.array([prev, start]), np.array([prev, end]), ["", text])[-1]
        else:
            x = timing_features(np.array([start]), np.array([end]), [text])[0]
        if self.settings.get("timing_transform", "log1p") == "log1p":
            x = np.log1p(x)
        return x

    # -- the turn --------------------------------------------------------------------------
    def push(self, conversation: Conversation, text: str, speaker: str, features: dict | None = None,
             start: float | None = None, end: float | None = None) -> dict:
        """Add one turn to ``conversation`` and return its prediction (also appended to ``history``).

        A turn that raises :class:`TurnError` leaves the conversation as it was."""
        if not isinstance(text, str) or not text.strip():
            raise TurnError("text: expected a non-empty string")
        if speaker is None or not str(speaker).strip():
            raise TurnError("speaker: expected a non-empty string (who says the turn)")
        speaker = str(speaker)
        with conversation.lock, self._lock:
            feats = self._turn_features(conversation, text, speaker, features, start, end)
            out = conversation.stream.step(feats)
            pe = torch.softmax(out.emotion_logits.float(), -1).cpu().numpy()
            ps = torch.softmax(out.sentiment_logits.float(), -1).cpu().numpy()
            row = {"conversation_id": conversation.conversation_id, "turn": len(conversation.history),
                   "speaker": speaker, "emotion": self.label_names[int(pe.argmax())],
                   "sentiment": self.sentiment_names[int(ps.argmax())],
                   "emotion_probabilities": {n: float(pe[k]) for k, n in enumerate(self.label_names)},
                   "sentiment_probabilities": {n: float(ps[k]) for k, n in enumerate(self.sentiment_names)}}
            conversation.texts.append(text)
            conversation.speakers.append(speaker)
            if end is not None:
                conversation.last_end = float(end)
            conversation.history.append(row)
            conversation.last_used = time.monotonic()
        return row
