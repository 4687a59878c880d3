"""``cli.py embed``: encode every utterance of a dataset with the VAD stage's encoder.

Keys: the dataset's utterance ids where it has them, always (dialogue id,
position) as well, so COSMIC pickles (no utterance ids) are embeddable too.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from erc.data.text import write_embeddings
from erc.vad.config import EmbedConfig

logger = logging.getLogger(__name__)


def encoder_fn(model: str, pooling: str, batch_size: int):
    """``texts -> (n, d)`` from a fine-tuned VADRegressor folder or any encoder erc.encoders.hf can load."""
    from erc.encoders.hf import encode_texts, load_encoder
    from erc.vad.model import VADRegressor, is_vad_model_dir

    if Path(model).is_dir() and is_vad_model_dir(model):
        reg = VADRegressor.from_pretrained(model)
        return lambda texts: reg.embed(texts, batch_size=batch_size)
    enc, tok = load_encoder(model)
    return lambda texts: encode_texts(enc, tok, texts, pooling=pooling, batch_size=batch_size)


def run_embed(cfg: EmbedConfig) -> Path:
    from erc.core.config import save_config
    from erc.core.harness import start_local

    start_local(cfg, Path(cfg.output).parent)   # logging, the one thread rule, output folder writable
    spec = get_spec(cfg.dataset)
    corpus = read_corpus(spec, cfg.path, synthetic_dialogues=cfg.synthetic_dialogues,
                         synthetic_seed=cfg.synthetic_seed)
    dlgs = list(corpus.dialogues.values())
    if any(d.texts is None for d in dlgs):
        raise ValueError(f"{corpus.source}: dataset {spec.name!r} has no transcripts to embed")
    texts = [t for d in dlgs for t in d.texts]
    dialogue_ids = [d.dialogue_id for d in dlgs for _ in range(len(d))]
    positions = [i for d in dlgs for i in range(len(d))]
    has_ids = all(d.utterance_ids is not None for d in dlgs)
    uids = [u for d in dlgs for u in d.utterance_ids] if has_ids else None
    logger.info("embedding %d utterances of %d dialogues (%s) with %s", len(texts), len(dlgs), spec.name, cfg.model)
    from tqdm.auto import tqdm

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
