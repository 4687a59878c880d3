"""SYNTHETIC dialogue pickles in each registered pickle layout, for tests and benchmarks.

The real feature pickles are too large for the data collection, so readers are
tested on files built here in the exact tuple layout of each registry entry
(field order, dict-of-dialogue members, split id lists). Values are random; a
``corpus`` from :func:`erc.data.synthetic.generate_corpus` may supply ids, speakers,
texts and labels so that joins (release timestamps, embeddings) can be tested.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from erc.core.io import atomic_write_bytes
from erc.data.registry import get_spec
from erc.data.splits import carve_count


def _lengths(n_dialogues: int, total: int | None, rng: np.random.Generator, min_len: int, max_len: int):
    lens = rng.integers(min_len, max_len + 1, size=n_dialogues)
    if total is not None:  # rescale, then fix the rounding one utterance at a time
        lens = np.maximum(1, np.round(lens * total / lens.sum())).astype(int)
        i = 0
        while lens.sum() != total:
            step = 1 if lens.sum() < total else -1
            if lens[i % n_dialogues] + step >= 1:
                lens[i % n_dialogues] += step
            i += 1
    return [int(x) for x in lens]


def build_layout(dataset: str, n_dialogues: int = 8, min_len: int = 3, max_len: int = 9,
                 total_utterances: int | None = None, seed: int = 0, corpus=None,
                 test_fraction: float = 0.25, valid_fraction: float = 0.125) -> tuple:
    """The tuple of ``dataset``'s layout, members in ``spec.fields`` order.

    With ``corpus`` (erc.data.synthetic corpus), dialogues, utterance ids, speakers, texts and
    emotion labels come from it and session 5 is the test split.
    """
    spec = get_spec(dataset)
    if not spec.fields:
        raise ValueError(f"dataset {dataset!r} is not a pickle layout")
    rng = np.random.default_rng(seed)
    members: dict[str, dict] = {f: {} for f in spec.fields if not f.endswith("Vid")}
    if corpus is not None:
        groups = list(corpus.utterances.groupby("dialogue_id", sort=False))
        vids = [str(k) for k, _ in groups]
        lens = [len(g) for _, g in groups]
        test = [str(k) for k, g in groups if int(g["session"].iloc[0]) == 5]
    else:
        lens = _lengths(n_dialogues, total_utterances, rng, min_len, max_len)
        vids = [f"Ses{(i % 5) + 1:02d}F_dlg{i:04d}" for i in range(n_dialogues)]
        n_test = carve_count(test_fraction, n_dialogues)
        test = vids[-n_test:]
    for k, (vid, n) in enumerate(zip(vids, lens)):
        g = groups[k][1] if corpus is not None else None
        spk = list(g["speaker"]) if g is not None else list(rng.choice(["M", "F"], size=n))
        if "videoIDs" in members:
            members["videoIDs"][vid] = (list(g["utterance_id"]) if g is not None
                                        else [f"{vid}_{s}{i:03d}" for i, s in enumerate(spk)])
        if spec.speakers_are_onehot:
            names = sorted(set(spk))
            members["videoSpeakers"][vid] = [list(np.eye(9, dtype=int)[names.index(s)]) for s in spk]
        else:
            members["videoSpeakers"][vid] = spk
        if spec.score_class_bins is not None:
            labels = list(np.round(rng.uniform(-3, 3, size=n), 4))
        elif g is not None:
            labels = [spec.label_names.index(e) if e in spec.label_names else 0 for e in g["emotion"]]
        else:
            labels = [int(x) for x in rng.integers(0, spec.num_classes, size=n)]
        members["videoLabels"][vid] = labels
        if "videoSentiments" in members:
            members["videoSentiments"][vid] = [int(x) for x in rng.integers(0, len(spec.sentiment_names), size=n)]
        for f in spec.fields:
            if f.startswith("videoText"):
                members[f][vid] = rng.standard_normal((n, spec.dims["text"]), dtype=np.float32)
        if "videoAudio" in members:
            members["videoAudio"][vid] = rng.standard_normal((n, spec.dims["audio"]), dtype=np.float32)
        if "videoVisual" in members:
            members["videoVisual"][vid] = rng.standard_normal((n, spec.dims["visual"]), dtype=np.float32)
        members["videoSentence"][vid] = (list(g["text"]) if g is not None
                                         else [f"synthetic utterance {i} of {vid}" for i in range(n)])
    rest = [v for v in vids if v not in set(test)]
    n_valid = carve_count(valid_fraction, len(vids)) if "validVid" in spec.fields else 0
    splits = {"trainVid": rest[n_valid:] if n_valid else rest, "testVid": list(test),
              "validVid": rest[:n_valid]}
    return tuple(members[f] if f in members else splits[f] for f in spec.fields)


def write_layout_pickle(path: str | Path, dataset: str, obj: Sequence | None = None, **kwargs) -> Path:
    """Pickle ``obj`` (or ``build_layout(dataset, **kwargs)``) to ``path`` atomically."""
    obj = build_layout(dataset, **kwargs) if obj is None else obj
    path = Path(path)
    atomic_write_bytes(path, pickle.dumps(tuple(obj), protocol=pickle.HIGHEST_PROTOCOL))
    return path
