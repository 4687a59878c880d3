"""Dialogue splits and loaders: the fusion stage's public API.

``load_splits(cfg)`` reads the dataset named by ``cfg.dataset`` (registry in
:mod:`erc.data.registry`), checks it (:mod:`erc.data.validate`), builds the
requested modalities, carves validation dialogues out of TRAINING dialogues
(seeded, or the file's own validation ids), and z-scores the modalities in
``cfg.normalize`` with statistics of the training dialogues only.

``make_loader(dialogues, batch_size, shuffle, seed)`` yields
:class:`erc.data.batch.DialogueBatch` of whole dialogues; ``dialogue_index`` is the
dialogue's index in ``dialogues`` (global within the split), so results from
several processes can be matched back.

Multi-process evaluation (Accelerate)
-------------------------------------
``accelerator.prepare(loader)`` gives each process a distinct shard of the
batches. With the default ``even_batches=True`` Accelerate pads the last round by
REPEATING dialogues from the start, and ``gather_for_metrics`` cannot drop them
correctly here: its remainder counts dialogues while our tensors are per
utterance. So evaluate like this, which counts every dialogue exactly once::

    records = []
    for batch in loader:                       # prepared loader
        out = model(batch)
        records += split_by_dialogue(batch, pred=out.argmax(-1), label=batch.labels)
    records = merge_dialogue_records(accelerate.utils.gather_object(records), expected=len(loader.dataset))
    # records: one dict per dialogue of the split, sorted by dialogue_index

(``Accelerator(dataloader_config=DataLoaderConfiguration(even_batches=False))``
avoids the repeats in the first place; the de-duplication above is still correct.)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from erc.data.batch import Dialogue, DialogueBatch, collate_dialogues
from erc.data.config import DialogueDataConfig
from erc.data.readers import RawCorpus, RawDialogue, read_corpus, read_meld_tables
from erc.data.registry import DatasetSpec, get_spec
from erc.data.validate import DataValidationError, check_disjoint_splits, fail

logger = logging.getLogger(__name__)


@dataclass
class DialogueSplits:
    train: list[Dialogue]
    valid: list[Dialogue]
    test: list[Dialogue]
    spec: DatasetSpec
    modalities: list[str]
    dims: dict[str, int]
    normalization: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # mod -> mean/std (train)
    source: str = ""

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.spec.label_names

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def sentiment_names(self) -> tuple[str, ...]:
        return self.spec.sentiment_names

    @property
    def num_sentiments(self) -> int:
        return len(self.spec.sentiment_names)

    def split(self, name: str) -> list[Dialogue]:
        if name not in ("train", "valid", "test"):
            raise KeyError(f"split {name!r}: expected train, valid or test")
        return getattr(self, name)

    def summary(self) -> dict:
        return {name: {"dialogues": len(self.split(name)), "utterances": sum(len(d) for d in self.split(name))}
                for name in ("train", "valid", "test")}


# ----------------------------------------------------------------------------- splits
def carve_validation(train_ids: Sequence[str], ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split of TRAINING dialogue ids into (train, valid); order of ids does not matter."""
    ids = sorted(train_ids)
    n_valid = int(round(ratio * len(ids)))
    if ratio > 0 and len(ids) > 1:
        n_valid = min(max(n_valid, 1), len(ids) - 1)
    perm = np.random.default_rng(seed).permutation(len(ids))
    valid = {ids[i] for i in perm[:n_valid]}
    return [d for d in train_ids if d not in valid], [d for d in train_ids if d in valid]


def split_ids(corpus: RawCorpus, cfg: DialogueDataConfig) -> dict[str, list[str]]:
    if corpus.spec.valid_source == "file" and corpus.splits.get("valid"):
        out = {"train": list(corpus.splits["train"]), "valid": list(corpus.splits["valid"]),
               "test": list(corpus.splits["test"])}
    else:
        train, valid = carve_validation(corpus.splits["train"] + corpus.splits.get("valid", []),
                                        cfg.valid_fraction, cfg.split_seed)
        out = {"train": train, "valid": valid, "test": list(corpus.splits["test"])}
    check_disjoint_splits(corpus.source, out)
    return out


# ----------------------------------------------------------------------------- modalities
def _text_layers(d: RawDialogue, mode: str, source: str) -> np.ndarray:
    layers = d.text_layers
    if mode == "concat":
        return np.concatenate(layers, axis=1)
    if mode == "mean":
        return np.mean(np.stack(layers), axis=0).astype(np.float32)
    k = int(mode)
    if k >= len(layers):
        raise fail(source, d.dialogue_id, "text_mode", f"layer {k} requested but the file has {len(layers)}")
    return layers[k]


