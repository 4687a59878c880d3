"""``predict-hrg``: emotion and sentiment per utterance with a saved HRG-SSA model.

Dialogues are read by the data layer with the training run's data settings (saved in
``best_model/config.yaml``), optionally pointed at another file of the same dataset;
non-text features are normalised with the statistics of the TRAINING dialogues (saved
with the model). History labels are the model's own predictions of the earlier turns
(default); ``--history-labels gold`` leaks gold labels, and every row written says so. Metrics of the
labelled utterances of each split go to ``<output>.metrics.json``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from erc.core.config import ConfigError, config_from_dict, load_yaml
from erc.core.harness import start_local
from erc.core.io import write_csv, write_json
from erc.data.dialogues import apply_normalization, load_splits
from erc.hrg.config import LEAK_NOTE, HRGTrainConfig, PredictHRGConfig
from erc.hrg.data import HRGDataset, make_hrg_loader
from erc.hrg.model import HRGModel, load_hrg_model
from erc.hrg.train import EvalResult, evaluate, prediction_rows

logger = logging.getLogger(__name__)


def load_prediction_dialogues(cfg: PredictHRGConfig, meta: dict, train_cfg: dict):
    """``[(split, [Dialogue])]`` to predict, normalised with the training statistics."""
    values = dict(train_cfg)
    data = dict(values.get("data") or {})
    if cfg.dataset is not None:
        data.update(dataset=cfg.dataset, path=None)
    if cfg.path is not None:
        data["path"] = cfg.path
    values["data"] = data
    tcfg = config_from_dict(HRGTrainConfig, values, f"{cfg.model_dir}/config.yaml")
    dcfg = tcfg.data_config()
    dcfg.normalize = []                               # the training statistics are applied instead
    splits = load_splits(dcfg)
    stats = {m: {k: np.asarray(v, dtype=np.float32) for k, v in st.items()}
             for m, st in (meta.get("normalization") or {}).items()}
    expected = meta["model"]["input_dims"]
    got = {m: int(splits.dims.get(m, -1)) for m in expected}
    bad = {m: (got[m], d) for m, d in expected.items() if got[m] != d}
    if bad:
        raise ConfigError(f"{dcfg.path or dcfg.dataset}: feature dims {bad} (got, expected by the model in "
                          f"{cfg.model_dir}) do not match")
    out = []
    for name in cfg.splits:
        dlgs = splits.split(name)
        apply_normalization(dlgs, stats)
        out.append((name, dlgs))
    return out


def predict_dialogues(model: HRGModel, dialogues, history: str = "predicted", batch_size: int = 8) -> EvalResult:
    """Scores of every utterance of ``dialogues`` (one process)."""
    ds = HRGDataset(dialogues, model.info.tokenizer, model.cfg.max_length)
    loader = make_hrg_loader(ds, model.info.pad_id, batch_size)
    return evaluate(model, loader, None, len(dialogues), history)


def run_predict_hrg(cfg: PredictHRGConfig) -> Path:
    cfg.validate()
    start_local(cfg, None)                 # logging and the one thread rule
    model, meta = load_hrg_model(cfg.model_dir)
    train_cfg = load_yaml(Path(cfg.model_dir) / "config.yaml")
    if cfg.history_labels == "gold":
        logger.warning(LEAK_NOTE)
    rows, metrics = [], {}
    for split, dlgs in load_prediction_dialogues(cfg, meta, train_cfg):
        res = predict_dialogues(model, dlgs, cfg.history_labels, cfg.batch_size)
        uids = {d.dialogue_id: list(d.utterance_ids or []) for d in dlgs}
        rows += [{"split": split, **r} for r in prediction_rows(res, model.cfg.label_names,
                                                                model.cfg.sentiment_names, cfg.history_labels, uids)]
        if (res.labels >= 0).any():
            m = res.metrics(model.cfg.label_names, model.cfg.sentiment_names)
            metrics[split] = m
            print(f"{split}: {int((res.labels >= 0).sum())} labelled utterances, accuracy {m['accuracy']:.4f}, "
                  f"weighted F1 {m['weighted_f1']:.4f}, ECE {m['ece']:.4f}")
    write_csv(cfg.output, rows)
    write_json(str(cfg.output) + ".metrics.json", {
        "model_dir": cfg.model_dir, "history_labels": cfg.history_labels,
        "label_leak": cfg.history_labels == "gold",
        **({"warning": LEAK_NOTE} if cfg.history_labels == "gold" else {}), "metrics": metrics})
    print(f"wrote {cfg.output}: {len(rows)} utterances, history labels {cfg.history_labels}"
          + (f" [{LEAK_NOTE}]" if cfg.history_labels == "gold" else ""))
    return Path(cfg.output)
