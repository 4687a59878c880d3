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
from erc.core.io import check_writable, write_json
from erc.core.harness import start_local
from erc.data.context import tokenizer_context_inputs
from erc.data.readers import read_corpus
from erc.data.registry import get_spec
from erc.data.text import write_embeddings
from erc.data.validate import DataValidationError
from erc.encoders.hf import EncoderLoadError, encode_texts, load_encoder
from erc.vad.config import EmbedConfig
from erc.vad.model import is_vad_model_dir
from erc.vad.predict import check_model_folder, load_vad_model

logger = logging.getLogger(__name__)


def encoder_fn(model: str, pooling: str, batch_size: int, context: tuple[int, int] = (0, 0), max_length: int = 128):
    """``(inputs, encode)`` for a fine-tuned VADRegressor folder or any encoder erc.encoders.hf can load.

    ``inputs(texts, dialogue_ids, speakers) -> (texts, context segments)`` builds the encoder inputs
    (a V/A/D folder by the context rule saved with it, a plain encoder by ``context`` = (past, future));
    ``encode(texts, segments) -> (n, d)`` embeds them.
    """
    if Path(model).is_dir() and is_vad_model_dir(model):
        reg = load_vad_model(model)
        saved = (reg.config.context_past, reg.config.context_future)
        if context != (0, 0) and context != saved:
            logger.warning("%s was trained with context %s (past, future); using that, not %s", model, saved, context)
        return reg.inputs, lambda texts, pairs: encode_texts(
            reg.encoder, reg.tokenizer, texts, pooling=reg.pooling, batch_size=batch_size,
            max_length=reg.max_length, pairs=pairs)
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

    def inputs(texts, dialogue_ids, speakers):
        return tokenizer_context_inputs(tok, texts, dialogue_ids, speakers, context[0], context[1], max_length)

    return inputs, lambda texts, pairs: encode_texts(enc, tok, texts, pooling=pooling, batch_size=batch_size,
                                                     max_length=max_length, pairs=pairs)


def _encode(cfg: EmbedConfig, model: str, texts, dialogue_ids, speakers, idx: np.ndarray) -> np.ndarray:
    """Embeddings of the utterances ``idx`` by ``model``. ``idx`` holds whole dialogues (an encoder owns
    dialogues, not turns), so each utterance reads the same context turns as in a single-encoder run."""
    make_inputs, encode = encoder_fn(model, cfg.pooling, cfg.batch_size, (cfg.context_past, cfg.context_future),
                                     cfg.max_length)
    inputs, pairs = make_inputs([texts[i] for i in idx], [dialogue_ids[i] for i in idx],
                                [speakers[i] for i in idx] if speakers is not None else None)
    chunk = max(cfg.batch_size, 16 * cfg.batch_size)
    parts = [np.asarray(encode(inputs[i:i + chunk], pairs[i:i + chunk] if pairs is not None else None),
                        dtype=np.float32)
             for i in tqdm(range(0, len(idx), chunk), desc="embed", unit="chunk")]
    return np.concatenate(parts)


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

    speakers = ([s for d in dlgs for s in d.speakers] if all(getattr(d, "speakers", None) is not None for d in dlgs)
                else None)
    record = None
    if cfg.cross_fit:
        from erc.vad.crossfit import assign_utterances, cross_fit_record, plan_cross_fit

        plans = plan_cross_fit(cfg)
        owner = assign_utterances(plans, dialogue_ids)
        if not (owner < len(plans) - 1).any():
            raise DataValidationError(
                f"{corpus.source}: no dialogue of dataset {spec.name!r} is in the training sessions of {cfg.model}'s "
                "fine-tuning (dialogue ids differ?): cross-fitting would change nothing")
        record = cross_fit_record(cfg, plans, owner, dialogue_ids)
        models = [p.model for p in plans]
    else:
        owner = np.zeros(len(texts), dtype=np.int64)
        models = [cfg.model]
    emb = None
    for i, model in enumerate(models):
        idx = np.flatnonzero(owner == i)
        if len(idx) == 0:
            continue
        logger.info("encoder %s: %d utterances", model, len(idx))
        part = _encode(cfg, model, texts, dialogue_ids, speakers, idx)
        if emb is None:
            emb = np.zeros((len(texts), part.shape[1]), np.float32)
        elif part.shape[1] != emb.shape[1]:
            raise ValueError(f"cross-fit: {model} embeds in {part.shape[1]} dims, the others in {emb.shape[1]}")
        emb[idx] = part
    if emb is None:
        emb = np.zeros((0, 0), np.float32)
    model_note = cfg.model if not cfg.cross_fit else f"{cfg.model} (cross-fit, {cfg.cross_fit} folds)"
    if record is not None:       # before the embeddings: a finished .npz always has its record
        write_json(Path(str(cfg.output) + ".cross_fit.json"), record)
    out = write_embeddings(cfg.output, emb, dialogue_ids, positions, uids, model=model_note)
    save_config(cfg, Path(str(out) + ".config.yaml"))
    if record is not None:
        for e in record["encoders"]:
            held = (f"held out fold {e['held_out_fold']} of the training dialogues" if e.get("held_out_fold") else
                    f"held out sessions {e['held_out_sessions'] or '-'}, trained on {e['train_sessions']}")
            print(f"cross-fit {e['name']}: {e['utterances']} utterances of {e['dialogues']} dialogues ({held})")
    print(f"wrote {out}: {emb.shape[0]} utterances x {emb.shape[1]} dims "
          f"(keys: {'utterance_id and ' if has_ids else ''}dialogue_id+position)")
    return out
