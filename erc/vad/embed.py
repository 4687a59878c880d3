"""``cli.py embed``: encode every utterance of a dataset with the VAD stage's encoder.

Keys: the dataset's utterance ids where it has them, always (dialogue id,
position) as well, so COSMIC pickles (no utterance ids) are embeddable too.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from erc.core.config import ConfigError, save_config
from erc.core.errors import ErcError
from erc.core.io import check_writable
from erc.core.harness import start_local
from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from erc.data.text import write_embeddings
from erc.data.validate import DataValidationError
from erc.encoders.hf import EncoderLoadError, encode_texts, load_encoder
from erc.vad.config import EmbedConfig
from erc.vad.model import is_vad_model_dir
from erc.vad.predict import check_model_folder, load_vad_model

logger = logging.getLogger(__name__)


def encoder_fn(model: str, pooling: str, batch_size: int):
    """``texts -> (n, d)`` from a fine-tuned VADRegressor folder or any encoder erc.encoders.hf can load."""
    if Path(model).is_dir() and is_vad_model_dir(model):
        reg = load_vad_model(model)
        return lambda texts: reg.embed(texts, batch_size=batch_size)
    if Path(model).is_dir():
        check_model_folder(model, "field 'model'")
    try:
        enc, tok = load_encoder(model)
    except (ConfigError, ErcError):
        raise
    except Exception as exc:  # a damaged local folder: transformers' errors do not always name the file
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise EncoderLoadError(f"field 'model': {model}: cannot load the encoder ({type(exc).__name__}: "
                               f"{detail})") from exc
    return lambda texts: encode_texts(enc, tok, texts, pooling=pooling, batch_size=batch_size)


def run_embed(cfg: EmbedConfig) -> Path:
    start_local(cfg, None)                      # logging, the one thread rule
    check_writable(cfg.output, "field 'output':")          # the file itself, before reading and encoding
    spec = get_spec(cfg.dataset)
    corpus = read_corpus(spec, cfg.path, synthetic_dialogues=cfg.synthetic_dialogues,
                         synthetic_seed=cfg.synthetic_seed)
    dlgs = list(corpus.dialogues.values())
    if any(d.texts is None for d in dlgs):
        raise DataValidationError(f"{corpus.source}: dataset {spec.name!r} has no transcripts to embed")
    texts = [t for d in dlgs for t in d.texts]
    dialogue_ids = [d.dialogue_id for d in dlgs for _ in range(len(d))]
    positions = [i for d in dlgs for i in range(len(d))]
    has_ids = all(d.utterance_ids is not None for d in dlgs)
    uids = [u for d in dlgs for u in d.utterance_ids] if has_ids else None
    logger.info("embedding %d utterances of %d dialogues (%s) with %s", len(texts), len(dlgs), spec.name, cfg.model)

    encode = encoder_fn(cfg.model, cfg.pooling, cfg.batch_size)
    chunk = max(cfg.batch_size, 16 * cfg.batch_size)
    parts = [np.asarray(encode(texts[i:i + chunk]), dtype=np.float32)
             for i in tqdm(range(0, len(texts), chunk), desc="embed", unit="chunk")]
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    out = write_embeddings(cfg.output, emb, dialogue_ids, positions, uids, model=cfg.model)
    save_config(cfg, Path(str(out) + ".config.yaml"))
    print(f"wrote {out}: {emb.shape[0]} utterances x {emb.shape[1]} dims "
          f"(keys: {'utterance_id and ' if has_ids else ''}dialogue_id+position)")
    return out
