"""Model cards (``README.md``) for fine-tuned V/A/D model folders, generated from the run.

``write_model_card(model_dir, info)`` writes the card; :func:`finetune_card_info` builds
``info`` from a finetune run's config and result, so the training loop calls::

    write_model_card(best_dir, finetune_card_info(cfg, result))

The card has the Hugging Face metadata header (``huggingface_hub.ModelCardData``: tags,
base model, ``model-index`` with the test results) and sections: model, how to use, data,
split, training, evaluation, intended use, limitations. The limitations name what the data
is: IEMOCAP is acted English dyadic speech, EmoBank single English sentences rated out of
context, the synthetic corpus no emotion data at all.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData
from safetensors import safe_open

from erc.core.config import config_to_dict
from erc.core.io import atomic_write_text
from erc.data.utterances import detect_format

CARD_FILE = "README.md"
VAD_NAMES = ("valence", "arousal", "dominance")

# What each source is, and what that means for a model trained on it.
DATA_FACTS: dict[str, dict[str, str]] = {
    "iemocap": {
        "name": "IEMOCAP",
        "about": "IEMOCAP, the Interactive Emotional Dyadic Motion Capture database (USC SAIL): about 12 hours of "
                 "audio-visual recordings of 10 professional actors (5 sessions, one man and one woman each) "
                 "performing scripted and improvised dyadic scenes in English; every turn is rated for "
                 "valence, arousal and dominance on 1-5 by several annotators. This model reads the "
                 "transcripts only.",
        "limits": "IEMOCAP is acted English dyadic speech recorded in a laboratory: 10 actors, elicited "
                  "emotions, two speakers per dialogue. Its distribution of emotions, wording and turn-taking "
                  "differs from spontaneous conversation, from other languages and cultures and from written "
                  "text; the ratings come from a few annotators per turn. Expect lower accuracy on natural "
                  "speech, other speakers and other domains. The model sees the transcript only: prosody, "
                  "facial expression and dialogue context, which carry much of the arousal signal, are "
                  "ignored.",
    },
    "emobank": {
        "name": "EmoBank",
        "about": "EmoBank (Buechel & Hahn, 2017; JULIELab/EmoBank, CC-BY-SA 4.0): 10,062 English sentences "
                 "from news, blogs, fiction, letters, essays and travel guides, rated for valence, arousal "
                 "and dominance on 1-5.",
        "limits": "EmoBank rates single English written sentences out of context; conversational speech, "
                  "transcripts with disfluencies and other languages differ from it. Its V/A/D ratings "
                  "cluster near the middle of the scale, so extreme values are rarely predicted.",
    },
    "synthetic": {
        "name": "the built-in synthetic corpus",
        "about": "The erc-toolkit's SYNTHETIC corpus: template sentences with planted V/A/D values, made to "
                 "test the toolkit without downloading data. It is not emotion data.",
        "limits": "Trained on SYNTHETIC template data: the metrics above show that the pipeline works, and "
                  "nothing about emotion in real language. Do not use this model for anything but trying "
                  "the toolkit.",
    },
    "meld": {
        "name": "MELD",
        "about": "MELD, the Multimodal EmotionLines Dataset (Poria et al., 2019): about 13,700 utterances of "
                 "1,433 multi-party dialogues from the TV series Friends, each labelled with one of 7 emotions "
                 "(neutral, surprise, fear, sadness, joy, disgust, anger) and a sentiment (negative, neutral, "
                 "positive). This model reads the transcripts only.",
        "limits": "MELD is scripted television dialogue of one sitcom: its humour, wording and speakers differ "
                  "from everyday conversation and from written text. Its classes are imbalanced (neutral is "
                  "almost half the utterances; fear and disgust are rare), so rare emotions are predicted "
                  "poorly. It has no V/A/D ratings.",
    },
    "table": {
        "name": "a user-supplied table",
        "about": "A table of texts with V/A/D ratings supplied by the user (see the data source below).",
        "limits": "The model inherits the coverage, language and rating conventions of the table it was "
                  "trained on; check them before using it on other data.",
    },
}

GENERAL_LIMITS = (
    "V/A/D ratings are subjective: annotators agree only moderately, which bounds the correlation any "
    "model can reach. The head is linear, so predictions can fall slightly outside the 1-5 scale. The "
    "model reads one utterance at a time, in English, and was not evaluated for fairness across "
    "speakers, dialects or demographic groups."
)
CLASS_LIMITS = (
    "Emotion and sentiment labels are subjective: annotators agree only moderately, which bounds the "
    "accuracy any model can reach. The model reads one utterance (with the context turns it was trained with) "
    "in English, and was not evaluated for fairness across speakers, dialects or demographic groups."
)
INTENDED_USE = (
    "Research on dimensional emotion in text and conversation: V/A/D estimates and utterance embeddings "
    "(`erc embed`) as features for emotion recognition in conversation, and the baseline of the "
    "erc-toolkit comparison report."
)
OUT_OF_SCOPE = (
    "Decisions about individuals (hiring, health, credit, policing, surveillance), clinical or "
    "psychological assessment, and any language or domain the training data does not cover."
)


def _flat(cfg: Any) -> dict[str, Any]:
    """Leaf fields of a (possibly nested) config dataclass or dict, by leaf name and by dotted path."""
    tree = config_to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    out: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v
                out.setdefault(k, v)

    walk(tree, "")
    return out


def _pick(flat: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in flat:
            return flat[n]
    return default


def finetune_card_info(cfg: Any, result: dict) -> dict:
    """``info`` for :func:`write_model_card` from a finetune config and ``run_finetune``'s result dict."""
    flat = _flat(cfg)
    data = str(_pick(flat, "data.path", "data.data", "data", default=""))
    fmt = _pick(flat, "data_format", "data.data_format", "data.format", default="auto")
    dataset = _pick(flat, "data.dataset", default="")
    if dataset:        # a registered corpus read through its reader
        data, fmt = (f"dataset {dataset}" + (f" ({data})" if data not in ("", "synthetic") else "")), dataset
    elif fmt == "auto":
        try:
            fmt = detect_format(data)
        except ValueError:
            fmt = "table"
    mode = result.get("split", "")
    if mode == "session":
        if _pick(flat, "leave_one_session_out", default=0):
            k = _pick(flat, "leave_one_session_out")
            if _pick(flat, "loso_validation", default="session") == "slice":
                split = (f"by session, leave-one-session-out: test session {k}; validation "
                         f"{_pick(flat, 'valid_fraction')} of the other sessions' dialogues (seeded), training on "
                         "the rest of them")
            else:
                split = (f"by session, leave-one-session-out: test session {k}, validation the session before it "
                         "(the last one for session 1), training on the others")
        else:
            split = (f"by session: train {_pick(flat, 'train_sessions')}, validation "
                     f"{_pick(flat, 'valid_sessions', 'val_sessions')}, test {_pick(flat, 'test_sessions')}")
    elif mode == "column" and dataset:
        split = f"the corpus's own train / validation (dev) / test split ({dataset})"
    elif mode == "column":
        split = f"by the table's split column ('{_pick(flat, 'split_column', default='split')}')"
    elif mode == "dialogue":
        split = (f"seeded by dialogue: {_pick(flat, 'valid_fraction', 'val_fraction')} of the dialogues for "
                 f"validation, {_pick(flat, 'test_fraction')} for test (no dialogue in two splits)")
    else:
        split = str(mode)
    if result.get("test_is_validation"):
        split += "; the test split overlaps validation here, so test figures are validation figures"
    return {
        "encoder": str(_pick(flat, "model", "encoder", default="")),
        "pooling": _pick(flat, "pooling"),
        "max_length": _pick(flat, "max_length", "max_seq_length"),
        "data": data,
        "data_format": fmt,
        "split": split,
        "heads": result.get("heads") or ["vad"],
        "loss_weights": result.get("loss_weights") or {},
        "n_train": result.get("n_train"), "n_validation": result.get("n_validation"),
        "n_test": result.get("n_test"),
        "training": {
            "epochs": _pick(flat, "epochs"), "epochs_run": result.get("epochs_run"),
            "best_epoch": result.get("best_epoch"),
            "selection": result.get("metric_for_best") or _pick(flat, "selection_metric", "metric_for_best"),
            "learning_rate": _pick(flat, "lr", "learning_rate"), "batch_size": _pick(flat, "batch_size"),
            "weight_decay": _pick(flat, "weight_decay"), "warmup_ratio": _pick(flat, "warmup_ratio"),
            "seed": _pick(flat, "seed"), "processes": result.get("num_processes"),
            "mixed_precision": _pick(flat, "mixed_precision"),
        },
        "test": result.get("test") or {},
        "validation": result.get("validation") or {},
        "command": " ".join(["erc", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith(("cli.py", "erc")) else "",
    }


def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _scaler(model_dir: Path) -> tuple[list[float], list[float]] | None:
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), framework="pt") as fh:
        if not {"scaler_mean", "scaler_std"} <= set(fh.keys()):
            return None
        return fh.get_tensor("scaler_mean").tolist(), fh.get_tensor("scaler_std").tolist()