def build_text(corpus: RawCorpus, cfg: DialogueDataConfig) -> dict[str, np.ndarray]:
    spec, source = corpus.spec, corpus.source
    src = cfg.text_source
    if src == "auto":
        src = "embeddings" if cfg.text_embeddings else ("file" if spec.text_layers else "hash")
    if src == "embeddings":
        from erc.data.text import join_embeddings, read_embeddings

        return join_embeddings(read_embeddings(cfg.text_embeddings), list(corpus.dialogues.values()),
                               cfg.text_join)
    if src == "file":
        if not spec.text_layers:
            raise DataValidationError(f"{source}: dataset {spec.name!r} has no text features in the file; "
                                      "use text_source=embeddings (cli.py embed) or hash")
        if cfg.text_mode not in ("concat", "mean") and int(cfg.text_mode) >= spec.text_layers:
            raise DataValidationError(f"{source}: text_mode {cfg.text_mode} but dataset {spec.name!r} has "
                                      f"{spec.text_layers} text layer(s)")
        return {k: _text_layers(d, cfg.text_mode, source) for k, d in corpus.dialogues.items()}
    from erc.data.text import hash_featurize

    if not spec.has_sentences:
        raise DataValidationError(f"{source}: no transcripts to featurise")
    return {k: hash_featurize(d.texts, cfg.hash_dim) for k, d in corpus.dialogues.items()}


def _release_table(cfg: DialogueDataConfig):
    from erc.data.utterances import read_iemocap

    from erc.core.paths import data_path

    root = cfg.release_root or data_path("iemocap", "IEMOCAP_full_release")
    if root is None:
        raise FileNotFoundError("timing needs the IEMOCAP release transcriptions: set release_root "
                                "(or place iemocap/IEMOCAP_full_release under the data folder)")
    return read_iemocap(root), str(root)


def attach_timestamps(corpus: RawCorpus, cfg: DialogueDataConfig) -> None:
    """Fill ``start``/``end`` of every dialogue from the spec's ``timing_source`` (in place)."""
    from erc.data import timing

    how = corpus.spec.timing_source
    dialogues = list(corpus.dialogues.values())
    if how == "table":
        return
    if how == "release_ids":
        table, root = _release_table(cfg)
        got = timing.join_by_utterance_id(dialogues, table, f"{corpus.source} + {root}")
        for k, (s, e) in got.items():
            corpus.dialogues[k].start, corpus.dialogues[k].end = s, e
    elif how == "release_join":
        table, root = _release_table(cfg)
        got = timing.join_release_by_text(dialogues, table, f"{corpus.source} + {root}")
        for k, (s, e, uids) in got.items():
            corpus.dialogues[k].start, corpus.dialogues[k].end = s, e
    elif how == "meld_csv":
        from erc.core.paths import data_path

        folder = cfg.meld_csv_dir or data_path("meld")
        if folder is None:
            raise FileNotFoundError("timing for COSMIC MELD needs the MELD CSVs: set meld_csv_dir")
        got = timing.join_meld_csv(corpus, read_meld_tables(folder), f"{corpus.source} + {folder}")
        for k, (s, e) in got.items():
            corpus.dialogues[k].start, corpus.dialogues[k].end = s, e
    else:
        raise DataValidationError(f"{corpus.source}: dataset {corpus.spec.name!r} has no timestamps "
                                  "(timing modality unavailable)")


def build_features(corpus: RawCorpus, cfg: DialogueDataConfig) -> dict[str, dict[str, np.ndarray]]:
    """dialogue id -> {modality: (n, d) float32} for ``cfg.modalities``."""
    spec = corpus.spec
    unavailable = [m for m in cfg.modalities if m not in spec.modalities]
    if unavailable:
        raise DataValidationError(f"{corpus.source}: dataset {spec.name!r} cannot provide {unavailable}; "
                                  f"available: {list(spec.modalities)}")
    feats: dict[str, dict[str, np.ndarray]] = {k: {} for k in corpus.dialogues}
    for m in cfg.modalities:
        if m == "text":
            per = build_text(corpus, cfg)
        elif m == "timing":
            from erc.data.timing import timing_features

            attach_timestamps(corpus, cfg)
            per = {k: timing_features(d.start, d.end, d.texts) for k, d in corpus.dialogues.items()}
            if cfg.timing_transform == "log1p":  # all four are >= 0 and heavy-tailed
                per = {k: np.log1p(a) for k, a in per.items()}
        else:
            per = {k: d.features[m] for k, d in corpus.dialogues.items()}
        for k, a in per.items():
            if len(a) != len(corpus.dialogues[k]):
                raise fail(corpus.source, k, m, f"{len(a)} feature rows for {len(corpus.dialogues[k])} utterances")
            feats[k][m] = np.ascontiguousarray(a, dtype=np.float32)
    return feats


def _speaker_index(names: Sequence[str]) -> np.ndarray:
    """Speaker index within the dialogue, in order of first appearance."""
    seen: dict[str, int] = {}
    return np.array([seen.setdefault(s, len(seen)) for s in names], dtype=np.int64)


