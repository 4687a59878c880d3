"""``predict-baseline``: per-utterance emotion and class probabilities from a saved baseline.

The dialogues are read with the training run's data settings (``best_model/config.yaml``),
optionally pointed at another file or embeddings file; features are normalised with the statistics
fitted on the TRAINING dialogues (saved with the model).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from erc.baselines.config import PredictBaselineConfig
from erc.baselines.model import load_baseline_model
from erc.baselines.train import evaluate
from erc.core.config import ConfigError, config_from_dict, load_yaml
from erc.core.harness import start_local
from erc.core.io import check_writable, write_csv
from erc.data.config import DialogueDataConfig
from erc.data.dialogues import apply_normalization, load_splits, make_loader

logger = logging.getLogger(__name__)


def load_prediction_dialogues(cfg: PredictBaselineConfig, meta: dict, train_cfg: dict):
    """``[(split, [Dialogue])]`` to predict, normalised with the training statistics."""
    values = dict(train_cfg.get("data") or {})
    if cfg.dataset is not None:
        values.update(dataset=cfg.dataset, path=None)
    if cfg.path is not None:
        values["path"] = cfg.path
    if cfg.text_embeddings is not None:
        values["text_embeddings"] = cfg.text_embeddings
    values["normalize"] = []                       # the training statistics are applied instead
    splits = load_splits(config_from_dict(DialogueDataConfig, values, f"{cfg.model_dir}/config.yaml, section 'data'"))
    want = int(meta["model"]["input_dim"])
    got = int(sum(splits.dims[m] for m in meta["model"]["modalities"]))
    if got != want:
        raise ConfigError(f"{values.get('path') or values.get('dataset')}: {got} input features, the model in "
                          f"{cfg.model_dir} expects {want}")
    stats = {m: {k: np.asarray(v, dtype=np.float32) for k, v in st.items()}
             for m, st in (meta.get("normalization") or {}).items()}
    out = []
    for name in cfg.splits:
        dlgs = splits.split(name)
        apply_normalization(dlgs, stats)
        out.append((name, dlgs))
    return out


def predict_rows(model, dialogues, batch_size: int = 32) -> list[dict]:
    """Rows ``dialogue_id, position, utterance_id, label, pred, emotion, p_<label>...`` for ``dialogues``."""
    if not dialogues:
        return []
    names = model.cfg.label_names or [str(k) for k in range(model.cfg.num_classes)]
    res = evaluate(model, make_loader(dialogues, batch_size), None, len(dialogues))
    rows = res.rows(names)
    uids = {d.dialogue_id: list(d.utterance_ids or []) for d in dialogues}
    for r in rows:
        ids = uids.get(r["dialogue_id"]) or []
        r["utterance_id"] = ids[r["position"]] if r["position"] < len(ids) else ""
        r["emotion"] = names[r["pred"]]
    return rows


def run_predict_baseline(cfg: PredictBaselineConfig) -> Path:
    cfg.validate()
    start_local(cfg, None)                          # logging and the one thread rule
    check_writable(cfg.output, "field 'output':")
    model, meta = load_baseline_model(cfg.model_dir)
    train_cfg = load_yaml(Path(cfg.model_dir) / "config.yaml")
    rows = []
    for split, dlgs in load_prediction_dialogues(cfg, meta, train_cfg):
        rows += [{"split": split, **r} for r in predict_rows(model, dlgs, cfg.batch_size)]
    write_csv(cfg.output, rows)
    print(f"wrote {cfg.output}: {len(rows)} utterances ({meta['model']['method']}, "
          f"{'causal' if meta.get('causal') else 'reads future turns'})")
    return Path(cfg.output)
