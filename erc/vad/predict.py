"""``cli.py predict``: every head of a fine-tuned model for texts (V/A/D on the original scale, emotion and
sentiment classes), keyed by utterance id."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from erc.core.config import ConfigError
from erc.core.errors import ErcError
from erc.core.io import check_safetensors, check_writable, read_json, write_csv
from erc.core.logs import setup_logging
from erc.data.context import dialogue_order
from erc.data.registry import VAD_NAMES
from erc.encoders.hf import EncoderLoadError
from erc.vad.data import read_prediction_input
from erc.vad.model import VADRegressor

logger = logging.getLogger(__name__)


def check_model_folder(model_dir: str | Path, what: str = "field 'model_dir'") -> Path:
    """A model folder exists and its JSON and safetensors files are whole; a damaged one is named.

    Catches a truncated ``model.safetensors`` / ``vad_head.safetensors`` or a cut
    ``config.json`` before a loader fails on it with a message that names no file.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: {path}: no such folder (expected a model folder, e.g. the "
                                "best_model/ of a finetune run)")
    for f in sorted(path.glob("*.safetensors")):
        check_safetensors(f)
    for f in sorted(path.glob("*.json")):
        read_json(f)
    return path


def load_vad_model(model_dir: str | Path):
    """:meth:`VADRegressor.from_pretrained` with every failure reported as an error naming the folder or file."""
    path = check_model_folder(model_dir)
    try:
        return VADRegressor.from_pretrained(path)
    except (ConfigError, ErcError):
        raise
    except Exception as exc:  # a damaged folder: the loaders' own errors do not say which
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise EncoderLoadError(f"{path}: cannot load the V/A/D model folder ({type(exc).__name__}: {detail})"
                               ) from exc


def run_predict(cfg) -> dict:
    setup_logging(True)
    if not cfg.input:
        raise ConfigError("field 'input': give --input (a CSV of texts, a .txt file or an IEMOCAP root)")
    check_writable(cfg.output, "field 'output':")          # before reading, loading and predicting
    df = read_prediction_input(cfg.input, text_column=cfg.data.text_column, id_column=cfg.data.id_column,
                               dialogue_column=cfg.data.dialogue_column)
    model = load_vad_model(cfg.model_dir)
    kw = {}
    if model.uses_context and "dialogue_id" in df.columns:   # read each turn with its dialogue, as in training
        order = dialogue_order(df)
        rows_in_order = df.iloc[order]
        kw = dict(dialogue_ids=rows_in_order["dialogue_id"].astype(str).tolist(),
                  speakers=rows_in_order["speaker"].tolist() if "speaker" in df.columns else None)
        sorted_out = model.predict_heads(rows_in_order["text"].tolist(), batch_size=cfg.batch_size, progress=True,
                                         **kw)
        out = {}
        for head, values in sorted_out.items():
            out[head] = np.empty_like(values)
            out[head][order] = values
    else:
        out = model.predict_heads(df["text"].tolist(), batch_size=cfg.batch_size, progress=True)
    rows, columns = prediction_rows(model, df["utterance_id"].tolist(), out)
    write_csv(cfg.output, rows, columns)
    logger.info("wrote %d predictions to %s (%s)", len(rows), cfg.output, ", ".join(out))
    return {"output": str(Path(cfg.output)), "n": len(rows), "heads": list(out)}


def prediction_rows(model, utterance_ids, out: dict[str, np.ndarray]) -> tuple[list[dict], list[str]]:
    """One row per utterance: V/A/D (one column per dimension), then each classification head's predicted
    class (``emotion`` / ``sentiment``) and its probability (``emotion_prob`` ...)."""
    columns = ["utterance_id"]
    if "vad" in out:
        columns += list(VAD_NAMES)
    for head in ("emotion", "sentiment"):
        if head in out:
            columns += [head, f"{head}_prob"]
    rows = []
    for i, uid in enumerate(utterance_ids):
        r = {"utterance_id": uid}
        if "vad" in out:
            r.update({d: float(out["vad"][i, j]) for j, d in enumerate(VAD_NAMES)})
        for head in ("emotion", "sentiment"):
            if head in out:
                labels = model.config.emotion_labels if head == "emotion" else model.config.sentiment_labels
                k = int(out[head][i].argmax())
                r.update({head: labels[k], f"{head}_prob": float(out[head][i, k])})
        rows.append(r)
    return rows, columns
