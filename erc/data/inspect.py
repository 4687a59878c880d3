"""``cli.py inspect FILE``: which reader matches a file and what it holds."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from erc.data.readers import detect, read_corpus
from erc.data.registry import get_spec


def describe(path: str | Path, dataset: str | None = None) -> str:
    """A human-readable description of ``path`` read with ``dataset`` (detected when None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if dataset is None:
        matches = detect(path)
        if not matches:
            raise ValueError(f"{path}: no registered reader matches this file (tuple length / dims / folder "
                             "layout); pass --dataset NAME to see why a specific one fails")
        dataset = matches[0]
        matched = ", ".join(matches)
    else:
        matched = f"{dataset} (given)"
    spec = get_spec(dataset)
    corpus = read_corpus(spec, path)
    lines = [f"file: {path}",
             f"reader: {spec.name} (layout {spec.layout}) - {spec.description}",
             f"matching registry entries: {matched}"]
    if spec.fields:
        lines.append(f"tuple fields ({len(spec.fields)}): {', '.join(spec.fields)}")
    lines.append(f"dialogues: {len(corpus.dialogues)}, utterances: {corpus.num_utterances}")
    for split in ("train", "valid", "test"):
        ids = corpus.splits.get(split)
        if ids is None:
            lines.append(f"  {split:5s}: not in file (carved from train at load: valid_fraction of train, seeded)")
            continue
        n_utt = sum(len(corpus.dialogues[d]) for d in ids)
        lines.append(f"  {split:5s}: {len(ids):5d} dialogues, {n_utt:6d} utterances")
    first = next(iter(corpus.dialogues.values()))
    dims = {}
    if first.text_layers:
        dims["text"] = f"{len(first.text_layers)} layer(s) x {first.text_layers[0].shape[1]}"
    for m, a in first.features.items():
        dims[m] = str(a.shape[1])
    lines.append("feature dims: " + (", ".join(f"{k} {v}" for k, v in dims.items()) if dims else
                                     "none in file (text from `cli.py embed` or the hash featuriser)"))
    lines.append(f"modalities available: {', '.join(spec.modalities)}")
    counts = Counter(int(x) for d in corpus.dialogues.values() for x in d.labels)
    lines.append("label histogram: " + ", ".join(
        f"{i} {name}: {counts.get(i, 0)}" for i, name in enumerate(spec.label_names))
        + (f", -1 unlabeled: {counts[-1]}" if counts.get(-1) else ""))
    sc = Counter(int(x) for d in corpus.dialogues.values() if d.sentiments is not None for x in d.sentiments)
    if sc:
        lines.append("sentiment histogram: " + ", ".join(
            f"{i} {name}: {sc.get(i, 0)}" for i, name in enumerate(spec.sentiment_names)))
    lines.append(f"first dialogue: {first.dialogue_id} ({len(first)} utterances)")
    lines.append(f"  speakers: {' '.join(first.speakers)}")
    lines.append(f"  labels:   {' '.join(spec.label_names[i] if i >= 0 else '-' for i in first.labels)}")
    if first.texts:
        lines.append(f"  first transcript: {first.speakers[0]}: {first.texts[0]!r}")
    return "\n".join(lines)
