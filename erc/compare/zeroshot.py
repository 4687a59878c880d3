"""Zero-shot V/A/D predictors: no V/A/D or emotion label is used anywhere in this module.

**Anchor projection.** For each dimension ``d`` the anchor file lists phrases
for the high and the low pole. Each pole is represented by the mean of its
phrases' L2-normalised embeddings. An utterance ``u`` (embedding ``e``) scores

    s_d(u) = cos(e, mu_high_d) - cos(e, mu_low_d)          in [-2, 2]

and the score is mapped onto the scale ``[lo, hi]`` by a fixed monotone map

    v_d(u) = lo + (hi - lo) * sigmoid(s_d(u) / T)

with a fixed temperature ``T`` (a config value, never fitted): ``s = 0``
(equally close to both poles) gives the midpoint.

**NLI zero-shot.** ``transformers.pipeline("zero-shot-classification")`` scores
every pole phrase of a dimension as a hypothesis; with single-label softmax the
probabilities of all phrases sum to one and ``p_high`` is the mass on the high
pole's phrases. The value is ``lo + (hi - lo) * p_high`` (the same monotone
map from a number in [0, 1], with no temperature since ``p_high`` already is one).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import yaml
from transformers import pipeline

from erc.core.config import ConfigError
from erc.core.paths import PROJECT_ROOT
from erc.data.registry import VAD_NAMES

logger = logging.getLogger(__name__)

POLES = ("high", "low")
EmbedFn = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Anchors:
    """Descriptor phrases: ``phrases[dimension][pole]`` is a tuple of strings."""

    phrases: dict

    def pole(self, dim: str, pole: str) -> tuple[str, ...]:
        return tuple(self.phrases[dim][pole])


def load_anchors(path: str | Path) -> Anchors:
    """Read ``{valence,arousal,dominance}: {high: [...], low: [...]}`` and check its shape.

    A relative ``path`` is read from the working directory, else from the project root (where the
    default ``configs/vad_anchors.yaml`` ships), so a run started elsewhere still finds it."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (PROJECT_ROOT / path).is_file():
        path = PROJECT_ROOT / path
    if not path.is_file():
        raise ConfigError(f"anchor file {path} does not exist (relative paths: from the working directory "
                          f"or {PROJECT_ROOT})")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {list(VAD_NAMES)}")
    phrases = {}
    for dim in VAD_NAMES:
        entry = data.get(dim)
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: field '{dim}' missing or not a mapping; expected "
                              f"'{dim}: {{high: [phrases], low: [phrases]}}'")
        phrases[dim] = {}
        for pole in POLES:
            items = entry.get(pole)
            if (not isinstance(items, list) or not items
                    or not all(isinstance(s, str) and s.strip() for s in items)):
                raise ConfigError(f"{path}: field '{dim}.{pole}' must be a non-empty list of phrases")
            phrases[dim][pole] = tuple(s.strip() for s in items)
    extra = sorted(set(data) - set(VAD_NAMES))
    if extra:
        raise ConfigError(f"{path}: unknown field(s) {extra}; expected only {list(VAD_NAMES)}")
    return Anchors(phrases)


def fixed_scale_map(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Monotone map of a number in [0, 1] onto [lo, hi]; the same for every run, no labels."""
    return lo + (hi - lo) * np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # numerically stable logistic


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class AnchorProjector:
    """Anchor-projection predictor over any embedding function ``texts -> (n, h)``.

    ``embed`` is called once for the anchor phrases (at construction) and once per
    :meth:`predict`. Pole centroids are the normalised mean of the normalised
    phrase embeddings, so the score is a difference of cosine similarities.
    """

    def __init__(self, embed: EmbedFn, anchors: Anchors, temperature: float = 0.1,
                 scale: tuple[float, float] = (1.0, 5.0)):
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        self.embed, self.anchors, self.temperature, self.scale = embed, anchors, temperature, scale
        phrases = [p for d in VAD_NAMES for pole in POLES for p in anchors.pole(d, pole)]
        emb = _unit(embed(phrases))
        self.centroids = np.zeros((len(VAD_NAMES), 2, emb.shape[1]))  # (dim, pole, hidden)
        i = 0
        for j, d in enumerate(VAD_NAMES):
            for k, pole in enumerate(POLES):
                n = len(anchors.pole(d, pole))
                self.centroids[j, k] = _unit(emb[i:i + n].mean(axis=0))
                i += n

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, 3) raw scores ``cos(e, high) - cos(e, low)`` in [-2, 2]."""
        e = _unit(embeddings)
        cos = np.einsum("nh,dph->ndp", e, self.centroids)  # (n, dim, pole)
        return cos[:, :, 0] - cos[:, :, 1]

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, 3) V/A/D on the scale, from precomputed utterance embeddings."""
        return fixed_scale_map(_sigmoid(self.scores(embeddings) / self.temperature), *self.scale)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.project(self.embed(list(texts)))


class NLIZeroShot:
    """V/A/D from an NLI model through ``pipeline("zero-shot-classification")``."""

    def __init__(self, model: str, anchors: Anchors, hypothesis_template: str = "{}",
                 scale: tuple[float, float] = (1.0, 5.0), batch_size: int = 16, device: int | str = -1):
        self.anchors, self.template, self.scale = anchors, hypothesis_template, scale
        self.batch_size = batch_size
        self.pipe = pipeline("zero-shot-classification", model=model, device=device)

    def pole_probability(self, texts: Sequence[str], dim: str) -> np.ndarray:
        """(n,) probability mass on the high pole's phrases (single-label softmax over all phrases)."""
        high, low = self.anchors.pole(dim, "high"), self.anchors.pole(dim, "low")
        labels = list(dict.fromkeys(high + low))
        out = self.pipe(list(texts), candidate_labels=labels, hypothesis_template=self.template,
                        multi_label=False, batch_size=self.batch_size)
        if isinstance(out, dict):
            out = [out]
        high_set = set(high)
        return np.array([sum(s for lab, s in zip(r["labels"], r["scores"]) if lab in high_set)
                         for r in out], dtype=np.float64)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(VAD_NAMES)))
        cols = [self.pole_probability(texts, d) for d in VAD_NAMES]
        return fixed_scale_map(np.stack(cols, axis=1), *self.scale)
