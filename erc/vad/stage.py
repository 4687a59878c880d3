"""The V/A/D stage as the pipeline sees it: what makes a run, where its outputs go, what it reports.

Light on purpose (configs and paths only): the pipeline and ``--help`` import it;
the training code is imported when a stage runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from erc.core.io import read_json
from erc.core.runs import IdentityRule, StageSpec, format_cell
from erc.vad.config import EmbedConfig, FinetuneConfig

VAD_DIMS = ("valence", "arousal", "dominance")


def _global_batch(cfg: FinetuneConfig, num_processes: int) -> dict:
    return {"global_batch_size": cfg.batch_size * num_processes}


# What makes two finetune runs the same run. The sampler draws global batches (batch_size x processes),
# so 1 process x 16 and 2 x 8 are the same run; checkpointing and stop settings do not change results.
FINETUNE_IDENTITY = IdentityRule(
    ignore=frozenset({"batch_size", "checkpointing_steps", "keep_checkpoints", "stop_after_steps"}),
    inputs=("data.path", "model"), extra=_global_batch,
    # fields added later, left out at their default: runs recorded before them keep their identity
    added=(("data.loso_validation", "session"), ("targets", []), ("data.dataset", ""),
           ("data.train_dialogue_folds", 0), ("data.held_out_fold", 0)))
EMBED_IDENTITY = IdentityRule(inputs=("path", "model"))


def finetune_outputs(output_dir: str | Path) -> dict[str, Path]:
    """The files a finetune run leaves in its run directory."""
    d = Path(output_dir)
    return {"model": d / "best_model", "metrics": d / "metrics.json", "log": d / "train_log.csv",
            "predictions": d / "test_predictions.csv", "config": d / "config.yaml",
            "checkpoints": d / "checkpoints", "plots": d / "plots"}


def _finetune_summary(cfg: FinetuneConfig, link: Callable[[Path], str]) -> list[str]:
    out = finetune_outputs(cfg.output_dir)
    if not out["metrics"].is_file():
        return []
    m = read_json(out["metrics"])
    test = m.get("test", m)
    lines = ["## V/A/D fine-tuning (test split, best validation epoch)", "",
             "| dimension | Pearson r | CCC | RMSE |", "|---|---|---|---|"]
    for d in VAD_DIMS:
        lines.append(f"| {d} | {format_cell(test.get(f'{d}_pearson'))} | {format_cell(test.get(f'{d}_ccc'))} | "
                     f"{format_cell(test.get(f'{d}_rmse'))} |")
    if "ccc" not in test:       # no V/A/D head
        lines = ["## Fine-tuning (test split, best validation epoch)", ""]
    for head, what in (("emotion", f"Emotion head ({cfg.emotion_classes}, {test.get('n_emotion')} test utterances "
                                   "in its class set)"),
                       ("sentiment", f"Sentiment head ({test.get('n_sentiment')} labelled test utterances)")):
        if f"n_{head}" in test:     # a classification head beside (or instead of) V/A/D
            lines += ["", f"{what}: accuracy "
                          f"{format_cell(test.get(f'{head}_accuracy'))}, weighted F1 "
                          f"{format_cell(test.get(f'{head}_weighted_f1'))}, macro F1 "
                          f"{format_cell(test.get(f'{head}_macro_f1'))}."]
    lines += ["", f"Files: [metrics.json]({link(out['metrics'])}), [train_log.csv]({link(out['log'])}), "
                  f"[plots/]({link(out['plots'])}/), model [best_model/]({link(out['model'])}/).", ""]
    return lines


def _required(outputs: dict[str, Path], *keys: str) -> dict[str, Path]:
    return {k: outputs[k] for k in keys}


FINETUNE = StageSpec(
    name="finetune", config_class=FinetuneConfig, run="erc.vad.train:run_finetune",
    identity_rule=FINETUNE_IDENTITY, place=lambda folder: {"output_dir": str(folder)},
    outputs=lambda cfg: _required(finetune_outputs(cfg.output_dir), "model", "metrics", "log"),
    summary=_finetune_summary)


def embed_place(folder: Path) -> dict[str, Any]:
    return {"output": str(Path(folder) / "embeddings.npz")}


def _embed_summary(cfg: EmbedConfig, link: Callable[[Path], str]) -> list[str]:
    """Cross-fitted embeddings: which encoder embedded which sessions, and each fold's own V/A/D figures."""
    record = Path(str(cfg.output) + ".cross_fit.json")
    if not cfg.cross_fit or not record.is_file():
        return []
    r = read_json(record)
    lines = [f"## Embeddings, cross-fitted ({r['cross_fit']} folds)", "",
             "Each fold's training sessions are embedded by an encoder fine-tuned without them; everything "
             "else by the fine-tuned model.", "",
             "| encoder | held-out sessions | trained on | dialogues | utterances | validation CCC | test CCC |",
             "|---|---|---|---|---|---|---|"]
    for e in r["encoders"]:
        m = e.get("finetune_metrics") or {}
        held = f"fold {e['held_out_fold']} (dialogues)" if e.get("held_out_fold") else (e['held_out_sessions'] or '-')
        lines.append(f"| {e['name']} | {held} | {e['train_sessions'] or '-'} | {e['dialogues']} | "
                     f"{e['utterances']} | {format_cell((m.get('validation') or {}).get('ccc'))} | "
                     f"{format_cell((m.get('test') or {}).get('ccc'))} |")
    lines += ["", f"Files: [{record.name}]({link(record)}).", ""]
    return lines


EMBED = StageSpec(
    name="embed", config_class=EmbedConfig, run="erc.vad.embed:run_embed", identity_rule=EMBED_IDENTITY,
    place=embed_place, outputs=lambda cfg: {"embeddings": Path(cfg.output)}, summary=_embed_summary,
    main_process_only=True)
