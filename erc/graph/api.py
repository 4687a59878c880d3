"""Python API of the graph stage, beside ``erc predict-graph``: :class:`GraphPredictor`.

    from erc.graph.api import GraphPredictor
    predictor = GraphPredictor.from_pretrained("runs/quickstart/train_graph/seed_0/best_model")
    predictor.predict([{
        "texts": ["I can't believe it!", "What happened?"],
        "speakers": ["F", "M"],
        "features": {"audio": audio_rows, "visual": visual_rows},   # (n, d) arrays, as at training
        # "start": [0.0, 2.1], "end": [1.9, 3.0],                   # seconds, when the model uses timing
    }])
    # [[{"dialogue_id": "dialogue_0", "position": 0, "emotion": "ang", "sentiment": "negative",
    #    "p_hap": ..., ..., "p_sentiment_negative": ...}, ...]]

Each dialogue gives its texts and speakers, and the features of every other modality the model
was trained with. Text features are computed the way the training run computed them: the
hashed bag of words (``text_source: hash``), or the encoder that wrote the run's embeddings
file (``erc embed``: a fine-tuned V/A/D folder or any encoder), unless ``text_encoder`` (a
function ``texts -> (n, d) array``) or ``features["text"]`` is given. ``timing`` comes from
``start`` / ``end``. Features are normalised with the statistics of the training dialogues
saved with the model, then :func:`erc.graph.predict.predict_dialogues` runs the model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from erc.core.config import ConfigError, load_yaml
from erc.data.batch import Dialogue
from erc.data.dialogues import apply_normalization
from erc.data.registry import get_spec
from erc.data.text import hash_featurize, read_embeddings
from erc.data.timing import timing_features
from erc.encoders.hf import encode_texts, load_encoder
from erc.graph.model import GraphSmile, load_graph_model
from erc.graph.quantize import maybe_quantize
from erc.graph.predict import predict_dialogues

TextEncoder = Callable[[list[str]], np.ndarray]


def _flat(tree: dict) -> dict:
    """Leaf fields of a (possibly nested, ``data:`` / ``cmerc:`` sections) run config, by leaf name."""
    out: dict = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            for kk, vv in _flat(v).items():
                out.setdefault(kk, vv)
        else:
            out.setdefault(k, v)
    return out


def embedding_encoder(embeddings_file: str | Path, batch_size: int = 32) -> TextEncoder:
    """The encoder that wrote ``embeddings_file`` (``erc embed``), with the same pooling.

    A fine-tuned V/A/D folder embeds with its own pooling and length (as ``erc embed`` does);
    any other encoder with the pooling recorded in ``<file>.config.yaml``.
    """
    table = read_embeddings(embeddings_file)
    record = Path(str(embeddings_file) + ".config.yaml")
    embed_cfg = load_yaml(record) if record.is_file() else {}
    model = table.model or embed_cfg.get("model", "")
    if not model:
        raise ConfigError(f"{embeddings_file}: records no encoder; pass text_encoder= (texts -> array)")
    pooling, max_length = embed_cfg.get("pooling", "mean"), 128
    folder_cfg = Path(model) / "config.json"
    if folder_cfg.is_file():
        declared = json.loads(folder_cfg.read_text(encoding="utf-8"))
        if "pooling" in declared:                      # a V/A/D folder: its encoder, its pooling
            pooling, max_length = declared["pooling"], int(declared.get("max_seq_length", max_length))
    encoder, tokenizer = load_encoder(model)
    return lambda texts: encode_texts(encoder, tokenizer, texts, pooling=pooling, batch_size=batch_size,
                                      max_length=max_length)


class GraphPredictor:
    """Per-utterance emotion and sentiment for whole dialogues with a model saved by ``erc train-graph``."""

    def __init__(self, model: GraphSmile, meta: dict, train_cfg: dict, text_encoder: TextEncoder | None = None,
                 batch_size: int = 32):
        self.model = model.eval()
        self.meta = meta
        self.settings = _flat(train_cfg)
        self.text_encoder = text_encoder
        self.batch_size = int(batch_size)
        self.stats = {m: {k: np.asarray(v, dtype=np.float32) for k, v in st.items()}
                      for m, st in (meta.get("normalization") or {}).items()}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, text_encoder: TextEncoder | None = None,
                        batch_size: int = 32, quantize: str = "none") -> "GraphPredictor":
        """Load ``model_dir`` (a ``best_model/`` folder: weights, model config, the run's config.yaml).

        ``quantize="int8"``: run the model's dense products in int8 on the CPU (:mod:`erc.graph.quantize`).
        """
        model_dir = Path(model_dir)
        model, meta = load_graph_model(model_dir)
        model = maybe_quantize(model, quantize)
        cfg_path = model_dir / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"{cfg_path}: missing; a graph model folder keeps the run's config.yaml beside "
                              "its weights (how its features were made)")
        train_cfg = load_yaml(cfg_path)
        if text_encoder is None and "text" in model.cfg.modalities and _text_source(_flat(train_cfg)) == "embeddings":
            text_encoder = embedding_encoder(_flat(train_cfg)["text_embeddings"], batch_size)
        return cls(model, meta, train_cfg, text_encoder, batch_size)

    @property
    def modalities(self) -> list[str]:
        return self.model.cfg.modalities

    def _features(self, d: dict, where: str) -> dict[str, np.ndarray]:
        texts = [str(t) for t in d["texts"]]
        given = dict(d.get("features") or {})
        out: dict[str, np.ndarray] = {}
        for m, dim in self.model.cfg.input_dims.items():
            if m in given:
                x = np.asarray(given[m], dtype=np.float32)
            elif m == "text":
                x = self._text(texts, where)
            elif m == "timing":
                if d.get("start") is None or d.get("end") is None:
                    raise ConfigError(f"{where}: the model uses timing; give 'start' and 'end' (seconds) per utterance")
                x = timing_features(np.asarray(d["start"]), np.asarray(d["end"]), texts)
                if self.settings.get("timing_transform", "log1p") == "log1p":
                    x = np.log1p(x)
            else:
                raise ConfigError(f"{where}: the model uses '{m}' features ({dim} per utterance); give them "
                                  f"in features['{m}']")
            if x.shape != (len(texts), dim):
                raise ConfigError(f"{where}: features['{m}'] has shape {x.shape}; expected ({len(texts)}, {dim})")
            out[m] = np.ascontiguousarray(x, dtype=np.float32)
        return out

    def _text(self, texts: list[str], where: str) -> np.ndarray:
        source = _text_source(self.settings)
        if source == "hash":
            return hash_featurize(texts, int(self.settings.get("hash_dim", 256)))
        if self.text_encoder is not None:
            return np.asarray(self.text_encoder(texts), dtype=np.float32)
        raise ConfigError(f"{where}: the model's text features came from the dataset file ({source}); give them "
                          "in features['text'] or pass text_encoder=")

    def dialogues(self, dialogues: Sequence[dict]) -> list[Dialogue]:
        """The input dicts as normalised :class:`~erc.data.batch.Dialogue` objects (no labels)."""
        out = []
        for i, d in enumerate(dialogues):
            where = f"dialogue {i}"
            if "texts" not in d or "speakers" not in d:
                raise ConfigError(f"{where}: expected keys 'texts' and 'speakers' (one per utterance)")
            n = len(d["texts"])
            if len(d["speakers"]) != n or n == 0:
                raise ConfigError(f"{where}: {n} texts and {len(d['speakers'])} speakers; expected as many, > 0")
            seen: dict[str, int] = {}
            speakers = np.array([seen.setdefault(str(s), len(seen)) for s in d["speakers"]], dtype=np.int64)
            out.append(Dialogue(dialogue_id=str(d.get("dialogue_id", f"dialogue_{i}")),
                                features=self._features(d, where), labels=np.full(n, -1, dtype=np.int64),
                                speakers=speakers, utterance_ids=d.get("utterance_ids"),
                                texts=[str(t) for t in d["texts"]]))
        apply_normalization(out, self.stats)
        return out

    def predict(self, dialogues: Sequence[dict], as_frame: bool = False) -> list[list[dict]] | pd.DataFrame:
        """Per dialogue, per utterance: ``emotion``, ``sentiment`` and their probabilities ``p_*``."""
        dlgs = self.dialogues(dialogues)
        rows = predict_dialogues(self.model, dlgs, self.batch_size)
        for r in rows:
            r.pop("label", None)                       # inputs carry no labels
        if as_frame:
            return pd.DataFrame(rows)
        grouped: dict[str, list[dict]] = {d.dialogue_id: [] for d in dlgs}
        for r in rows:
            grouped[r["dialogue_id"]].append(r)
        return [sorted(grouped[d.dialogue_id], key=lambda r: r["position"]) for d in dlgs]


def _text_source(settings: dict) -> str:
    """``text_source`` of the run, with ``auto`` resolved as erc.data.dialogues.build_text resolves it."""
    source = settings.get("text_source", "auto")
    if source == "auto":
        if settings.get("text_embeddings"):
            return "embeddings"
        return "file" if get_spec(settings.get("dataset", "synthetic")).text_layers else "hash"
    return source