def fit_normalization(dialogues: Sequence[Dialogue], modalities: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-feature mean and std over all utterances of ``dialogues`` (std 0 -> 1)."""
    stats = {}
    for m in modalities:
        x = np.concatenate([d.features[m] for d in dialogues]).astype(np.float64)
        std = x.std(axis=0)
        stats[m] = {"mean": x.mean(axis=0).astype(np.float32),
                    "std": np.where(std > 1e-8, std, 1.0).astype(np.float32)}
    return stats


def apply_normalization(dialogues: Sequence[Dialogue], stats: dict) -> None:
    for d in dialogues:
        for m, s in stats.items():
            d.features[m] = ((d.features[m] - s["mean"]) / s["std"]).astype(np.float32)


def load_splits(cfg: DialogueDataConfig) -> DialogueSplits:
    """Read, check, join and split the dataset described by ``cfg`` (see module docstring)."""
    spec = get_spec(cfg.dataset)
    corpus = read_corpus(spec, cfg.path, synthetic_dialogues=cfg.synthetic_dialogues,
                         synthetic_seed=cfg.synthetic_seed)
    feats = build_features(corpus, cfg)
    ids = split_ids(corpus, cfg)
    out: dict[str, list[Dialogue]] = {}
    for name, dlg_ids in ids.items():
        out[name] = []
        for k in dlg_ids:
            d = corpus.dialogues[k]
            out[name].append(Dialogue(dialogue_id=k, features=feats[k], labels=d.labels,
                                      speakers=_speaker_index(d.speakers), sentiments=d.sentiments,
                                      utterance_ids=d.utterance_ids, texts=d.texts))
    dims = {m: int(out["train"][0].features[m].shape[1]) for m in cfg.modalities} if out["train"] else {}
    norm_mods = [m for m in cfg.modalities if m in cfg.normalize]
    stats = fit_normalization(out["train"], norm_mods) if norm_mods and out["train"] else {}
    for name in ("train", "valid", "test"):
        apply_normalization(out[name], stats)
    splits = DialogueSplits(out["train"], out["valid"], out["test"], spec, list(cfg.modalities), dims, stats,
                            corpus.source)
    logger.info("loaded %s from %s: %s, dims %s", spec.name, corpus.source, splits.summary(), dims)
    return splits


# ----------------------------------------------------------------------------- loaders
class DialogueDataset:
    """Map-style dataset over whole dialogues; item ``i`` is ``(i, dialogues[i])``."""

    def __init__(self, dialogues: Sequence[Dialogue]):
        self.dialogues = list(dialogues)

    def __len__(self) -> int:
        return len(self.dialogues)

    def __getitem__(self, i: int):
        return int(i), self.dialogues[i]


def collate_indexed(items) -> DialogueBatch:
    """Collate ``(index, Dialogue)`` pairs; ``dialogue_index`` keeps the dataset indices."""
    idx, dlgs = zip(*items)
    return collate_dialogues(list(dlgs), list(idx))


def make_loader(dialogues: Sequence[Dialogue], batch_size: int = 16, shuffle: bool = False, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False):
    """A ``torch.utils.data.DataLoader`` of :class:`DialogueBatch` (whole dialogues, no padding).

    Shuffling uses a ``torch.Generator`` seeded once with ``seed``; each new epoch's
    iteration draws a new permutation from it (no re-seeding per epoch). Safe to pass
    to ``accelerator.prepare`` (see module docstring for exactly-once evaluation).
    """
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    gen = None
    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(int(seed))
    return DataLoader(DialogueDataset(dialogues), batch_size=batch_size, shuffle=shuffle, generator=gen,
                      collate_fn=collate_indexed, num_workers=num_workers, drop_last=drop_last)


def split_by_dialogue(batch: DialogueBatch, **node_values) -> list[dict]:
    """Per-dialogue records ``{"dialogue_index", "dialogue_id", name: values[ptr[b]:ptr[b+1]]}`` (numpy).

    ``node_values`` are per-utterance tensors/arrays of the batch (predictions, labels...).
    """
    ptr = batch.ptr.cpu().numpy()
    idx = batch.dialogue_index.cpu().numpy()
    vals = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in node_values.items()}
    for k, v in vals.items():
        if len(v) != batch.num_nodes:
            raise ValueError(f"{k}: {len(v)} rows for a batch of {batch.num_nodes} utterances")
    return [{"dialogue_index": int(idx[b]), "dialogue_id": batch.dialogue_ids[b],
             **{k: v[ptr[b]:ptr[b + 1]] for k, v in vals.items()}} for b in range(batch.num_dialogues)]


def merge_dialogue_records(records: Sequence[dict], expected: int | None = None) -> list[dict]:
    """De-duplicate gathered records by ``dialogue_index`` (keeps the first), sorted by index.

    With ``expected`` (the split's number of dialogues) a missing dialogue is an error.
    """
    seen: dict[int, dict] = {}
    for r in records:
        seen.setdefault(int(r["dialogue_index"]), r)
    out = [seen[i] for i in sorted(seen)]
    if expected is not None and len(out) != expected:
        missing = sorted(set(range(expected)) - set(seen))[:5]
        raise ValueError(f"evaluation saw {len(out)} of {expected} dialogues; missing indices {missing} ...")
    return out
