"""``cli.py predict``: V/A/D on the original scale for texts, keyed by utterance id."""
from __future__ import annotations

import logging
from pathlib import Path

from erc.core.io import write_csv

logger = logging.getLogger(__name__)


def run_predict(cfg) -> dict:
    from erc.core.logs import setup_logging
    from erc.vad.data import read_prediction_input
    from erc.vad.model import VAD_NAMES, VADRegressor

    setup_logging(True)
    if not cfg.input:
        from erc.core.config import ConfigError
        raise ConfigError("field 'input': give --input (a CSV of texts, a .txt file or an IEMOCAP root)")
    df = read_prediction_input(cfg.input, text_column=cfg.data.text_column, id_column=cfg.data.id_column)
    model = VADRegressor.from_pretrained(cfg.model_dir)
    pred = model.predict(df["text"].tolist(), batch_size=cfg.batch_size, progress=True)
    rows = [{"utterance_id": uid, **{d: float(p[j]) for j, d in enumerate(VAD_NAMES)}}
            for uid, p in zip(df["utterance_id"], pred)]
    write_csv(cfg.output, rows, ["utterance_id", *VAD_NAMES])
    logger.info("wrote %d predictions to %s", len(rows), cfg.output)
    return {"output": str(Path(cfg.output)), "n": len(rows)}
