"""``cli.py predict``: V/A/D on the original scale for texts, keyed by utterance id."""
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
    if model.uses_context and "dialogue_id" in df.columns:   # read each turn with its dialogue, as in training
        order = dialogue_order(df)
        rows_in_order = df.iloc[order]
        sorted_pred = model.predict(rows_in_order["text"].tolist(), batch_size=cfg.batch_size, progress=True,
                                    dialogue_ids=rows_in_order["dialogue_id"].astype(str).tolist(),
                                    speakers=rows_in_order["speaker"].tolist() if "speaker" in df.columns else None)
        pred = np.empty_like(sorted_pred)
        pred[order] = sorted_pred
    else:
        pred = model.predict(df["text"].tolist(), batch_size=cfg.batch_size, progress=True)
    rows = [{"utterance_id": uid, **{d: float(p[j]) for j, d in enumerate(VAD_NAMES)}}
            for uid, p in zip(df["utterance_id"], pred)]
    write_csv(cfg.output, rows, ["utterance_id", *VAD_NAMES])
    logger.info("wrote %d predictions to %s", len(rows), cfg.output)
    return {"output": str(Path(cfg.output)), "n": len(rows)}