def _is_hub_name(name: str) -> bool:
    return bool(name) and not name.startswith(("builtin:", "/", ".", "~")) and not Path(name).exists()


def _facts(fmt: str) -> dict[str, str]:
    if fmt in DATA_FACTS:
        return DATA_FACTS[fmt]
    return DATA_FACTS["meld"] if "meld" in str(fmt) else DATA_FACTS["table"]


HEAD_TITLES = {"vad": "V/A/D regression", "emotion": "emotion classification", "sentiment": "sentiment classification"}


def card_metadata(info: dict) -> ModelCardData:
    """The YAML header: tags, base model, and ``model-index`` with the test results of every head."""
    facts = _facts(info.get("data_format", ""))
    test = info.get("test") or {}
    heads = info.get("heads") or ["vad"]
    results = [
        EvalResult(task_type="text-classification", task_name="V/A/D regression",
                   dataset_type=info.get("data_format", "table"), dataset_name=facts["name"], dataset_split="test",
                   metric_type=metric, metric_name=f"{d} {label}", metric_value=float(test[f"{d}_{metric}"]))
        for d in VAD_NAMES for metric, label in (("ccc", "CCC"), ("pearson", "Pearson r"), ("rmse", "RMSE"))
        if isinstance(test.get(f"{d}_{metric}"), float) and math.isfinite(test[f"{d}_{metric}"])
    ] + [
        EvalResult(task_type="text-classification", task_name=HEAD_TITLES[h],
                   dataset_type=info.get("data_format", "table"), dataset_name=facts["name"], dataset_split="test",
                   metric_type=metric, metric_name=f"{h} {label}", metric_value=float(test[f"{h}_{metric}"]))
        for h in heads if h != "vad"
        for metric, label in (("weighted_f1", "weighted F1"), ("accuracy", "accuracy"), ("macro_f1", "macro F1"))
        if isinstance(test.get(f"{h}_{metric}"), float) and math.isfinite(test[f"{h}_{metric}"])
    ]
    encoder = info.get("encoder", "")
    tags = ["erc-toolkit", "emotion"] + (["valence-arousal-dominance", "regression"] if "vad" in heads else []) + \
        (["sentiment"] if "sentiment" in heads else [])
    return ModelCardData(
        language="en", library_name="transformers", pipeline_tag="text-classification",
        tags=tags, base_model=encoder if _is_hub_name(encoder) else None,
        model_name="V/A/D regressor" if list(heads) == ["vad"] else "erc-toolkit " + " + ".join(heads) + " model",
        eval_results=results or None,
    )


