"""Subcommands of the V/A/D stage (registered by erc.cli): finetune, predict, embed, convert-vad."""
from __future__ import annotations

import argparse

from erc.core.cli import add_stage_command
from erc.vad.config import EmbedConfig, FinetuneConfig, PredictConfig


def _finetune(cfg: FinetuneConfig) -> dict:
    from erc.vad.train import run_finetune

    return run_finetune(cfg)


def _predict(cfg: PredictConfig) -> dict:
    from erc.vad.predict import run_predict

    return run_predict(cfg)


def _embed(cfg: EmbedConfig):
    from erc.vad.embed import run_embed

    return run_embed(cfg)


def _convert(args: argparse.Namespace) -> None:
    from erc.vad.model import convert_legacy_folder

    out = convert_legacy_folder(args.old, args.new)
    print(f"wrote {out}: loads with VADRegressor.from_pretrained, or AutoModel.from_pretrained "
          "after `import erc.vad.model`")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands."""
    add_stage_command(subparsers, "finetune", FinetuneConfig, _finetune,
                      help="fine-tune an encoder on V/A/D, emotion, sentiment or any combination (one head "
                           "each; --targets, docs/finetune.md; run with `accelerate launch cli.py finetune ...`)")
    add_stage_command(subparsers, "predict", PredictConfig, _predict,
                      help="predict with a fine-tuned model (V/A/D, emotion, sentiment: the heads it has) for a "
                           "CSV of texts, a text file or an IEMOCAP root")
    add_stage_command(subparsers, "embed", EmbedConfig, _embed,
                      help="write utterance embeddings (.npz keyed by utterance id and dialogue/position)")
    p = subparsers.add_parser("convert-vad", help="rewrite a V/A/D model folder of the old layout "
                              "(vad_config.json + vad_head.safetensors) as a standard transformers folder",
                              description="Rewrite OLD (a best_model/ folder written before the transformers "
                              "format) as NEW: config.json of model_type erc-vad, model.safetensors, tokenizer.")
    p.add_argument("old", help="the old folder (holds vad_config.json)")
    p.add_argument("new", help="the folder to write")
    p.set_defaults(func=_convert)
