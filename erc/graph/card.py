"""Model card (``README.md``) of a saved graph model folder, written by :func:`erc.graph.model.save_graph_model`.

It describes what the folder holds and what the run measured: modalities and their feature
sizes, the architecture, the classes, validation and test metrics at the selected epoch, how to
use the folder, intended use and limitations. The data the run read is named when the caller
passes it (``extra["dataset"]``); the run's ``config.yaml`` beside the weights always has it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from erc.core.io import atomic_write_text

CARD_FILE = "README.md"

LIMITATIONS = (
    "The classes and their balance are those of the training data. IEMOCAP-derived data (iemocap6, iemocap4, "
    "cosmic_iemocap, dialoguegcn_iemocap) is acted English dyadic speech by 10 actors in a laboratory; MELD is "
    "English dialogue from one TV series (Friends); CMU-MOSEI is English monologue from online videos; the "
    "synthetic corpus is template data made to test the toolkit, and metrics on it say nothing about emotion. "
    "Predictions need features made exactly as at training time (same text encoder, same audio/visual "
    "extractors, the normalisation saved with the model); other features give meaningless outputs. The model "
    "was not evaluated for fairness across speakers, dialects or demographic groups."
)
INTENDED_USE = (
    "Research on emotion recognition in conversation: per-utterance emotion and sentiment of whole "
    "dialogues, and comparison of modalities and graph settings. Out of scope: decisions about individuals, "
    "clinical or psychological assessment, surveillance."
)


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _final_name(model_dir: str | Path) -> str:
    """The folder's name once in place (it is written as ``.NAME.tmp`` and renamed)."""
    name = Path(model_dir).name
    return name[1:-len(".tmp")] if name.startswith(".") and name.endswith(".tmp") else name


def render_graph_card(model_dir: str | Path, model_cfg: dict, extra: dict) -> str:
    """The card's Markdown for a folder saved with ``model_cfg`` (GraphModelConfig as a dict) and ``extra``."""
    labels = list(extra.get("label_names") or model_cfg.get("label_names") or [])
    sentiments = list(extra.get("sentiment_names") or model_cfg.get("sentiment_names") or [])
    dims = model_cfg.get("input_dims", {})
    valid, test = extra.get("valid") or {}, extra.get("test") or {}
    data = extra.get("dataset")
    tags = ["erc-toolkit", "emotion-recognition-in-conversation", "graph-neural-network", *dims]
    lines = ["---", "library_name: erc-toolkit", "tags:", *[f"- {t}" for t in tags], "---", "",
             "# Multimodal dialogue graph model (erc-toolkit, GraphSmile-style)", "",
             "Classifies the emotion and the sentiment of every utterance of a dialogue from "
             + ", ".join(f"{m} ({d} features)" for m, d in dims.items()) + ". "
             f"Hidden size {model_cfg.get('hidden_dim')}, graph layers {model_cfg.get('layers')} per "
             f"{'modality pair' if len(dims) > 1 else 'temporal graph'}, window {model_cfg.get('win_p')} past / "
             f"{model_cfg.get('win_f')} future utterances; heads for emotion ({len(labels)} classes), "
             f"sentiment ({len(sentiments)}) and sentiment shift.", "",
             f"Classes: {', '.join(labels) or '-'}. Sentiments: {', '.join(sentiments) or '-'}.", "",
             "## How to use", "", "```python", "from erc.graph.api import GraphPredictor",
             f'predictor = GraphPredictor.from_pretrained("{_final_name(model_dir)}")',
             'predictor.predict([{"texts": [...], "speakers": [...], "features": {...}}])',
             "```", "", "Command line: `erc predict-graph --model-dir THIS_FOLDER`.", "",
             "## Training data", "",
             (f"Dataset `{data}`" + (f" (`{extra['path']}`)" if extra.get("path") else "") + ". "
              if data else "") + "The run's `config.yaml` in this folder names the data, the split and every "
             "setting; features were normalised with training-split statistics saved in `model_config.json`.", "",
             "## Evaluation", "",
             f"Seed {extra.get('seed', '-')}, epoch {extra.get('epoch', '-')} (selected on the validation split; "
             "the test split was scored with that epoch's model).", "",
             "| metric | validation | test |", "|---|---|---|"]
    for key in ("accuracy", "weighted_f1", "macro_f1", "ece"):
        if key in valid or key in test:
            lines.append(f"| {key} | {_num(valid.get(key))} | {_num(test.get(key))} |")
    for name in labels:
        v, t = (valid.get("per_class_f1") or {}).get(name), (test.get("per_class_f1") or {}).get(name)
        if v is not None or t is not None:
            lines.append(f"| F1 {name} | {_num(v)} | {_num(t)} |")
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Limitations", "", LIMITATIONS, ""]
    return "\n".join(lines)


def write_graph_card(model_dir: str | Path, model_cfg: dict, extra: dict) -> Path:
    """Write ``model_dir/README.md`` atomically; returns its path."""
    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, render_graph_card(model_dir, model_cfg, extra))
    return path