def _head_sentence(heads: list[str]) -> str:
    parts = {"vad": "**valence, arousal and dominance** (on the scale of the training data, 1-5 for IEMOCAP "
                    "and EmoBank)", "emotion": "the **emotion** class", "sentiment": "the **sentiment** "
                                                                                       "(negative, neutral, positive)"}
    named = [parts[h] for h in heads]
    return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]


def render_model_card(model_dir: str | Path, info: dict) -> str:
    """The card's text (YAML header + Markdown) for ``info`` (keys as in :func:`finetune_card_info`)."""
    model_dir = Path(model_dir)
    fmt = info.get("data_format", "table")
    facts = _facts(fmt)
    heads = list(info.get("heads") or ["vad"])
    test, val, tr = info.get("test") or {}, info.get("validation") or {}, info.get("training") or {}
    title = "V/A/D regressor" if heads == ["vad"] else " + ".join(HEAD_TITLES[h] for h in heads)
    head_text = {"vad": "a linear V/A/D head trained by MSE on standardised targets",
                 "emotion": "a linear emotion head (cross-entropy)", "sentiment": "a linear sentiment head "
                                                                                  "(cross-entropy)"}
    weights = info.get("loss_weights") or {}
    lines = ["---", card_metadata(info).to_yaml(), "---", "",
             f"# {title} (erc-toolkit)", "",
             f"Predicts {_head_sentence(heads)} of an English utterance from its text. Encoder "
             f"`{info.get('encoder', '?')}` ({info.get('pooling', 'cls')} pooling, at most "
             f"{info.get('max_length', '?')} tokens) with one head per target: "
             + "; ".join(head_text[h] + (f" (loss weight {weights[h]})" if h in weights and len(heads) > 1 else "")
                         for h in heads) + "."
             + (" The target scaler (fitted on the training split) is stored with the weights and undone at "
                "prediction time." if "vad" in heads else ""), ""]
    lines += ["Heads: " + ", ".join(f"`{h}`" for h in heads) + " (`config.json`: `target_names`, "
              "`emotion_labels`, `sentiment_labels`).", ""]
    scaler = _scaler(model_dir) if "vad" in heads else None
    if scaler is not None:
        mean, std = scaler
        lines += ["Training-split scaler: " + ", ".join(
            f"{d} mean {m:.3f} std {s:.3f}" for d, m, s in zip(VAD_NAMES, mean, std)) + ".", ""]
    lines += ["## How to use", "", "```python",
              "from erc.vad import VADPredictor            # also registers the model with transformers' Auto classes",
              f'predict = VADPredictor.from_pretrained("{model_dir.name}")',
              'predict(["I can\'t believe it!"])             # [{"text": ..., one value per head output}]',
              "", "from transformers import AutoModel, pipeline",
              f'model = AutoModel.from_pretrained("{model_dir.name}")   # a VADRegressor (registered by the import above)',
              f'pipe = pipeline("text-classification", model="{model_dir.name}", function_to_apply="none", top_k=None)',
              "```", "", "Command line: `erc predict --model-dir THIS_FOLDER --input texts.csv --output out.csv` "
              "(one column per V/A/D dimension, the predicted class of each classification head).", "",
              "## Training data", "", f"{facts['about']}", "", f"Source: `{info.get('data', '?')}` (read as {fmt}).",
              "", "## Split", "", f"{info.get('split', '?')}. Labeled utterances: train {info.get('n_train', '?')}, "
              f"validation {info.get('n_validation', '?')}, test {info.get('n_test', '?')}. The epoch was chosen "
              f"on the validation split ({tr.get('selection', '?')}); the test split was used once, with that "
              "model.", "", "## Training", "",
              "| setting | value |", "|---|---|"]
    for key, label in (("epochs", "epochs (planned)"), ("epochs_run", "epochs run"), ("best_epoch", "best epoch"),
                       ("selection", "selection metric"), ("learning_rate", "learning rate (AdamW)"),
                       ("batch_size", "batch size per process"), ("weight_decay", "weight decay"),
                       ("warmup_ratio", "warm-up ratio"), ("seed", "seed"), ("processes", "processes"),
                       ("mixed_precision", "mixed precision")):
        if tr.get(key) is not None:
            lines.append(f"| {label} | {tr[key]} |")
    if info.get("command"):
        lines += ["", f"Command: `{info['command']}`; the run folder holds `config.yaml`, `train_log.csv` "
                      "and `metrics.json`."]
    lines += ["", "## Evaluation", "", "Test split, model of the best validation epoch (validation in brackets):"]
    if "vad" in heads:
        lines += ["", "| dimension | CCC | Pearson r | RMSE | MAE |", "|---|---|---|---|---|"]
        for d in (*VAD_NAMES, None):
            key = (lambda m: f"{d}_{m}") if d else (lambda m: m)
            lines.append(f"| {d or 'mean / overall'} | " + " | ".join(
                f"{_num(test.get(key(m)))} ({_num(val.get(key(m)))})" for m in ("ccc", "pearson", "rmse", "mae"))
                + " |")
        lines += ["", "Overall CCC and Pearson r are the means over the three dimensions; RMSE and MAE pool them."]
    classes = [h for h in heads if h != "vad"]
    if classes:
        lines += ["", "| head | accuracy | weighted F1 | macro F1 | labelled test utterances |",
                  "|---|---|---|---|---|"]
        for h in classes:
            lines.append(f"| {h} | " + " | ".join(f"{_num(test.get(f'{h}_{m}'))} ({_num(val.get(f'{h}_{m}'))})"
                                                  for m in ("accuracy", "weighted_f1", "macro_f1"))
                         + f" | {test.get(f'n_{h}', '-')} |")
    lines += ["", "## Intended use", "", INTENDED_USE, "", f"Out of scope: {OUT_OF_SCOPE}", "",
              "## Limitations", "", facts["limits"], "", GENERAL_LIMITS if "vad" in heads else CLASS_LIMITS, ""]
    return "\n".join(lines)


def write_model_card(model_dir: str | Path, info: dict) -> Path:
    """Write ``model_dir/README.md`` (atomically) from ``info``; returns its path."""
    path = Path(model_dir) / CARD_FILE
    atomic_write_text(path, render_model_card(model_dir, info))
    return path
