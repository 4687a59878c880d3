"""Python API of the V/A/D stage, beside the CLI: :class:`VADPredictor`.

    from erc.vad import VADPredictor
    predict = VADPredictor.from_pretrained("runs/quickstart/finetune/best_model")
    predict(["I can't believe it!", "Fine."])
    # [{'text': "I can't believe it!", 'valence': 2.1, 'arousal': 3.9, 'dominance': 2.7}, ...]
    predict(texts, as_frame=True)     # a pandas DataFrame with the same columns

Values are on the training data's scale (1-5 for IEMOCAP / EmoBank), as ``erc predict`` writes them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from erc.vad.model import VADRegressor


class VADPredictor:
    """V/A/D of texts with a fine-tuned :class:`VADRegressor` (a folder written by ``erc finetune``)."""

    def __init__(self, model: VADRegressor, batch_size: int = 32):
        if model.tokenizer is None:
            raise ValueError("VADPredictor: the model has no tokenizer (load it with VADRegressor.from_pretrained)")
        self.model = model.eval()
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | torch.device | None = None,
                        batch_size: int = 32) -> "VADPredictor":
        """Load ``model_dir`` (this format or the legacy one) onto ``device`` (default: CPU)."""
        return cls(VADRegressor.from_pretrained(model_dir, device=device), batch_size=batch_size)

    @property
    def target_names(self) -> tuple[str, ...]:
        return self.model.target_names

    def predict(self, texts: Sequence[str], dialogue_ids: Sequence | None = None,
                speakers: Sequence | None = None) -> np.ndarray:
        """``(n, 3)`` float32 array of V/A/D in input order.

        ``dialogue_ids`` / ``speakers`` (turns of a dialogue in order): a model trained with dialogue
        context reads each text with its neighbours, as in training.
        """
        return self.model.predict(_as_list(texts), batch_size=self.batch_size, dialogue_ids=dialogue_ids,
                                  speakers=speakers)

    def embed(self, texts: Sequence[str], dialogue_ids: Sequence | None = None,
              speakers: Sequence | None = None) -> np.ndarray:
        """``(n, hidden)`` pooled embeddings of the fine-tuned encoder (the text features of the graph stage)."""
        return self.model.embed(_as_list(texts), batch_size=self.batch_size, dialogue_ids=dialogue_ids,
                                speakers=speakers)

    def __call__(self, texts: str | Sequence[str], as_frame: bool = False, dialogue_ids: Sequence | None = None,
                 speakers: Sequence | None = None) -> dict | list[dict] | pd.DataFrame:
        """One dict per text (``text`` + one float per dimension, and for a model with an emotion / sentiment
        head its class and probability: ``emotion``, ``emotion_prob`` ...); a single string gives one dict.

        ``as_frame=True`` returns a ``pandas.DataFrame`` with the same columns instead.
        ``dialogue_ids`` / ``speakers``: see :meth:`predict`.
        """
        single = isinstance(texts, str)
        items = _as_list(texts)
        if self.model.heads == ("vad",):
            values = self.predict(items, dialogue_ids, speakers)
            rows = [{"text": t, **{d: float(v) for d, v in zip(self.target_names, row)}}
                    for t, row in zip(items, values)]
            columns = ["text", *self.target_names]
        else:          # every head: V/A/D values, then the emotion / sentiment class and its probability
            from erc.vad.predict import prediction_rows

            out = self.model.predict_heads(items, batch_size=self.batch_size, dialogue_ids=dialogue_ids,
                                           speakers=speakers)
            rows, columns = prediction_rows(self.model, items, out)
            for r in rows:
                r["text"] = r.pop("utterance_id")
            columns = ["text", *columns[1:]]
            rows = [{c: r[c] for c in columns} for r in rows]
        if as_frame:
            return pd.DataFrame(rows, columns=columns)
        return rows[0] if single else rows


def _as_list(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    items = list(texts)
    bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts: item {bad[0]} is {type(items[bad[0]]).__name__}; expected str")
    return items
