"""``cli.py compare``: zero-shot vs fine-tuned V/A/D, Random Forest emotion from V/A/D, report.

Order of a run: resolve config -> start-up (:func:`erc.core.harness.start_local`: logging,
threads, seed, writable folder, config) -> data -> (fine-tune through the
VAD stage, when asked) -> one *setting* per predictor (zero-shot methods,
fine-tuned folders; gold V/A/D as the ceiling) -> V/A/D metrics on train and test
-> forests per class set and forest seed -> report (md, html, json, figures).

Predictions of each setting are cached in ``output_dir/predictions/`` together
with what produced them; a re-run (or an interrupted one) reuses them unless
``--overwrite-predictions`` is given.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import yaml

from erc.compare.data import encode_labels, load_compare_data, resolve_class_set
from erc.compare.forest import ForestGrid, forest_emotion_metrics, summarise_seeds
from erc.compare.report import write_report
from erc.compare.stage import compare_outputs
from erc.compare.zeroshot import AnchorProjector, NLIZeroShot, load_anchors
from erc.core.config import ConfigError, flag_paths, resolve_config
from erc.core.harness import start_local
from erc.core.io import atomic_write_bytes, read_json, write_csv, write_json
from erc.core.metrics import regression_metrics
from erc.core.runs import read_identity
from erc.data.registry import VAD_NAMES
from erc.data.splits import hold_out_last_session
from erc.encoders.hf import encode_texts, load_encoder
from erc.vad.config import FinetuneConfig
from erc.vad.model import VADRegressor, is_vad_model_dir
from erc.vad.stage import FINETUNE, finetune_outputs
from erc.vad.train import run_finetune

logger = logging.getLogger(__name__)


@dataclass
class Setting:
    """One way of getting V/A/D for every utterance."""

    name: str
    kind: str                       # "zero-shot", "fine-tuned" or "gold"
    uses_labels: bool
    source: str                     # encoder / model folder / "gold annotations"
    pred_train: np.ndarray
    pred_test: np.ndarray
    embeddings_test: np.ndarray | None = None   # encoder embeddings of the t-SNE subsample
    train_log: str | None = None                # fine-tuned runs: path of train_log.csv
    info: dict = field(default_factory=dict)


def _fingerprint(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PredictionCache:
    """``predictions/<name>.npz`` + ``<name>.json`` (what produced them); reused when equal."""

    def __init__(self, root: Path, overwrite: bool):
        self.root, self.overwrite = root, overwrite
        root.mkdir(parents=True, exist_ok=True)

    def load(self, name: str, meta: dict) -> dict | None:
        npz, js = self.root / f"{name}.npz", self.root / f"{name}.json"
        if self.overwrite or not (npz.is_file() and js.is_file()):
            return None
        if read_json(js).get("fingerprint") != _fingerprint(meta):
            logger.info("cached predictions of %s were made with other settings: recomputing", name)
            return None
        with np.load(npz) as z:
            logger.info("reusing cached predictions of %s (%s)", name, npz)
            return {k: z[k] for k in z.files}

    def save(self, name: str, meta: dict, arrays: dict) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{k: v for k, v in arrays.items() if v is not None})
        atomic_write_bytes(self.root / f"{name}.npz", buf.getvalue())
        write_json(self.root / f"{name}.json", {"fingerprint": _fingerprint(meta), "meta": meta})


def _tsne_subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _finetuned_model_dir(path: str) -> tuple[Path, Path | None]:
    """Accept a run dir (with best_model/) or the model folder itself; return (model, run dir)."""
    p = Path(path)
    if is_vad_model_dir(p):
        run_dir = p.parent if finetune_outputs(p.parent)["log"].is_file() else None
        return p, run_dir
    if is_vad_model_dir(finetune_outputs(p)["model"]):
        return finetune_outputs(p)["model"], p
    raise ConfigError(f"field 'finetuned': {path} is neither a VADRegressor folder nor a run "
                      "directory with best_model/ (written by `cli.py finetune`)")


def train_finetuned_models(cfg, out_dir: Path) -> list[str]:
    """Fine-tune one model per seed through the VAD stage; return their run directories.

    A complete run of the same identity (config and inputs) is reused; an interrupted one
    resumes; a folder holding a run of another config is refused by the harness (clear it
    with ``--overwrite``).
    """
    runs = []
    for seed in cfg.finetune_seeds:
        run_dir = out_dir / "finetune" / f"seed_{seed}"
        ft_cfg = resolve_config(FinetuneConfig, finetune_overrides(cfg, seed, run_dir), cfg.finetune_config or None)
        recorded = read_identity(run_dir)
        if FINETUNE.is_complete(ft_cfg) and recorded is not None and \
                recorded.fingerprint == FINETUNE.identity(ft_cfg).fingerprint:
            logger.info("fine-tuned model for seed %d exists at %s (same config and inputs): reusing it",
                        seed, run_dir)
            runs.append(str(run_dir))
            continue
        logger.info("fine-tuning through the VAD stage (seed %d) into %s", seed, run_dir)
        run_finetune(ft_cfg)
        runs.append(str(run_dir))
    return runs


def finetune_overrides(cfg, seed: int, run_dir: Path) -> dict:
    """Fields of the VAD stage's config forced by this comparison (data, encoder, seed, output).

    The fine-tuned model must never see the compare test split, not even for
    model selection: for session data its validation split is the last training
    session, and it trains on the other training sessions.
    """
    names = set(flag_paths(FinetuneConfig))
    # resume auto: an interrupted fine-tune continues from its newest checkpoint (same run identity only)
    o: dict = {"seed": seed, "output_dir": str(run_dir), "num_threads": cfg.num_threads, "resume": "auto",
               "overwrite": cfg.overwrite}
    if cfg.finetune_epochs > 0:
        o["epochs"] = cfg.finetune_epochs
    # same encoder and pooling as the zero-shot rows: the comparison isolates what fine-tuning buys
    o.update(model=cfg.model, pooling=cfg.pooling, max_length=cfg.max_length)
    d = cfg.data
    if d.format in ("synthetic", "iemocap"):
        held = hold_out_last_session(d.train_sessions)   # the last training session validates
        o.update(format=d.format, split="session", train_sessions=held["train"],
                 valid_sessions=held["valid"], test_sessions=list(d.test_sessions))
        if d.format == "iemocap":
            o["path"] = d.path
        else:
            o.update(path="synthetic", synthetic_dialogues=d.synthetic_dialogues, synthetic_seed=cfg.seed)
    else:
        if not d.split_column:
            raise ConfigError("field 'data.split_column': fine-tuning from a table needs a split column "
                              "(train/dev/test) so that the VAD stage's test split is the comparison's")
        o.update(path=d.path, format="table", split="column", split_column=d.split_column,
                 text_column=d.text_column, valence_column=d.valence_column,
                 arousal_column=d.arousal_column, dominance_column=d.dominance_column,
                 id_column=d.id_column, dialogue_column=d.dialogue_column)
    unknown = sorted(set(o) - names)
    if unknown:
        raise ConfigError(f"the VAD stage's FinetuneConfig has no field(s) {unknown}; "
                          "cannot train fine-tuned models from the compare stage")
    return o


@dataclass
class SettingInputs:
    """What every setting predicts on: the texts, the t-SNE subsample and the cache key of the data."""

    train_texts: list[str]
    test_texts: list[str]
    tsne_index: np.ndarray
    data_key: dict
    scale: tuple[float, float]
    anchors: object | None

    @property
    def tsne_texts(self) -> list[str]:
        return [self.test_texts[i] for i in self.tsne_index]


@dataclass
class Settings:
    """The settings of a comparison and the test rows of the t-SNE subsample."""

    settings: list[Setting]
    tsne_index: np.ndarray


def _setting_inputs(cfg, data) -> SettingInputs:
    train_texts = data.train["text"].astype(str).tolist()
    test_texts = data.test["text"].astype(str).tolist()
    sub = _tsne_subsample(len(test_texts), cfg.tsne_max_points, cfg.seed)
    data_key = {"data": data.description, "split": data.split_description,
                "n_train": len(train_texts), "n_test": len(test_texts), "tsne": sub.tolist()[:50]}
    return SettingInputs(train_texts, test_texts, sub, data_key, (cfg.scale_min, cfg.scale_max),
                         load_anchors(cfg.anchors) if cfg.zero_shot else None)


def anchor_setting(cfg, inp: SettingInputs, cache: PredictionCache) -> Setting:
    """Zero-shot: cosine similarity of each utterance to descriptor phrases of each pole."""
    meta = dict(inp.data_key, method="anchor", model=cfg.model, pooling=cfg.pooling, max_length=cfg.max_length,
                temperature=cfg.anchor_temperature, scale=inp.scale, anchors=inp.anchors.phrases)
    cached = cache.load("zeroshot_anchor", meta)
    if cached is None:
        t0 = time.time()
        model, tok = load_encoder(cfg.model)

        def embed(texts):
            return encode_texts(model, tok, texts, pooling=cfg.pooling, batch_size=cfg.batch_size,
                                max_length=cfg.max_length)

        proj = AnchorProjector(embed, inp.anchors, temperature=cfg.anchor_temperature, scale=inp.scale)
        emb_train, emb_test = embed(inp.train_texts), embed(inp.test_texts)
        cached = {"pred_train": proj.project(emb_train), "pred_test": proj.project(emb_test),
                  "embeddings_test": emb_test[inp.tsne_index]}
        cache.save("zeroshot_anchor", meta, cached)
        logger.info("anchor projection done in %.1fs", time.time() - t0)
    return Setting("zero-shot anchor", "zero-shot", False, cfg.model, cached["pred_train"], cached["pred_test"],
                   cached.get("embeddings_test"), info={"temperature": cfg.anchor_temperature, "pooling": cfg.pooling})


def nli_setting(cfg, inp: SettingInputs, cache: PredictionCache) -> Setting:
    """Zero-shot: NLI entailment of each pole phrase."""
    meta = dict(inp.data_key, method="nli", model=cfg.nli_model, hypothesis=cfg.nli_hypothesis, scale=inp.scale,
                anchors=inp.anchors.phrases)
    cached = cache.load("zeroshot_nli", meta)
    if cached is None:
        t0 = time.time()
        nli = NLIZeroShot(cfg.nli_model, inp.anchors, cfg.nli_hypothesis, scale=inp.scale, batch_size=cfg.batch_size)
        cached = {"pred_train": nli.predict(inp.train_texts), "pred_test": nli.predict(inp.test_texts)}
        cache.save("zeroshot_nli", meta, cached)
        logger.info("NLI zero-shot done in %.1fs", time.time() - t0)
    return Setting("zero-shot NLI", "zero-shot", False, cfg.nli_model, cached["pred_train"], cached["pred_test"],
                   info={"hypothesis_template": cfg.nli_hypothesis})


def finetuned_setting(cfg, path: str, name_counts: dict[str, int], inp: SettingInputs,
                      cache: PredictionCache) -> Setting:
    """A fine-tuned VADRegressor (run dir or model folder); named after its run dir."""
    model_dir, run_dir = _finetuned_model_dir(path)
    label = run_dir.name if run_dir is not None else model_dir.name
    n = name_counts[label] = name_counts.get(label, 0) + 1
    name = f"fine-tuned {label}" + (f" ({n})" if n > 1 else "")
    key = "finetuned_" + hashlib.sha1(str(model_dir.resolve()).encode()).hexdigest()[:10]
    weights = [model_dir / f for f in ("model.safetensors", "vad_head.safetensors") if (model_dir / f).exists()]
    meta = dict(inp.data_key, method="finetuned", model_dir=str(model_dir.resolve()),
                mtime=weights[0].stat().st_mtime if weights else 0)
    cached = cache.load(key, meta)
    if cached is None:
        t0 = time.time()
        reg = VADRegressor.from_pretrained(model_dir)
        if "vad" not in reg.heads:
            raise ConfigError(f"field 'finetuned': {model_dir} has no V/A/D head (heads: {', '.join(reg.heads)}); "
                              "the comparison reads predicted V/A/D (fine-tune with targets including vad)")
        cached = {"pred_train": reg.predict(inp.train_texts, batch_size=cfg.batch_size),
                  "pred_test": reg.predict(inp.test_texts, batch_size=cfg.batch_size),
                  "embeddings_test": reg.embed(inp.tsne_texts, batch_size=cfg.batch_size)}
        cache.save(key, meta, cached)
        logger.info("%s predicted in %.1fs", name, time.time() - t0)
    info = {"model_dir": str(model_dir)}
    files = finetune_outputs(run_dir) if run_dir is not None else None
    if files is not None and files["config"].is_file():
        info["config"] = yaml.safe_load(files["config"].read_text(encoding="utf-8"))
    log = files["log"] if files is not None and files["log"].is_file() else None
    return Setting(name, "fine-tuned", True, str(model_dir), cached["pred_train"], cached["pred_test"],
                   cached.get("embeddings_test"), train_log=str(log) if log is not None else None, info=info)


def gold_setting(data) -> Setting:
    cols = list(VAD_NAMES)
    return Setting("gold V/A/D (ceiling)", "gold", True, "gold annotations",
                   data.train[cols].to_numpy(np.float64), data.test[cols].to_numpy(np.float64))


def _check_predictions(settings: list[Setting], inp: SettingInputs) -> None:
    for s in settings:
        for split, pred, n in (("train", s.pred_train, len(inp.train_texts)), ("test", s.pred_test, len(inp.test_texts))):
            if pred.shape != (n, 3) or not np.isfinite(pred).all():
                raise RuntimeError(f"setting {s.name}: {split} predictions have shape {pred.shape} "
                                   f"(expected ({n}, 3)) or non-finite values")


def build_settings(cfg, data, out_dir: Path) -> Settings:
    """Every setting of the comparison: zero-shot ones, fine-tuned ones (trained first if asked), gold."""
    cache = PredictionCache(out_dir / "predictions", cfg.overwrite_predictions)
    inp = _setting_inputs(cfg, data)
    settings: list[Setting] = []
    if "anchor" in cfg.zero_shot:
        settings.append(anchor_setting(cfg, inp, cache))
    if "nli" in cfg.zero_shot:
        settings.append(nli_setting(cfg, inp, cache))
    finetuned = list(cfg.finetuned) + (train_finetuned_models(cfg, out_dir) if cfg.train_finetuned else [])
    names: dict[str, int] = {}
    settings += [finetuned_setting(cfg, path, names, inp, cache) for path in finetuned]
    settings.append(gold_setting(data))
    _check_predictions(settings, inp)
    return Settings(settings, inp.tsne_index)


def evaluate_settings(cfg, data, settings: list[Setting]) -> dict:
    """V/A/D metrics per setting and split; forest metrics per class set, setting and seed."""
    gold_train = data.train[list(VAD_NAMES)].to_numpy(np.float64)
    gold_test = data.test[list(VAD_NAMES)].to_numpy(np.float64)
    vad = {}
    for s in settings:
        if s.kind == "gold":
            continue
        vad[s.name] = {"train": regression_metrics(s.pred_train, gold_train, VAD_NAMES),
                       "test": regression_metrics(s.pred_test, gold_test, VAD_NAMES)}

    grid = ForestGrid(cfg.forest_n_estimators, cfg.forest_max_depth, cfg.forest_min_samples_leaf)
    emotion: dict = {}
    predictions: dict = {}
    for cs_name in cfg.class_sets:
        cs = resolve_class_set(cs_name, data.train["emotion"].tolist())
        m_tr, y_tr = encode_labels(data.train["emotion"].tolist(), cs)
        m_te, y_te = encode_labels(data.test["emotion"].tolist(), cs)
        if not m_tr.any() or not m_te.any():
            raise ConfigError(f"class set {cs.name}: no train or test utterance has one of its labels "
                              f"{list(cs.mapping)}")
        groups = data.train["dialogue_id"].astype(str).to_numpy()[m_tr]
        entry = {"labels": list(cs.labels), "description": cs.description,
                 "n_train": int(m_tr.sum()), "n_test": int(m_te.sum()),
                 "train_counts": np.bincount(y_tr, minlength=len(cs.labels)).tolist(),
                 "test_counts": np.bincount(y_te, minlength=len(cs.labels)).tolist(),
                 "settings": {}}
        predictions[cs.name] = {"y_true": y_te, "mask_test": m_te, "y_pred": {}}
        for s in settings:
            per_seed, preds = [], []
            for seed in cfg.forest_seeds:
                t0 = time.time()
                res = forest_emotion_metrics(s.pred_train[m_tr], y_tr, s.pred_test[m_te], y_te, cs.labels,
                                             groups=groups, grid=grid, cv_folds=cfg.cv_folds,
                                             scoring=cfg.cv_scoring, seed=seed)
                per_seed.append(dict(res.metrics, seed=seed, best_params=res.best_params,
                                     cv_score=res.cv_score))
                preds.append(res.y_pred)
                logger.info("%s | %s | forest seed %d: acc %.3f wF1 %.3f (%.1fs)", cs.name, s.name, seed,
                            res.metrics["accuracy"], res.metrics["weighted_f1"], time.time() - t0)
            cm = np.sum([r["confusion_matrix"] for r in per_seed], axis=0)
            entry["settings"][s.name] = {"summary": summarise_seeds(per_seed), "per_seed": per_seed,
                                         "confusion_matrix_summed_over_seeds": cm.tolist(),
                                         "uses_labels": s.uses_labels, "kind": s.kind}
            predictions[cs.name]["y_pred"][s.name] = preds[0]
        emotion[cs.name] = entry
    return {"vad": vad, "emotion": emotion, "_predictions": predictions}


def write_prediction_tables(out_dir: Path, data, settings: list[Setting]) -> None:
    for split, df in (("train", data.train), ("test", data.test)):
        rows = []
        for i, uid in enumerate(df["utterance_id"].tolist()):
            row = {"utterance_id": uid, "emotion": df["emotion"].iloc[i]}
            for d, name in enumerate(VAD_NAMES):
                row[f"gold_{name}"] = float(df[name].iloc[i])
            for s in settings:
                if s.kind == "gold":
                    continue
                pred = s.pred_train if split == "train" else s.pred_test
                for d, name in enumerate(VAD_NAMES):
                    row[f"{s.name}:{name}"] = round(float(pred[i, d]), 5)
            rows.append(row)
        write_csv(out_dir / f"predictions_{split}.csv", rows)


def run_compare(cfg, command: str | None = None) -> dict:
    """Run the whole comparison and write the report; return report.json's content."""
    t_start = time.time()
    out_dir = start_local(cfg, cfg.output_dir, Path(cfg.output_dir) / "config.yaml")
    command = command or "python " + shlex.join(sys.argv)
    data = load_compare_data(cfg)
    built = build_settings(cfg, data, out_dir)
    results = evaluate_settings(cfg, data, built.settings)
    write_prediction_tables(out_dir, data, built.settings)
    report = write_report(cfg, data, built.settings, results, built.tsne_index, out_dir, command=command,
                          started=t_start)
    logger.info("report written to %s (%.0fs)", compare_outputs(out_dir)["report_html"], time.time() - t_start)
    return report
