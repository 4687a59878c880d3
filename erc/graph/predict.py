"""``predict-graph``: per-utterance emotion, sentiment and class probabilities from a saved model.

The dialogues are read by the fusion stage with the training run's data
settings (saved in ``best_model/config.yaml``), optionally pointed at another
file of a supported dataset; features are normalised with the statistics
fitted on the TRAINING dialogues of the training run (saved with the model).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from erc.core.config import ConfigError, config_from_dict, load_yaml
from erc.core.io import check_writable, write_csv
from erc.core.logs import setup_logging
from erc.data.config import DialogueDataConfig
from erc.data.dialogues import apply_normalization, load_splits, make_loader
from erc.graph.config import PredictGraphConfig
from erc.graph.infer import run_inference
from erc.graph.model import load_graph_model
from erc.graph.quantize import maybe_quantize

logger = logging.getLogger(__name__)


def load_prediction_dialogues(cfg: PredictGraphConfig, meta: dict, train_cfg: dict):
    """The dialogues to predict, as ``[(split, [Dialogue])]``, normalised like training."""
    values = dict(train_cfg.get("data") or {})     # the training run's data section
    if cfg.dataset is not None:
        values["dataset"] = cfg.dataset
        values["path"] = None
    if cfg.path is not None:
        values["path"] = cfg.path
    if cfg.text_embeddings is not None:
        values["text_embeddings"] = cfg.text_embeddings
    values["normalize"] = []                      # apply the training statistics instead
    source = f"{cfg.model_dir}/config.yaml, section 'data'"
    splits = load_splits(config_from_dict(DialogueDataConfig, values, source))
    stats = {m: {k: np.asarray(v, dtype=np.float32) for k, v in st.items()}
             for m, st in (meta.get("normalization") or {}).items()}
    out = []
    for name in cfg.splits:
        dlgs = splits.split(name)
        apply_normalization(dlgs, stats)
        out.append((name, dlgs))
    expected = meta["model"]["input_dims"]
    got = {m: int(splits.dims.get(m, -1)) for m in expected}
    bad = {m: (got[m], d) for m, d in expected.items() if got[m] != d}
    if bad:
        raise ConfigError(f"{values.get('path') or values['dataset']}: feature dims {bad} (got, expected by "
                          f"the model in {cfg.model_dir}) do not match")
    return out


def predict_dialogues(model, dialogues, batch_size: int = 32) -> list[dict]:
    """Rows ``dialogue_id, position, utterance_id, emotion, sentiment, p_<label>...`` for ``dialogues``."""
    if not dialogues:
        return []
    label_names = model.cfg.label_names or [str(k) for k in range(model.cfg.num_classes)]
    sent_names = model.cfg.sentiment_names or [str(k) for k in range(model.cfg.num_sentiments)]
    res = run_inference(model, make_loader(dialogues, batch_size))
    rows = []
    for u in range(len(res.labels)):
        d = dialogues[int(res.dialogue_index[u])]
        pos = int(res.position[u])
        pe, ps = res.emotion_probs[u], res.sentiment_probs[u]
        row = {"dialogue_id": d.dialogue_id, "position": pos,
               "utterance_id": d.utterance_ids[pos] if d.utterance_ids else "",
               "label": int(res.labels[u]), "emotion": label_names[int(pe.argmax())],
               "sentiment": sent_names[int(ps.argmax())]}
        row.update({f"p_{n}": float(pe[k]) for k, n in enumerate(label_names)})
        row.update({f"p_sentiment_{n}": float(ps[k]) for k, n in enumerate(sent_names)})
        rows.append(row)
    return rows


def run_predict_graph(cfg: PredictGraphConfig) -> Path:
    setup_logging(True)
    cfg.validate()
    check_writable(cfg.output, "field 'output':")          # before loading and predicting
    model, meta = load_graph_model(cfg.model_dir)
    model = maybe_quantize(model, cfg.quantize)
    cfg_path = Path(cfg.model_dir) / "config.yaml"
    train_cfg = load_yaml(cfg_path)
    rows = []
    for split, dlgs in load_prediction_dialogues(cfg, meta, train_cfg):
        for r in predict_dialogues(model, dlgs, cfg.batch_size):
            rows.append({"split": split, **r})
    write_csv(cfg.output, rows)
    print(f"wrote {cfg.output}: {len(rows)} utterances")
    return Path(cfg.output)
